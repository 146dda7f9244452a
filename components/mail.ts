/**
 * Mail: Postfix receives and sends, Dovecot stores (maildir on the data volume) and serves IMAP and
 * ManageSieve, rspamd filters, signs (the stack's DKIM key) and learns from Junk moves, redis keeps
 * its Bayes data. Accounts, aliases and forwards come from `users`; passwords from the stack.
 */
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { Settings, MailUser, RESERVED_LOCAL_PARTS, MAX_FORWARDS } from "../config";
import { DATA_DIR, STACK_DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs, StepFile } from "./remote/step";
import { CERT_DIR } from "./tls";
import { portOf, LOCAL_PORTS } from "../services/catalog";
import { renderTemplate } from "../services/template";
import { tlsValues } from "../services/tls-policy";
import { OnDemand, onDemandFiles, onDemandUnit, restartOnDemand } from "../services/on-demand";

export const MAIL_DIR = `${DATA_DIR}/mail`;
export const REDIS_DIR = `${DATA_DIR}/rspamd/redis`;
/** Fixed, outside Debian's system range, so the maildirs on the volume keep their owner on any new server. */
export const VMAIL_UID = 5000;
export const USERS_FILE = "/etc/dovecot/selfhost/users";
const SIEVE_DIR = "/etc/dovecot/selfhost/sieve";
const SIEVE_BIN_DIR = "/var/lib/dovecot/selfhost-sieve";
/** The global Sieve scripts dovecot.conf names: at delivery, then on moves into and out of Junk. */
const SIEVE_SCRIPTS = ["encrypt.sieve", "delivery.sieve", "learn-spam.sieve", "learn-ham.sieve"];
/** Users' OpenPGP public keys, one `<login>.asc` each (public: plain files, shown in previews). */
const OPENPGP_DIR = "/etc/dovecot/selfhost/openpgp";
const DKIM_KEY = "/etc/rspamd/selfhost/dkim.key";
const QUOTA_WARNING = "/usr/local/lib/selfhost/quota-warning";
/** Asks the secondary MX for what it holds (only with one). */
const ETRN = "/usr/local/sbin/selfhost-etrn";
const ETRN_UNIT = "/etc/systemd/system/selfhost-etrn.service";
/** MTA-STS lookups reach Debian's resolver through a socket systemd holds: it runs while Postfix sends, not on an idle server. */
const MTA_STS_CONFIG = "/etc/mta-sts-daemon.yml";
const MTA_STS: OnDemand = {
    name: "selfhost-mta-sts", daemon: "postfix-mta-sts-resolver", description: "MTA-STS policy lookups for Postfix",
    why: "the MTA-STS resolver (a Python daemon of some 30 MB) has no work on an idle server; its policies outlive it in its cache on disk.",
    listen: `127.0.0.1:${LOCAL_PORTS.mtaSts}`,
    // Its unit may write only there and in its cache.
    daemonSocket: "/var/lib/mta-sts/daemon.sock", proxyUser: "_mta-sts",
};
/** A mailbox's size limit in MB (0: none). */
export const quotaOf = (s: Settings, u: MailUser) => u.quotaMb ?? s.mailboxQuotaMb;
export const MAPS = "/etc/postfix/selfhost";
/** rspamd's scores for a spam header (filed into Junk) and for greylisting (services/rspamd/actions.conf). */
export const SPAM_SCORES = { spam: 6, greylist: 4 } as const;

/** Mail not yet passed on to other servers when the old server hands over: carried on the volume, requeued by the next. */
export const QUEUE_CARRY = `${STACK_DATA_DIR}/postfix-queue`;
const QUEUES = "incoming active deferred hold maildrop";
export const handover = `q=/var/spool/postfix; if mountpoint -q ${DATA_DIR} && [ -n "$(cd $q && find ${QUEUES} -type f -print -quit)" ]; ` +
    `then mkdir -p ${QUEUE_CARRY} && (cd $q && cp -a ${QUEUES} ${QUEUE_CARRY}/); fi`;

/**
 * Who may connect to the mail system's loopback services besides root; the host firewall enforces it by
 * the connecting socket's owner. rspamd signs what its milter is handed and learns what its controller is
 * told, redis holds Bayes and greylisting, and SMTP from this host would reach rspamd as "local" mail
 * (signed). Local programs send with sendmail (authorized_submit_users) or authenticate on submission.
 */
