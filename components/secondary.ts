/**
 * The secondary MX: a second small server in another location that takes the domain's mail while the
 * server is down and hands it over once it is back. It accepts only what the server would (existing
 * recipients, the same blocklists and filter), holds no mailbox and no key of the server's, never
 * delivers locally, and queues for secondaryMxQueueDays.
 */
import * as pulumi from "@pulumi/pulumi";
import { LOCATIONS, SERVER_TYPE, Settings } from "../config";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { inboundPolicy, postfixMaps, rspamdModulesOff, rspamdModuleOff, MAPS, MESSAGE_SIZE_LIMIT, SPAM_SCORES } from "./mail";
import { trustAnchors } from "./tls";
import { LOCAL_PORTS, publicPorts } from "../services/catalog";
import { renderTemplate } from "../services/template";

export interface SecondaryMx {
    /** mx2.<domain>: its PTRs, its certificate, the MX record of priority 20. */
    readonly hostname: string;
    readonly location: typeof LOCATIONS[number];
    readonly serverType: string;
    /** How long mail waits for the server before it goes back to its sender. */
    readonly queueDays: number;
}

/** The MX priorities: the server first; senders try the secondary only when the server does not answer. */
export const MX_PRIORITY = { primary: 10, secondary: 20 } as const;

/** This concern's options (secondaryMx*), checked; undefined when secondaryMxLocation is empty. */
export function secondaryMxOptions(raw: Record<string, unknown>, { domain, hostname, location, tlsMode }: { domain: string; hostname: string; location: string; tlsMode: string },
    bad: (key: string, message: string) => void): SecondaryMx | undefined {
    // Every key is checked, set or not: a bad value waits for no one to turn the secondary on.
    const serverType = String(raw.secondaryMxServerType);
    if (!SERVER_TYPE.test(serverType)) bad("secondaryMxServerType", `"${serverType}" is not a Hetzner server type, e.g. cx23 or cax11.`);
    const queueDays = raw.secondaryMxQueueDays as number;
    // Senders retry for about five days (Postfix's and Exim's defaults): the secondary keeps mail longer than they would.
    if (!Number.isInteger(queueDays) || queueDays < 7 || queueDays > 30) {
        bad("secondaryMxQueueDays", `must be a whole number from 7 to 30; got ${queueDays}.`);
    }
    const where = String(raw.secondaryMxLocation ?? "");
    if (!where) return undefined;
    if (!(LOCATIONS as readonly string[]).includes(where)) {
        bad("secondaryMxLocation", `must be one of ${LOCATIONS.join(", ")} (or empty for none); got "${where}".`);
    } else if (where === location) {
        bad("secondaryMxLocation", `is the server's own location ${location}: an outage there would take both; ` +
            `choose another, e.g. ${LOCATIONS.find(l => l !== location)}.`);
    }
    // It proves the server's certificate by the public CAs, and gets its own from the same ACME CA.
    if (tlsMode !== "acme") bad("secondaryMxLocation", `needs tlsMode acme (the secondary verifies the server's certificate by the public CAs); tlsMode is ${tlsMode}.`);
    if (hostname === `mx2.${domain}`) bad("hostname", `"${hostname}" is the secondary MX's name; use e.g. mail.${domain}.`);
    return { hostname: `mx2.${domain}`, location: where as SecondaryMx["location"], serverType, queueDays };
}

/** rspamd's files the secondary shares with the server: the same verdicts, greylisting and headers; no signing, no Bayes (the server's). */
export const SHARED_RSPAMD_FILES = ["worker-proxy.inc", "worker-normal.inc", "redis.conf", "actions.conf", "greylist.conf",
    "options.inc", "multimap.conf", "gtube.map", "milter_headers.conf"];

/** Every address the server takes mail for (users, aliases, postmaster and abuse; `@domain` with a catch-all): the secondary refuses the rest. */
export function relayRecipients(s: Settings): string {
    const { aliases } = postfixMaps(s);
    return aliases.split("\n").filter(Boolean).map(line => `${line.split(" ")[0]} OK`).join("\n") + "\n";
}

export interface RelayArgs extends ServiceArgs {
    /** The secondary's own addresses (it sends from them). */
    readonly ipv4: pulumi.Input<string>;
    readonly ipv6: pulumi.Input<string>;
    /** The server's addresses: only they may ask for the queue (ETRN). */
    readonly primaryIpv4: pulumi.Input<string>;
    readonly primaryIpv6: pulumi.Input<string>;
}

