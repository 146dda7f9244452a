/**
 * Webmail: Debian's Roundcube, with Sieve filters (Settings → Filters), at https://webmail.<domain>/ — a name
 * of its own, so no script of the site or of a ~user page shares its origin and cookies. Its PHP runs
 * only while it is used (services/on-demand.ts), under a user of its own, and logs in to our own IMAP,
 * SMTP and ManageSieve on loopback, over TLS verified against the hostname. Its database (settings,
 * contacts, identities, sessions) is on the volume.
 */
import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../config";
import { DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { trustAnchors } from "./tls";
import { BEFORE_BACKUP } from "./backup";
import { MESSAGE_SIZE_LIMIT } from "./mail";
import { portOf, SERVICE_SUBDOMAINS } from "../services/catalog";
import { renderTemplate, confined } from "../services/template";
import { OnDemand, onDemandFiles, onDemandUnit, restartOnDemand } from "../services/on-demand";

const WEBMAIL_DIR = `${DATA_DIR}/webmail`;
export const DATABASE = `${WEBMAIL_DIR}/roundcube.db`;
/** The consistent copy a scheduled snapshot takes first (the live file may be mid-write then). */
const COPY = `${WEBMAIL_DIR}/roundcube.db.snapshot`;
/** The PHP workers' user: it alone reads Roundcube's config and database (nginx, www-data, does not). */
const WEBMAIL_USER = "roundcube";
const UNIT = "roundcube";
/** nginx passes requests to a socket systemd holds: the first one starts PHP-FPM, which listens on its own. */
const PHP: OnDemand = {
    name: "selfhost-webmail", daemon: UNIT, description: "Roundcube webmail's PHP for nginx",
    why: "Roundcube's PHP-FPM (its master alone is some 20 MB) has no work while nobody reads mail in a browser.",
    listen: "/run/selfhost-webmail.sock", socketOptions: ["SocketUser=www-data", "SocketGroup=www-data", "SocketMode=0600"],
    daemonSocket: `/run/${UNIT}/fpm.sock`, proxyUser: "www-data",
};
const FPM_CONFIG = "/etc/selfhost/webmail/php-fpm.conf";
/** The versioned php-fpm of the installed PHP (php-fpm8.4 on Debian 13), linked by the step. */
const PHP_FPM = "/usr/local/sbin/roundcube-php-fpm";
const DES_KEY = "/etc/roundcube/selfhost-des-key";
/** Debian's clean-up timers (expired sessions, deleted contacts), run as the webmail's user. */
const TIMERS = ["roundcube-gc", "roundcube-cleandb"];
const TIMER_UNITS = TIMERS.map(t => `${t}.timer`).join(" ");
/** Workers at most: a personal server's handful of browsers (each worker is ~20 MB while it lives). */
const MAX_CHILDREN = 4;

/** Debian's roundcube-core would make its database with dbconfig-common at install, on the root disk (gone with the server): the step makes it on the volume. */
export const preseed = (s: Settings) => s.webmail ? ["roundcube-core roundcube/dbconfig-install boolean false"] : [];
export const packages = (s: Settings) => s.webmail ? ["php-fpm", "php-zip", "roundcube-core", "roundcube-sqlite3", "roundcube-plugins", "sqlite3"] : [];
export const dataUnits = (s: Settings) => s.webmail ? [UNIT] : [];
/** What must be up: the socket (PHP itself runs only while used). */
export const units = (s: Settings) => s.webmail ? [onDemandUnit(PHP)] : [];
export const webmailName = (s: Settings) => `${SERVICE_SUBDOMAINS.webmail[0]}.${s.domain}`;

/** Attachments as large as Postfix takes a message (base64 makes 3 bytes 4). */
const UPLOAD_MB = Math.floor(MESSAGE_SIZE_LIMIT / 1024 / 1024 * 3 / 4);
/** A request carrying such a file, with its form around it. */
const POST_MB = UPLOAD_MB + 1;

/**
 * The page's Content-Security-Policy. Roundcube 1.6 writes inline scripts, handlers and styles into its
 * pages and evaluates the code its server answers with (without 'unsafe-eval' Chromium stops app.js),
 * so those stay allowed; everything else is this origin's alone, images from the internet included.
 */
export const CSP = ["default-src 'none'", "script-src 'self' 'unsafe-inline' 'unsafe-eval'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:", "font-src 'self'", "connect-src 'self'", "frame-src 'self' blob:", "media-src 'self' blob:",
    "form-action 'self'", "frame-ancestors 'self'", "base-uri 'none'", "object-src 'none'"].join("; ");

/** nginx's server for webmail.<domain>; the web step includes it so one nginx config is checked as a whole. */
export const webmailServer = (s: Settings) =>
    renderTemplate("webmail/nginx.conf", { name: webmailName(s), csp: CSP, socket: PHP.listen, postMb: POST_MB });

/** fail2ban's jail for webmail logins (appended to the others by the hardening step). */
export const jail = (webPorts: string) => renderTemplate("webmail/jail.conf", { webPorts });
export const FAIL2BAN_FILTER = { name: "selfhost-roundcube-auth", content: renderTemplate("webmail/fail2ban-filter.conf", {}) };

/** PHP's TLS options for our own services: the peer's certificate must name the hostname and chain to our CA. */
const tlsOptions = (s: Settings) =>
    `['ssl' => ['verify_peer' => true, 'verify_peer_name' => true, 'peer_name' => '${s.hostname}', 'cafile' => '${trustAnchors(s)}', 'allow_self_signed' => false]]`;

export class Webmail extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: ServiceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Webmail", name, {}, opts);
        const s = args.settings;
        const values = { domain: s.domain, hostname: s.hostname, adminEmail: s.adminEmail, tlsOptions: tlsOptions(s) };
        this.step = new RemoteStep("webmail", {
            connection: args.connection,
            prepare: [
                `id -u ${WEBMAIL_USER} >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin ${WEBMAIL_USER}`,
                `install -d -o ${WEBMAIL_USER} -g ${WEBMAIL_USER} -m 0750 ${WEBMAIL_DIR}`,
                `install -d -o ${WEBMAIL_USER} -g ${WEBMAIL_USER} -m 0750 /var/lib/roundcube/temp`,
                `install -d -m 0755 $(dirname ${FPM_CONFIG}) ${BEFORE_BACKUP}`,
                `[ -s ${DES_KEY} ] || (umask 077; head -c 24 /dev/urandom | base64 > ${DES_KEY})`,
                `chown root:${WEBMAIL_USER} ${DES_KEY} && chmod 0640 ${DES_KEY}`,
                `ln -sfn "$(ls -v /usr/sbin/php-fpm[0-9]* | tail -1)" ${PHP_FPM}`,
                // PHP's file functions open no URLs (a way out for an injected path): Roundcube fetches none
                // that way. The pool says so; php.ini too, for the CLI's scripts and for whoever audits it.
                "sed -i 's/^allow_url_fopen = On$/allow_url_fopen = Off/' /etc/php/*/cli/php.ini /etc/php/*/fpm/php.ini",
            ].join("\n"),
            files: [
                { path: "/etc/roundcube/config.inc.php", mode: "0640", owner: `root:${WEBMAIL_USER}`, content: renderTemplate("webmail/config.inc.php", {
                    ...values, database: DATABASE, desKeyFile: DES_KEY, imapsPort: portOf("imaps"), submissionsPort: portOf("submissions"), messageMb: MESSAGE_SIZE_LIMIT / 1024 / 1024,
                }) },
                { path: "/etc/roundcube/plugins/managesieve/config.inc.php", content: renderTemplate("webmail/managesieve.inc.php", { ...values, sievePort: portOf("sieve") }) },
                { path: FPM_CONFIG, content: renderTemplate("webmail/php-fpm.conf", { user: WEBMAIL_USER, socket: PHP.daemonSocket, maxChildren: MAX_CHILDREN, uploadMb: UPLOAD_MB, postMb: POST_MB }) },
                { path: `/etc/systemd/system/${UNIT}.service`, content: renderTemplate("webmail/roundcube.service", {
                    user: WEBMAIL_USER, phpFpm: PHP_FPM, fpmConfig: FPM_CONFIG, webmailDir: WEBMAIL_DIR,
                    // The master starts workers as the user and gives its socket to www-data (the proxy nginx reaches it by).
                    confined: confined("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL"),
                    // The rest of the volume is no business of the webmail's: mail goes through IMAP.
                    hiddenPaths: [`${DATA_DIR}/mail`, `${DATA_DIR}/prosody`, `${DATA_DIR}/tls`, `${DATA_DIR}/home`, "/etc/selfhost/backup"].join(" -"),
                }) },
                ...onDemandFiles(PHP),
                ...TIMERS.map(t => ({ path: `/etc/systemd/system/${t}.service.d/selfhost.conf`,
                    content: renderTemplate("webmail/timers.conf", { user: WEBMAIL_USER, webmailDir: WEBMAIL_DIR }) })),
                { path: `${BEFORE_BACKUP}/roundcube`, mode: "0755", content: renderTemplate("webmail/before-backup", { user: WEBMAIL_USER, database: DATABASE, copy: COPY }) },
            ],
            check: `check ${PHP_FPM} -t -y ${FPM_CONFIG}\ncheck php -l /etc/roundcube/config.inc.php`,
            run: [
                // Debian's own PHP-FPM (its www pool) has no work here; disabled, package upgrades leave it stopped.
                "for unit in $(systemctl list-unit-files --no-legend 'php*-fpm.service' | cut -d' ' -f1); do systemctl disable --quiet --now \"$unit\"; done",
                // A snapshot taken while the webmail wrote may hold a torn database: the copy taken just before is whole.
                `if [ -e ${DATABASE} ] && [ -e ${COPY} ] && [ "$(sqlite3 -readonly ${DATABASE} 'PRAGMA integrity_check' 2>&1)" != ok ]; then`,
                `  install -o ${WEBMAIL_USER} -g ${WEBMAIL_USER} -m 0640 ${COPY} ${DATABASE}; log "the webmail database was torn; its last consistent copy is back"`,
                "fi",
                // A new database, or the schema brought up to the installed Roundcube's (idempotent).
                `if [ ! -e ${DATABASE} ]; then runuser -u ${WEBMAIL_USER} -- sqlite3 ${DATABASE} < /usr/share/roundcube/SQL/sqlite.initial.sql; chmod 0640 ${DATABASE}; log "webmail database created"; fi`,
                `runuser -u ${WEBMAIL_USER} -- /usr/share/roundcube/bin/updatedb.sh --package roundcube --dir /usr/share/roundcube/SQL >/dev/null`,
                "changed_in /etc/systemd/system && systemctl daemon-reload",
                // The socket starts PHP-FPM (which earlier versions started at boot).
                `systemctl disable --quiet ${UNIT}`,
                `systemctl enable --quiet ${onDemandUnit(PHP)} ${TIMER_UNITS}`,
                `changed && ${restartOnDemand(PHP)}`,
                `systemctl is-active --quiet ${onDemandUnit(PHP)} || systemctl start ${onDemandUnit(PHP)}`,
                `systemctl start ${TIMER_UNITS}`,
            ].join("\n"),
            // Turned off (or the server going): no PHP runs; the database stays on the volume.
            delete: `systemctl disable --quiet --now ${onDemandUnit(PHP)} ${UNIT} ${TIMER_UNITS} 2>/dev/null; systemctl stop ${PHP.name}.service 2>/dev/null || true`,
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