export const LOOPBACK_CLIENTS: readonly { port: number; users: readonly (string | number)[] }[] = [
    { port: portOf("smtp"), users: [] },
    { port: LOCAL_PORTS.rspamdMilter, users: ["postfix"] },
    // vmail by uid: the firewall is loaded before the mail step makes the user.
    { port: LOCAL_PORTS.rspamdController, users: [VMAIL_UID] },
    { port: LOCAL_PORTS.redis, users: ["_rspamd"] },
];

/**
 * Mailboxes and the learned spam data live on the volume, and so does the certificate: a Postfix
 * started before /srv is mounted would answer on port 25 and fail every TLS handshake, so it waits too.
 */
export const dataUnits = ["postfix", "dovecot", "redis-server"];
export const units = [...dataUnits, onDemandUnit(MTA_STS), "rspamd"];

/**
 * rspamd modules Debian enables that a one-person server gains nothing from, off: each costs memory in
 * every rspamd process. neural trains only on thousands of messages; history_redis feeds a web interface
 * nobody reaches here; asn asks rspamd.com's DNS about every sender for rules that are off.
 */
export const rspamdModulesOff = (): StepFile[] => ["neural", "history_redis", "asn"].map(m =>
    rspamdModuleOff(`${m}.conf`, "not needed on this server (components/mail.ts)."));

/** An rspamd module turned off, with why: its local.d file. */
export const rspamdModuleOff = (file: string, why: string): StepFile =>
    ({ path: `/etc/rspamd/local.d/${file}`, content: `# selfhost: ${why}\nenabled = false;\n` });

export function packages(s: Settings): string[] {
    return ["postfix", MTA_STS.daemon, "dovecot-imapd", "dovecot-lmtpd", "dovecot-sieve", "dovecot-managesieved", "rspamd", "redis-server",
        ...(hasForwards(s) ? ["postsrsd"] : []), ...(encrypting(s).length ? ["gpg"] : [])];
}

const hasForwards = (s: Settings) => s.users.some(u => u.forwards.length > 0);
const encrypting = (s: Settings) => s.users.filter(u => u.openpgpKey);
/** The Sieve rules that copy each mailbox's mail to its forwards (`user+tag@` too). */
export const forwardRules = (s: Settings) => s.users.filter(u => u.forwards.length).map(u =>
    `if envelope :user :is "to" ${JSON.stringify(u.name)} {\n${u.forwards.map(f => `  redirect :copy ${JSON.stringify(f)};`).join("\n")}\n}`).join("\n");
/** The Sieve test that picks out mail for mailboxes with a key (`user+tag@` too); `false` when none has one. */
export const encryptedMailboxes = (s: Settings) => encrypting(s).length
    ? `envelope :user :is "to" [${encrypting(s).map(u => JSON.stringify(u.name)).join(", ")}]` : "false";
const address = (s: Settings, local: string) => `${local}@${s.domain}`;
const lines = (rows: string[][]) => rows.map(r => r.join(" ")).join("\n") + "\n";

/** Postfix lookup tables, derived from `users`. */
export function postfixMaps(s: Settings): Record<string, string> {
    const mailboxes = s.users.map(u => [address(s, u.name), "OK"]);
    const aliases = [
        ...RESERVED_LOCAL_PARTS.map(r => [address(s, r), s.adminEmail]),
        // Every mailbox maps to itself, so a catch-all never swallows it. Forwards are Sieve's (delivery.sieve):
        // a copy after filtering, never of spam, and only it gets an SRS sender.
        ...s.users.map(u => [address(s, u.name), address(s, u.name)]),
        ...s.users.flatMap(u => u.aliases.map(a => [address(s, a), address(s, u.name)])),
        ...s.users.filter(u => u.catchAll).map(u => [`@${s.domain}`, address(s, u.name)]),
    ];
    // Who may send as which address: a user as themselves and their aliases.
    const senders = s.users.flatMap(u => [u.name, ...u.aliases].map(a => [address(s, a), address(s, u.name)]));
    return {
        mailboxes: lines(mailboxes),
        aliases: lines(aliases),
        senders: lines(senders),
        "own-domains": lines([[s.domain, "REJECT mail from this domain must be sent authenticated"]]),
    };
}

/**
 * Port 25 as the server and the secondary MX both run it (services/postfix/inbound.cf): the certificate,
 * who may talk and about what, the blocklists, rspamd. `quotaCheck`: the server's last recipient rule.
 */
