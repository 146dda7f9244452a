/**
 * Web: nginx on one canonical HTTPS host (the domain), the site published by `git push`, users'
 * public_html, local apps behind a proxy, and what mail servers and clients fetch (MTA-STS policy,
 * autoconfiguration). Everything that must outlive the server (releases, the repository) is on the volume.
 */
import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../config";
import { DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { mtaStsPolicy } from "./dns/records";
import { CERT_DIR } from "./tls";
import { portOf, SERVICE_SUBDOMAINS, LOCAL_PORTS } from "../services/catalog";
import { renderTemplate, confined } from "../services/template";
import { uploadServer } from "./xmpp";
import { webmailServer, webmailName } from "./webmail";
import { HOMES_DIR, GIT_USER } from "./base";
import { TLS_POLICY, tlsValues } from "../services/tls-policy";

const WWW_DIR = `${DATA_DIR}/www`;
/** The live site: a symlink to the newest release, switched in one rename. */
export const WEB_ROOT = `${WWW_DIR}/site`;
export const RELEASES_DIR = `${WWW_DIR}/releases`;
/** The git login's home (root's: nothing in it is the login's to change but the repository). */
const GIT_HOME = `${DATA_DIR}/git`;
export const SITE_REPO = `${GIT_HOME}/site.git`;
const GENERATED = "/etc/nginx/selfhost";
const HOOKS = "/etc/selfhost/git-hooks";
const BUILD_SCRIPT = "/etc/selfhost/site-build";
/** The statistics report is derived from logs on the root disk: it need not outlive the server. */
const STATS_DIR = "/var/lib/selfhost/webstats";
const STATS_UNIT = "selfhost-webstats";
/**
 * Unprivileged users of their own: the site build (untrusted code from the pushed tree) and the statistics
 * (internet-supplied logs). Pushes arrive as GIT_USER, a login that can run git and nothing else.
 */
export const SITE_BUILDER = "selfhost-site";
const BUILD_DIR = `/var/lib/${SITE_BUILDER}/builds`;
const SUDOERS = "/etc/sudoers.d/selfhost-git";
const STATS_USER = "selfhost-stats";
/** A system user without login (sudo -u still runs commands as it). */
const systemUser = (name: string, home: string) =>
    `id -u ${name} >/dev/null 2>&1 || useradd --system --home-dir ${home} --shell /usr/sbin/nologin ${name}`;

/** The site, its repository and the certificates nginx serves live on the volume. */
export const dataUnits = ["nginx"];
export const packages = (s: Settings) => ["nginx", "git", ...(s.userDirs ? ["acl"] : []), ...(s.webStats ? ["goaccess"] : []), ...s.sitePackages];

/**
 * nginx (www-data) reads ~/public_html and nothing else of the home: an ACL entry for it alone, where the
 * owner's umask (027) leaves other users out. The directory's default entry gives what is made in it later
 * the same (a file moved in from elsewhere keeps its own: the README says so).
 */
const publicHtml = (home: string) => [
    `install -d -m 0750 -o "$(stat -c %U ${home})" -g "$(stat -c %G ${home})" ${home}/public_html`,
    `chmod o-x ${home}`,
    `setfacl -m u:www-data:x ${home}`,
    `setfacl -R -m u:www-data:rX ${home}/public_html`,
    `find ${home}/public_html -type d -exec setfacl -d -m u:www-data:rX {} +`,
];

const INDENT = "    ";
const indent = (text: string, by: string) => text.split("\n").map(l => l ? by + l : l).join("\n");

/** nginx's HTTPS servers, derived from the settings. */
export function nginxSite(s: Settings): string {
    const pathApps = s.apps.filter(a => a.path).map(a =>
        `\n# app ${a.name}\nlocation ${a.path}/ {\n${INDENT}proxy_pass http://127.0.0.1:${a.port};\n${INDENT}include snippets/selfhost-proxy.conf;\n}\n` +
        `location = ${a.path} {\n${INDENT}return 301 ${a.path}/;\n}`);
    const subdomainApps = s.apps.filter(a => a.subdomain).map(a =>
        renderTemplate("nginx/proxied-host.conf", { what: `app ${a.name}, on loopback port ${a.port}`, name: `${a.subdomain}.${s.domain}`, port: a.port, extra: "" }));
    return renderTemplate("nginx/https.conf", {
        domain: s.domain, webRoot: WEB_ROOT, generated: GENERATED,
        // www and the hostname lead to the canonical host; every other name has a server of its own.
        redirected: [s.hostname, ...SERVICE_SUBDOMAINS.web.map(n => `${n}.${s.domain}`)].filter(n => n !== s.domain).join(" "),
        locations: indent([...(s.userDirs ? [renderTemplate("nginx/userdirs.conf", { homesDir: HOMES_DIR })] : []), ...pathApps].join("\n"), INDENT),
        appServers: [...subdomainApps, uploadServer(s), ...(s.webmail ? [webmailServer(s)] : []),
            ...(s.webStats ? [renderTemplate("web/stats.nginx.conf", { statsDir: STATS_DIR, statsPort: LOCAL_PORTS.webStats })] : [])].join("\n"),
    });
}

export class Web extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: ServiceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Web", name, {}, opts);
        const s = args.settings;
        const ports = { imapsPort: portOf("imaps"), submissionsPort: portOf("submissions"), submissionPort: portOf("submission") };
        this.step = new RemoteStep("web", {
            connection: args.connection,
            prepare: [
                // Its keys and sshd's leave are the base step's (access); its shell lets it run git and nothing else.
                `id -u ${GIT_USER} >/dev/null 2>&1 || useradd --system --home-dir ${GIT_HOME} --no-create-home --shell /usr/bin/git-shell ${GIT_USER}`,
                `install -d -m 0755 ${GIT_HOME}`,
                `install -d -o ${GIT_USER} -g ${GIT_USER} -m 0755 ${WWW_DIR} ${RELEASES_DIR}`,
                // The site and its repository were the admin's before pushes had a login of their own, and a new
                // server may number the login otherwise: they are the login's (symlinks themselves, not their targets).
                `[ ! -d ${SITE_REPO} ] || chown -Rh ${GIT_USER}:${GIT_USER} ${SITE_REPO}`,
                // The site was a plain directory before releases existed: it becomes the first release.
                `if [ -d ${WEB_ROOT} ] && [ ! -L ${WEB_ROOT} ]; then mv ${WEB_ROOT} ${RELEASES_DIR}/initial && ln -s ${RELEASES_DIR}/initial ${WEB_ROOT}; fi`,
                // A placeholder page until the owner pushes a site; never overwrites one.
                `if [ ! -e ${WEB_ROOT} ]; then install -d -o ${GIT_USER} -g ${GIT_USER} ${RELEASES_DIR}/placeholder && ` +
                `echo '<!doctype html><title>${s.domain}</title><p>${s.domain}</p>' > ${RELEASES_DIR}/placeholder/index.html && ` +
                `ln -s ${RELEASES_DIR}/placeholder ${WEB_ROOT}; fi`,
                `chown -Rh ${GIT_USER}:${GIT_USER} ${WWW_DIR}`,
                `install -d -o ${GIT_USER} -g ${GIT_USER} -m 0755 ${SITE_REPO}`,
                `[ -e ${SITE_REPO}/HEAD ] || runuser -u ${GIT_USER} -- git init -q --bare -b main ${SITE_REPO}`,
                `runuser -u ${GIT_USER} -- git -C ${SITE_REPO} config core.hooksPath ${HOOKS}`,
                systemUser(SITE_BUILDER, `/var/lib/${SITE_BUILDER}`),
                `install -d -o ${SITE_BUILDER} -g ${SITE_BUILDER} -m 0700 /var/lib/${SITE_BUILDER} ${BUILD_DIR}`,
                ...(s.userDirs ? publicHtml(`${HOMES_DIR}/${s.adminUser}`) : []),
                ...(s.webStats ? [systemUser(STATS_USER, "/nonexistent"), `install -d -o ${STATS_USER} -g ${STATS_USER} -m 0755 ${STATS_DIR}`] : []),
            ].join("\n"),
            files: [
                { path: "/etc/nginx/snippets/selfhost-tls.conf", content: renderTemplate("nginx/tls.conf", { certDir: CERT_DIR, ...tlsValues(),
                    nginxProtocols: ["TLSv1.2", "TLSv1.3"].filter(p => p >= TLS_POLICY.minProtocol).join(" ") }) },
                { path: "/etc/nginx/snippets/selfhost-headers.conf", content: renderTemplate("nginx/headers.conf", {}) },
                { path: "/etc/nginx/snippets/selfhost-proxy.conf", content: renderTemplate("nginx/proxy.conf", {}) },
                { path: "/etc/nginx/conf.d/selfhost-https.conf", content: nginxSite(s) },
                { path: `${GENERATED}/mta-sts.txt`, content: mtaStsPolicy(s) },
                { path: `${GENERATED}/config-v1.1.xml`, content: renderTemplate("nginx/autoconfig.xml", { domain: s.domain, hostname: s.hostname, ...ports,
                    webMail: s.webmail ? `\n    <webMail>\n      <loginPage url="https://${webmailName(s)}/"/>\n    </webMail>` : "" }) },
                { path: `${GENERATED}/autodiscover.xml`, content: renderTemplate("nginx/autodiscover.xml", { hostname: s.hostname, ...ports }) },
                { path: "/etc/logrotate.d/nginx", content: renderTemplate("nginx/logrotate.conf", { days: s.webLogDays }) },
                { path: `${HOOKS}/pre-receive`, mode: "0755", content: renderTemplate("web/pre-receive", {
                    releases: RELEASES_DIR, site: WEB_ROOT, buildScript: BUILD_SCRIPT, siteDir: s.siteDir, domain: s.domain, builder: SITE_BUILDER,
                    gitUser: GIT_USER, buildDir: BUILD_DIR,
                }) },
                // The push login may run commands as the builder, and as nobody else.
                { path: SUDOERS, mode: "0440", content: `${GIT_USER} ALL=(${SITE_BUILDER}) NOPASSWD: ALL\n` },
                { path: BUILD_SCRIPT, content: renderTemplate("web/site-build", { siteBuild: s.siteBuild || "true" }) },
                ...(s.webStats ? [
                    { path: `/etc/systemd/system/${STATS_UNIT}.service`, content: renderTemplate("web/stats.service", { statsDir: STATS_DIR, user: STATS_USER, confined: confined() }) },
                    { path: `/etc/systemd/system/${STATS_UNIT}.timer`, content: renderTemplate("web/stats.timer", {}) },
                ] : []),
            ],
            check: ["check nginx -t", `check visudo -c -q -f ${SUDOERS}`].join("\n"),
            run: [
                "changed_in /etc/nginx && systemctl reload nginx",
                ...(s.webStats ? [
                    "systemctl daemon-reload",
                    `systemctl enable --quiet --now ${STATS_UNIT}.timer`,
                    // The first report now, not tomorrow.
                    `[ -e ${STATS_DIR}/index.html ] || systemctl start ${STATS_UNIT}.service`,
                ] : []),
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