/** How often the secondary tries the server: an outage's mail follows within this after the server is back, ETRN or not. */
export const RETRY_MINUTES = 5;

/** Postfix as the backup MX, with rspamd in front as on the server. */
export class Relay extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: RelayArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Relay", name, {}, opts);
        const s = args.settings;
        const mx2 = s.secondaryMx!;
        const values = {
            domain: s.domain, hostname: mx2.hostname, primary: s.hostname, adminEmail: s.adminEmail, messageSizeLimit: MESSAGE_SIZE_LIMIT,
            queueDays: mx2.queueDays, retryMinutes: RETRY_MINUTES, trustAnchors: trustAnchors(s), inbound: inboundPolicy(s),
            milterPort: LOCAL_PORTS.rspamdMilter, redisPort: LOCAL_PORTS.redis, spamScore: SPAM_SCORES.spam, greylistScore: SPAM_SCORES.greylist,
        };
        this.step = new RemoteStep(name, {
            connection: args.connection,
            packages: RELAY_PACKAGES,
            prepare: `install -d -m 0755 ${MAPS}`,
            files: [
                { path: "/etc/postfix/main.cf", content: pulumi.all([args.ipv4, args.ipv6, args.primaryIpv4, args.primaryIpv6])
                    .apply(([ipv4, ipv6, primaryIpv4, primaryIpv6]) => renderTemplate("postfix/backup-mx.cf", { ...values, ipv4, ipv6, primaryIpv4, primaryIpv6 })) },
                { path: `${MAPS}/recipients`, content: relayRecipients(s) },
                { path: `${MAPS}/own-domains`, content: postfixMaps(s)["own-domains"] },
                ...SHARED_RSPAMD_FILES.map(f => ({ path: `/etc/rspamd/local.d/${f}`, content: renderTemplate(`rspamd/${f}`, values) })),
                ...rspamdModulesOff(),
                // Nothing here signs with the domain's key: the secondary never has it.
                ...["dkim_signing.conf", "arc.conf"].map(f => rspamdModuleOff(f, "the secondary MX signs nothing.")),
                rspamdModuleOff("classifier-bayes.conf", "Bayes learns on the server, from its users' Junk."),
                { path: "/etc/systemd/system/rspamd.service.d/selfhost-redis.conf", content: renderTemplate("rspamd/with-redis.conf", {}) },
            ],
            check: ["check postfix check", "check sh -c '! postconf -n 2>&1 >/dev/null | grep .'", "check rspamadm configtest"].join("\n"),
            run: [
                "systemctl daemon-reload",
                `systemctl enable --quiet ${RELAY_PACKAGES.join(" ")}`,
                // A restart, as on the server (a reloaded rspamd keeps its first settings' heap too).
                "changed_in /etc/rspamd && systemctl restart rspamd",
                `listening ${LOCAL_PORTS.rspamdMilter} rspamd`,
                "changed_in /etc/postfix && systemctl reload-or-restart postfix",
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}

export const RELAY_PACKAGES = ["postfix", "rspamd", "redis-server"];
/** What must run there (besides hardening's and the resolver's): its report checks each. */
export const SECONDARY_UNITS = ["postfix", "rspamd", "redis-server", "nginx"];

/**
 * Before the secondary goes (replaced, moved or turned off): it takes no new mail and hands what it
 * holds to the server. Mail the server does not take now stops the replacement: nothing is dropped.
 */
export function secondaryHandover(primary: string): string[] {
    return [
        "trap 'postconf -X master_service_disable; postfix reload' ERR",
        "postconf -e master_service_disable=inet && postfix reload",
        "postqueue -f",
        `for _ in $(seq 60); do [ -z "$(postqueue -j)" ] && break; sleep 2; done`,
        "held=$(postqueue -j | wc -l)",
        `[ "$held" = 0 ] || { echo "the secondary MX holds $held message(s) that ${primary} does not take now: it stays until they are delivered (postqueue -p lists them)" >&2; false; }`,
    ];
}

/** What the secondary lets in: SSH (as the server), SMTP, and HTTP for its certificate's ACME challenge. */
export const secondaryPorts = (sshPorts: readonly number[], adminSources: readonly string[]) =>
    publicPorts(sshPorts, adminSources).filter(p => ["ssh", "smtp", "http"].includes(p.name));
