/**
 * One certificate for every name the server answers for. With tlsMode=acme, certbot (Debian) gets it
 * on the server over HTTP-01 and its timer renews it; with private-ca, the stack makes a CA and signs
 * it. Either way services find it at CERT_DIR, and one deploy hook reloads each service that uses it.
 */
import * as pulumi from "@pulumi/pulumi";
import { PrivateCa } from "./private-ca";
import * as tls from "@pulumi/tls";
import { Settings } from "../config";
import { DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { servedNames } from "./dns/records";
import { renderTemplate } from "../services/template";

/** Where every service reads the certificate: a symlink to the live files on the data volume. */
export const CERT_DIR = "/etc/selfhost/tls";
/** Services that use the certificate; the deploy hook reloads those that run. */
export const TLS_CONSUMERS = ["nginx", "postfix", "dovecot", "prosody", "coturn"];
/** Daemons that read the certificate as their own user get a copy their group may read, here (by group). */
export const CERT_COPIES = { prosody: "/etc/prosody/certs", turnserver: "/etc/coturn/certs" } as const;
export const DEPLOY_HOOK = "/usr/local/sbin/selfhost-tls-deployed";
export const ACME_WEBROOT = "/var/lib/selfhost/acme";
const AWAIT_DNS = "/usr/local/sbin/selfhost-await-dns";
const TLS_KEY = "/usr/local/sbin/selfhost-tls-key";
/** certbot's live files for the one certificate (its lineage "selfhost"). */
const LINEAGE = "/etc/letsencrypt/live/selfhost";
const TLS_DATA = `${DATA_DIR}/tls`;
const PRIVATE_CA_DIR = `${TLS_DATA}/private-ca`;

/**
 * What verifies the server's own certificate, for its own clients (webmail): the system's CAs, or the private
 * CA's certificate — public, so outside the volume's key store, where confined services may read it.
 */
export const trustAnchors = (s: Settings) => s.tlsMode === "acme" ? "/etc/ssl/certs/ca-certificates.crt" : "/etc/selfhost/private-ca.pem";

/** The TLSA data the tls step printed ("tlsa 3 1 1 HEX" lines); none before it ran (a preview, the mocks). */
export function tlsaValues(stdout: string | undefined): string[] {
    if (stdout === undefined) return [];
    const values = [...stdout.matchAll(/^tlsa (3 1 1 [0-9a-f]{64})$/gm)].map(m => m[1]);
    if (!values.length) throw new Error("the tls step printed no TLSA data (selfhost-tls-key tlsa): run pulumi up again");
    return values;
}

export const packages = ["nginx", "certbot"];

export interface TlsArgs extends ServiceArgs {
    readonly ipv4: pulumi.Input<string>;
    /** The zone's nameservers at Hetzner (dnsProvider hetzner): where the domain must be delegated. */
    readonly nameservers: pulumi.Input<readonly string[]>;
    /** The names on the certificate: every name the server answers for, unless given (the secondary MX's one name). */
    readonly names?: readonly string[];
}

/** What to do when public DNS does not show the server yet: delegate, or publish the records by hand (inside a double-quoted shell string: no backquote, no dollar). */
function dnsFix(s: Settings, nameservers: readonly string[]): string {
    switch (s.dnsProvider) {
        case "none": return "publish the records of the zoneFile output (pulumi stack output zoneFile) at your DNS host";
        case "gandi": return `make Gandi LiveDNS ${s.domain}'s nameservers (Gandi's domain page, Nameservers)`;
        case "hetzner": return `delegate ${s.domain} to ${nameservers.join(" ")} at your registrar (pulumi stack output nameservers)`;
    }
}

export class Tls extends pulumi.ComponentResource {
    readonly step: RemoteStep;
    /** The private CA's certificate (private-ca mode): clients must trust it. */
    readonly caCertificate: pulumi.Output<string | undefined>;
    /** Port 25's TLSA data (DANE-EE, SPKI, SHA-256) as the server printed it: the key in use, then the next. */
    readonly tlsa: pulumi.Output<string[]>;

    constructor(name: string, args: TlsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Tls", name, {}, opts);
        const s = args.settings;
        const names = [...args.names ?? servedNames(s)];
        const common = [
            { path: "/etc/nginx/conf.d/selfhost-acme.conf", content: renderTemplate("tls/acme-http.conf", { acmeWebroot: ACME_WEBROOT }) },
            { path: DEPLOY_HOOK, mode: "0755", content: renderTemplate("tls/deployed.sh", {
                consumers: TLS_CONSUMERS.join(" "), certDir: CERT_DIR, copies: Object.entries(CERT_COPIES).map(([group, dir]) => `${group}:${dir}`).join(" "),
            }) },
            { path: TLS_KEY, mode: "0755", content: renderTemplate("tls/tls-key", { tlsData: TLS_DATA, certDir: CERT_DIR, deployHook: DEPLOY_HOOK, lineage: LINEAGE }) },
        ];
        const prepare = [
            `install -d -m 0755 ${TLS_DATA} ${ACME_WEBROOT} $(dirname ${CERT_DIR})`,
            // Debian's default site also claims port 80 as default_server.
            "rm -f /etc/nginx/sites-enabled/default",
        ].join("\n");
        const check = `check nginx -t\ncheck bash -n ${TLS_KEY}`;
        const nginx = ["systemctl enable --quiet nginx", "changed && systemctl reload-or-restart nginx"];
        // Point CERT_DIR at a certificate; when that changes what services read, the deploy hook reloads them.
        const useCert = (dir: string) =>
            `if [ "$(readlink ${CERT_DIR} || true)" != ${dir} ]; then ln -sfn ${dir} ${CERT_DIR}; ${DEPLOY_HOOK}; fi`;

        if (s.tlsMode === "acme") {
            this.caCertificate = pulumi.output(undefined);
            const live = `${TLS_DATA}/letsencrypt`;
            const awaitDns = pulumi.all([args.ipv4, args.nameservers]).apply(([ipv4, nameservers]) =>
                renderTemplate("tls/await-dns", { ipv4, fix: dnsFix(s, nameservers) }));
            this.step = new RemoteStep(name, {
                connection: args.connection, prepare, files: [...common, { path: AWAIT_DNS, mode: "0755", content: awaitDns }], check,
                run: [
                    ...nginx,
                    // The first `up` may come before the domain points here (a zone just made at Hetzner is not yet delegated).
                    `${AWAIT_DNS} ${names.join(" ")}`,
                    // certbot and its renewal timer use /etc/letsencrypt: keep it on the data volume.
                    `install -d -m 0755 ${live}`,
                    `if [ ! -L /etc/letsencrypt ]; then cp -a /etc/letsencrypt/. ${live}/ 2>/dev/null || true; rm -rf /etc/letsencrypt; ln -s ${live} /etc/letsencrypt; fi`,
                    // A different CA than the one that issued the current certificate means a new one.
                    `force=; grep -qs '^server = ${s.acmeServer}$' /etc/letsencrypt/renewal/selfhost.conf || force=--force-renewal`,
                    // --reuse-key: renewals keep the key, so port 25's TLSA records stay true (selfhost-tls-key changes it).
                    [
                        "certbot certonly --non-interactive --agree-tos --quiet --keep-until-expiring --expand --reuse-key $force",
                        `--cert-name selfhost --webroot -w ${ACME_WEBROOT} --server ${s.acmeServer} --email ${s.adminEmail}`,
                        `--deploy-hook ${DEPLOY_HOOK}`,
                        ...names.map(n => `-d ${n}`),
                    ].join(" "),
                    useCert(LINEAGE),
                    `${TLS_KEY} roll-to ${s.tlsKeyGeneration}`,
                    `${TLS_KEY} tlsa --next`,
                    "systemctl enable --quiet --now certbot.timer",
                ].join("\n"),
                dependsOn: args.dependsOn,
            }, { parent: this });
        } else {
            const child = { parent: this };
            const caKey = new tls.PrivateKey("ca-key", { algorithm: "ECDSA", ecdsaCurve: "P256" }, child);
            // Name-constrained to the domain, five years, renewed a year ahead with the same key (components/private-ca.ts).
            const ca = new PrivateCa("ca", { privateKeyPem: caKey.privateKeyPem, domain: s.domain }, child);
            const key = new tls.PrivateKey("server-key", { algorithm: "ECDSA", ecdsaCurve: "P256" }, child);
            const csr = new tls.CertRequest("server", { privateKeyPem: key.privateKeyPem, dnsNames: names, subject: { commonName: s.hostname } }, child);
            const cert = new tls.LocallySignedCert("server", {
                certRequestPem: csr.certRequestPem, caPrivateKeyPem: caKey.privateKeyPem, caCertPem: ca.certPem,
                validityPeriodHours: 397 * 24, earlyRenewalHours: 30 * 24,
                allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
            }, child);
            this.caCertificate = ca.certPem;
            const dir = PRIVATE_CA_DIR;
            this.step = new RemoteStep(name, {
                connection: args.connection, prepare,
                files: [...common, { path: `${dir}/fullchain.pem`, content: pulumi.interpolate`${cert.certPem}${ca.certPem}` },
                    { path: trustAnchors(s), content: ca.certPem }],
                secretFiles: [{ path: `${dir}/privkey.pem`, content: key.privateKeyPem }],
                check,
                run: [...nginx, `changed_in ${dir} && ${DEPLOY_HOOK}`, useCert(dir), `${TLS_KEY} tlsa`].join("\n"),
                dependsOn: args.dependsOn,
            }, { parent: this });
        }
        this.tlsa = this.step.command.stdout.apply(tlsaValues);
        this.registerOutputs({ caCertificate: this.caCertificate, tlsa: this.tlsa });
    }
}