export function inboundPolicy(s: Settings, quotaCheck = ""): string {
    return renderTemplate("postfix/inbound.cf", {
        certDir: CERT_DIR, milterPort: LOCAL_PORTS.rspamdMilter, ...tlsValues(), quotaCheck,
        clientRdnsRule: s.unknownRdns === "reject" ? ", reject_unknown_reverse_client_hostname" : "",
        // Spamhaus answers 127.255.255.x to refused (e.g. public-resolver) queries: only real listings count.
        dnsblRules: s.dnsbls.map(d => `,\n    reject_rbl_client ${d}=127.0.0.[2..11]`).join(""),
    });
}

export interface MailArgs extends ServiceArgs {
    readonly ipv4: pulumi.Input<string>;
    readonly ipv6: pulumi.Input<string>;
    readonly dkimPrivateKeyPem: pulumi.Input<string>;
    /** The secondary MX's addresses, when there is one: its mail is judged by who handed it over there. */
    readonly secondaryIps?: pulumi.Input<readonly string[]>;
}

/** The largest message Postfix takes, in bytes (the webmail's attachments follow it). */
export const MESSAGE_SIZE_LIMIT = 50 * 1024 * 1024;

export class Mail extends pulumi.ComponentResource {
    /** Each user's password (login: the full address). Secret. */
    readonly passwords: pulumi.Output<Record<string, string>>;
    readonly step: RemoteStep;

