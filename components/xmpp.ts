/**
 * XMPP: Prosody with the mail domain as its host, so every mail address is also a chat address, with
 * the same password (synced from the mail accounts whenever a password changes). Group chat at
 * conference.<domain>, file sharing at upload.<domain> behind nginx, archive, carbons, stream management,
 * push, a file transfer proxy at proxy.<domain>, and calls through coturn (STUN/TURN on this server).
 */
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { Settings } from "../config";
import { DATA_DIR, STACK_DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { DEPLOY_HOOK, CERT_COPIES } from "./tls";
import { portOf, servicePort, LOCAL_PORTS } from "../services/catalog";
import { renderTemplate, confined } from "../services/template";
import { TLS_POLICY, tlsValues } from "../services/tls-policy";

/** Without lua-unbound (only recommended), Prosody resolves through /etc/resolv.conf like Postfix and rspamd do;
 * with it, libunbound answered NXDOMAIN for names the system resolver knows. */
export const packages = ["prosody", "prosody-modules", "coturn"];
export const dataUnits = ["prosody"];
/** What runs: Prosody, and coturn for calls (it keeps nothing on the volume). */
export const units = [...dataUnits, "coturn"];
/**
 * Units the base step keeps from starting when it installs their package (masked until this step has
 * configured them): Debian's coturn would start with its defaults — no authentication, an open relay.
 */
export const heldUntilConfigured = ["coturn"];

/** The secret Prosody makes TURN credentials with; coturn holds it in its own database. */
const TURN_SECRET = "/etc/prosody/turn-secret";
const TURN_DIR = "/var/lib/turn";
const TURN_DB = `${TURN_DIR}/turndb`;
/** How long a TURN credential from Prosody is valid: a day, as clients fetch them again for each call anyway. */
export const TURN_TTL = 86400;
export const XMPP_DIR = `${DATA_DIR}/prosody`;
const HTTP_PORT = LOCAL_PORTS.xmppHttp;
/**
 * What each XMPP password was last set from (a SHA-256 of login and password; root's only): a new value
 * means a new password. On the volume, beside the accounts it describes, so a new server does not set
 * every password again (Prosody would store each anew, with new salts).
 */
const SYNCED_DIR = `${STACK_DATA_DIR}/xmpp-synced`;

const MB = 1024 * 1024;
const uploadValues = (s: Settings) => ({
    domain: s.domain, httpPort: HTTP_PORT,
    uploadLimit: s.xmppUploadLimitMb * MB, uploadExpires: s.xmppUploadExpiresDays * 86400, uploadQuota: s.xmppUploadQuotaMb * MB,
});

/** nginx's server for upload.<domain> (XEP-0363); the web step includes it so one nginx config is checked as a whole. */
export const uploadServer = (s: Settings) => renderTemplate("nginx/proxied-host.conf", {
    what: "XMPP file sharing (XEP-0363), served by Prosody on loopback", name: `upload.${s.domain}`, port: HTTP_PORT,
    extra: `    client_max_body_size ${uploadValues(s).uploadLimit};\n    proxy_request_buffering off;`,
});

export interface XmppArgs extends ServiceArgs {
    /** The mail passwords (secret): XMPP logins are the mail logins. */
    readonly passwords: pulumi.Input<Record<string, string>>;
    /** The server's own addresses: TURN never relays to them. */
    readonly ipv4: pulumi.Input<string>;
    readonly ipv6: pulumi.Input<string>;
}

/** coturn's config: relays for Prosody's credentials only, never into the server or private networks. */
export const turnConfig = (s: Settings, ipv4: string, ipv6: string) => {
    const relay = servicePort("turn-relay");
    return renderTemplate("coturn/turnserver.conf", {
        domain: s.domain, database: TURN_DB, turnPort: portOf("turn"), turnsPort: portOf("turns"),
        relayFirst: relay.port, relayLast: relay.lastPort!, ipv4, ipv6, certDir: CERT_COPIES.turnserver, ...tlsValues(),
    });
};

export class Xmpp extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: XmppArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Xmpp", name, {}, opts);
        const s = args.settings;
        const config = renderTemplate("prosody/prosody.cfg.lua", {
            ...uploadValues(s), adminEmail: s.adminEmail, dataDir: XMPP_DIR,
            c2sPort: portOf("xmpp-client"), c2sTlsPort: portOf("xmpps-client"), s2sPort: portOf("xmpp-server"),
            // LuaSec names "TLSv1.2 and later" tlsv1_2+.
            ...tlsValues(), prosodyProtocol: `${TLS_POLICY.minProtocol.toLowerCase().replace(".", "_")}+`, certDir: CERT_COPIES.prosody,
            hostname: s.hostname, turnPort: portOf("turn"), turnsPort: portOf("turns"), turnTtl: TURN_TTL, turnSecret: TURN_SECRET,
            proxyPort: portOf("xmpp-proxy"),
        });
        // The stack's, so credentials handed out before a server move stay good after it.
        const turnSecret = new random.RandomPassword("turn-secret", { length: 40, special: false }, { parent: this }).result;
        const logins = s.users.map(u => `${u.name}@${s.domain}`);
        this.step = new RemoteStep("xmpp", {
            connection: args.connection,
            prepare: [
                `install -d -o prosody -g prosody -m 0750 ${XMPP_DIR}`,
                `install -d -m 0700 ${STACK_DATA_DIR} ${SYNCED_DIR}`,
                `install -d -m 0750 -g turnserver ${CERT_COPIES.turnserver}`,
                // The certificate copies Prosody and coturn read, if the deploy hook has not made them yet.
                `[ -e ${CERT_COPIES.prosody}/selfhost.key ] && [ -e ${CERT_COPIES.turnserver}/selfhost.key ] || ${DEPLOY_HOOK}`,
            ].join("\n"),
            files: [
                { path: "/etc/prosody/prosody.cfg.lua", mode: "0640", owner: "root:prosody", content: config },
                { path: "/etc/turnserver.conf", mode: "0640", owner: "root:turnserver", content: pulumi.all([args.ipv4, args.ipv6]).apply(([v4, v6]) => turnConfig(s, v4, v6)) },
                { path: "/etc/systemd/system/coturn.service.d/selfhost.conf", content: renderTemplate("coturn/coturn.conf", {
                    confined: confined(), databaseDir: TURN_DIR,
                    // It needs nothing of the volume, nor Prosody's secrets, nor the backup's keys.
                    hiddenPaths: [DATA_DIR, "/etc/prosody", "/etc/selfhost/backup"].join(" -"),
                }) },
            ],
            secretFiles: [{ path: TURN_SECRET, content: turnSecret, mode: "0640", owner: "root:prosody" }],
            secrets: { passwords: pulumi.output(args.passwords).apply(p =>
                Object.entries(p).map(([u, pw]) => `${u}@${s.domain} ${pw}`).join("\n") + "\n") },
            check: "check prosodyctl check config",
            run: [
                // coturn checks credentials with the secret in its database (root writes it; the SQL goes on stdin).
                `secret=$(cat ${TURN_SECRET})`,
                `if [ "$(sqlite3 ${TURN_DB} "select value from turn_secret where realm = '${s.domain}'")" != "$secret" ]; then`,
                `  printf "delete from turn_secret; insert into turn_secret (realm, value) values ('%s', '%s');\\n" ${s.domain} "$secret" | sqlite3 ${TURN_DB}`,
                `  log "TURN secret set"`,
                "fi",
                "changed_in /etc/systemd/system && systemctl daemon-reload",
                "systemctl unmask --quiet coturn",
                "systemctl enable --quiet coturn",
                "changed_in /etc/turnserver.conf /etc/systemd/system/coturn.service.d && systemctl restart coturn",
                "systemctl is-active --quiet coturn || systemctl start coturn",
                "systemctl enable --quiet prosody",
                "changed_in /etc/prosody && systemctl restart prosody",
                "systemctl is-active --quiet prosody || systemctl start prosody",
                // prosodyctl shell reads commands on stdin (passwords never in a command line) and answers "OK:" on success.
                `xmpp_admin() { local out; out=$(printf '%s\\n' "$1" | prosodyctl shell 2>&1); [[ $out == *"OK:"* ]]; }`,
                // After a (re)start the console socket takes a moment to appear.
                `for _ in $(seq 40); do xmpp_admin "server:version()" && break; sleep 0.25; done`,
                // Same password as mail: set it when it differs from the one last synced.
                "while read -r login password; do",
                `  sum=$(printf '%s\\n%s' "$login" "$password" | sha256sum | cut -d' ' -f1)`,
                `  [ "$sum" = "$(cat ${SYNCED_DIR}/"$login" 2>/dev/null)" ] && continue`,
                `  xmpp_admin "user:password('$login', [==[$password]==])" || xmpp_admin "user:create('$login', [==[$password]==])" ||`,
                `    { log "cannot set the XMPP password of $login"; exit 1; }`,
                `  xmpp_admin "user:enable('$login')" || true`,
                `  printf '%s' "$sum" > ${SYNCED_DIR}/"$login"; log "XMPP password of $login set from its mail account"`,
                `done < "$SECRETS/passwords"`,
                // An account no longer in users can no longer log in (its data stays, like its mailbox).
                `for f in ${SYNCED_DIR}/*; do [ -e "$f" ] || continue; login=$(basename "$f"); ` +
                `case " ${logins.join(" ")} " in *" $login "*) ;; *) xmpp_admin "user:disable('$login')" && rm -f "$f" && log "XMPP account $login disabled";; esac; done`,
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