    constructor(name: string, args: MailArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Mail", name, {}, opts);
        const s = args.settings;
        // A new passwordVersion is a new keeper, and random's keepers replace the password (any input does).
        const generated = Object.fromEntries(s.users.map(u => [u.name, new random.RandomPassword(`password-${u.name}`, {
            length: 24, special: false, ...(u.passwordVersion ? { keepers: { passwordVersion: String(u.passwordVersion) } } : {}),
        }, { parent: this }).result]));
        this.passwords = pulumi.secret(pulumi.all(generated));

        const values = {
            domain: s.domain, hostname: s.hostname, adminEmail: s.adminEmail, certDir: CERT_DIR,
            mydestination: s.hostname === s.domain ? "localhost" : "$myhostname, localhost",
            messageSizeLimit: MESSAGE_SIZE_LIMIT,
            srs: hasForwards(s) ? renderTemplate("postfix/srs.cf", {}) : "",
            srsPickup: hasForwards(s) ? renderTemplate("postfix/srs-master.cf", {}) : "",
            mailDir: MAIL_DIR, keyDir: OPENPGP_DIR, vmailUid: VMAIL_UID, usersFile: USERS_FILE, sieveDir: SIEVE_DIR, sieveBinDir: SIEVE_BIN_DIR,
            imapsPort: portOf("imaps"), sievePort: portOf("sieve"),
            dkimKey: DKIM_KEY, selector: s.dkimSelector, redisDir: REDIS_DIR, adminUser: s.adminUser,
            mtaStsPort: LOCAL_PORTS.mtaSts, resolverSocket: MTA_STS.daemonSocket,
            spamScore: SPAM_SCORES.spam, greylistScore: SPAM_SCORES.greylist, sendLimitPerHour: s.sendLimitPerHour, quotaWarning: QUOTA_WARNING, maxForwards: MAX_FORWARDS,
            ...tlsValues(), milterPort: LOCAL_PORTS.rspamdMilter, controllerPort: LOCAL_PORTS.rspamdController, redisPort: LOCAL_PORTS.redis,
        };
        const mtaStsFiles = [{ path: MTA_STS_CONFIG, content: renderTemplate("postfix/mta-sts-daemon.yml", values) }, ...onDemandFiles(MTA_STS)];
        const files: StepFile[] = [
            { path: "/etc/postfix/main.cf", content: pulumi.all([args.ipv4, args.ipv6]).apply(([ipv4, ipv6]) =>
                renderTemplate("postfix/main.cf", { ...values, ipv4, ipv6, inbound: inboundPolicy(s, ",\n    check_policy_service unix:private/quota-status") })) },
            { path: "/etc/postfix/master.cf", content: renderTemplate("postfix/master.cf", values) },
            ...mtaStsFiles,
            { path: `${MAPS}/submission-header-checks`, content: renderTemplate("postfix/submission-header-checks", {}) },
            ...Object.entries(postfixMaps(s)).map(([file, content]) => ({ path: `${MAPS}/${file}`, content })),
            { path: "/etc/dovecot/dovecot.conf", content: renderTemplate("dovecot/dovecot.conf", values) },
            ...SIEVE_SCRIPTS.map(f =>
                ({ path: `${SIEVE_DIR}/${f}`, content: renderTemplate(`dovecot/sieve/${f}`, { encryptedMailboxes: encryptedMailboxes(s), forwards: forwardRules(s) }) })),
            ...["rspamd-learn", "openpgp-encrypt"].map(f =>
                ({ path: `${SIEVE_DIR}/${f}`, mode: "0755", content: renderTemplate(`dovecot/sieve/${f}`, values) })),
            { path: QUOTA_WARNING, mode: "0755", content: renderTemplate("dovecot/quota-warning", values) },
            ...encrypting(s).map(u => ({ path: `${OPENPGP_DIR}/${address(s, u.name)}.asc`, content: u.openpgpKey! })),
            { path: "/etc/rspamd/local.d/external_relay.conf", content: pulumi.output(args.secondaryIps ?? []).apply(ips =>
                renderTemplate("rspamd/external_relay.conf", { relayEnabled: String(ips.length > 0), relayIps: ips.map(ip => JSON.stringify(ip)).join(", ") })) },
            ...["worker-proxy.inc", "worker-normal.inc", "worker-controller.inc", "redis.conf", "classifier-bayes.conf",
                "actions.conf", "greylist.conf", "options.inc", "multimap.conf", "gtube.map", "milter_headers.conf", "dkim_signing.conf", "arc.conf", "settings.conf", "ratelimit.conf"].map(f =>
                ({ path: `/etc/rspamd/local.d/${f}`, content: renderTemplate(`rspamd/${f}`, values) })),
            ...rspamdModulesOff(),
            ...(hasForwards(s) ? [{ path: "/etc/default/postsrsd", content: renderTemplate("postfix/postsrsd", values) }] : []),
            { path: "/etc/redis/redis.conf", mode: "0640", owner: "redis:redis", content: renderTemplate("redis/redis.conf", values) },
            { path: "/etc/systemd/system/redis-server.service.d/selfhost.conf", content: renderTemplate("redis/override.conf", values) },
            { path: "/etc/systemd/system/rspamd.service.d/selfhost-redis.conf", content: renderTemplate("rspamd/with-redis.conf", {}) },
            ...s.secondaryMx ? [
                { path: ETRN, mode: "0755", content: renderTemplate("postfix/etrn", { ...values, secondary: s.secondaryMx.hostname }) },
                { path: ETRN_UNIT, content: renderTemplate("postfix/etrn.service", { etrn: ETRN, dataDir: DATA_DIR }) },
            ] : [],
        ];

        this.step = new RemoteStep("mail", {
            connection: args.connection,
            prepare: [
                `getent group vmail >/dev/null || groupadd --gid ${VMAIL_UID} vmail`,
                `getent passwd vmail >/dev/null || useradd --uid ${VMAIL_UID} --gid vmail --home-dir ${MAIL_DIR} --no-create-home --shell /usr/sbin/nologin vmail`,
                `install -d -o vmail -g vmail -m 0750 ${MAIL_DIR}`,
                `install -d -o redis -g redis -m 0750 ${REDIS_DIR}`,
                `install -d -o vmail -g vmail -m 0750 ${SIEVE_BIN_DIR}`,
                // Its forwards made it more than spam-to-junk: renamed delivery.sieve.
                `rm -f ${SIEVE_DIR}/spam-to-junk.sieve`,
                `install -d -m 0755 ${MAPS} ${SIEVE_DIR} ${OPENPGP_DIR} /etc/dovecot/selfhost /etc/rspamd/selfhost ${path.dirname(QUOTA_WARNING)}`,
                // Hash each password on the server; keep an existing hash while it still matches, so a re-run changes nothing.
                // The login's mailbox limit travels with it (a userdb field).
                "while read -r login password quota; do",
                `  old=$({ awk -F: -v l="$login" '$1 == l {print $2}' ${USERS_FILE} 2>/dev/null || true; } | sed 's/^{SHA512-CRYPT}//')`,
                "  salt=$(printf '%s' \"$old\" | cut -d'$' -f3)",
                "  if [ -n \"$old\" ] && [ \"$(printf '%s' \"$password\" | openssl passwd -6 -salt \"$salt\" -stdin)\" = \"$old\" ]; then hash=$old;",
                "  else hash=$(printf '%s' \"$password\" | openssl passwd -6 -stdin); fi",
                "  printf '%s:{SHA512-CRYPT}%s::::::userdb_quota_storage_size=%sM\\n' \"$login\" \"$hash\" \"$quota\"",
                `done < "$SECRETS/passwords" > "$SECRETS/users"`,
                `put ${USERS_FILE} 0640 root:dovecot < "$SECRETS/users"`,
            ].join("\n"),
            files,
            secrets: { passwords: this.passwords.apply(p => s.users.map(u => `${address(s, u.name)} ${p[u.name]} ${quotaOf(s, u)}`).join("\n") + "\n") },
            secretFiles: [
                { path: DKIM_KEY, content: args.dkimPrivateKeyPem, mode: "0640", owner: "root:_rspamd" },
                // The SRS key is the stack's, so addresses rewritten before a server move still bounce back after it.
                ...(hasForwards(s) ? [{ path: "/etc/postsrsd.secret", content: new random.RandomPassword("srs-secret", {
                    length: 32, special: false,
                }, { parent: this }).result }] : []),
            ],
            check: [
                `check sh -n ${QUOTA_WARNING}`,
                "check postfix check",
                "check sh -c '! postconf -n 2>&1 >/dev/null | grep .'",
                "check doveconf -n",
                "check rspamadm configtest",
                // -d: compile and dump to stdout, write nothing (an output file would be replaced, even /dev/null).
                ...SIEVE_SCRIPTS.map(f => `check sievec -d ${SIEVE_DIR}/${f}`),
                // Each OpenPGP key must be one gpg can encrypt to: the delivery filter itself must succeed with it.
                ...encrypting(s).map(u => `check sh -c "printf 'Subject: check\\n\\nx\\n' | USER=${address(s, u.name)} ${SIEVE_DIR}/openpgp-encrypt >/dev/null"`),
            ].join("\n"),
            run: [
                // Scripts changed: drop their compiled binaries so Dovecot compiles the new ones.
                `changed_in ${SIEVE_DIR} && rm -f ${SIEVE_BIN_DIR}/*`,
                "systemctl daemon-reload",
                // The socket starts the resolver; the package enabled it to start at boot.
                `systemctl disable --quiet ${MTA_STS.daemon}`,
                `systemctl enable --quiet ${units.join(" ")}`,
                "changed_in /etc/redis /etc/systemd/system/redis-server.service.d && systemctl restart redis-server",
                // A restart, not a reload: a reloaded rspamd keeps its first settings' heap too (~5 MB more in each process).
                "changed_in /etc/rspamd && systemctl restart rspamd",
                // Mail coming in meanwhile is deferred (milter_default_action): the step ends once rspamd takes it again.
                `listening ${LOCAL_PORTS.rspamdMilter} rspamd`,
                ...(hasForwards(s) ? ["changed_in /etc/default /etc/postsrsd.secret && systemctl restart postsrsd"] : []),
                "changed_in /etc/dovecot && systemctl reload-or-restart dovecot",
                // The next lookup starts the resolver with its new settings (at first, the package's one had the socket's port).
                `changed_in ${mtaStsFiles.map(f => f.path).join(" ")} && ${restartOnDemand(MTA_STS)}`,
                "changed_in /etc/postfix && systemctl reload-or-restart postfix",
                // Whatever the secondary MX holds comes now, and at every boot (services/postfix/etrn).
                ...s.secondaryMx ? ["systemctl enable --quiet selfhost-etrn", "systemctl start --no-block selfhost-etrn"]
                    : [`if [ -e ${ETRN} ]; then systemctl disable --quiet selfhost-etrn; rm -f ${ETRN} ${ETRN_UNIT}; systemctl daemon-reload; fi`],
                // The previous server's outgoing mail: its queue files get this server's owners and inode-based names.
                `if [ -d ${QUEUE_CARRY} ]; then`,
                // Its queue directories, not the carrier itself: cp -a of "." would give the spool the carrier's mode.
                `  systemctl stop postfix && cp -a ${QUEUE_CARRY}/* /var/spool/postfix/`,
                "  (cd /var/spool/postfix && chown -R postfix:postfix incoming active deferred hold && chgrp -R postdrop maildrop)",
                `  postsuper -s && rm -rf ${QUEUE_CARRY} && systemctl start postfix`,
                `  log "requeued the previous server's outgoing mail: $(cd /var/spool/postfix && find ${QUEUES} -type f | wc -l) message(s)"`,
                "fi",
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({ passwords: this.passwords });
    }
}
