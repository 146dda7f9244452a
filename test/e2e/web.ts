/**
 * Web checks on the local target, with curl, openssl and git from the client: redirects to the one
 * canonical host, HSTS and headers, TLS versions, `git push` deploys (and a failed build that changes
 * nothing), ~user pages, the MTA-STS policy against its DNS id, mail autoconfiguration, proxied apps
 * with websockets.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { sh, Result } from "./sh";
import { NET } from "./world";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { portOf, LOCAL_PORTS } from "../../services/catalog";
import { HOMES_DIR } from "../../components/base";
import { SSH_OPTIONS } from "./client";

export interface WebContext {
    readonly checks: Checks;
    readonly server: TestServer;
    readonly serverIp: string;
    readonly sshPort: number;
    readonly adminUser: string;
    /** CA file that verifies the server's certificates. */
    readonly root: string;
    /** The owner's SSH private key. */
    readonly ownerKey: string;
    /** A CI system's key (siteDeployKeys): it may push the site and nothing else. */
    readonly deployKey: string;
    readonly work: string;
}

const DOMAIN = "example.test";
const fromClient = (cmd: string): Result => sh(cmd, { ns: NET.client.ns, timeoutMs: 60_000 });

export async function webChecks(c: WebContext): Promise<void> {
    const { checks, server } = c;
    const resolve = ["", "www.", "mail.", "mta-sts.", "autoconfig.", "autodiscover.", "chat."]
        .map(p => `--resolve ${p}${DOMAIN}:443:${c.serverIp} --resolve ${p}${DOMAIN}:80:${c.serverIp}`).join(" ");
    const curl = (args: string) => fromClient(`curl -s --cacert ${c.root} ${resolve} --max-time 10 ${args}`);
    const redirect = (url: string) => curl(`-o /dev/null -w '%{http_code} %{redirect_url}' '${url}'`).stdout;

    checks.check("port 80 sends every name to HTTPS", () => {
        const got = [redirect(`http://${DOMAIN}/a?b=1`), redirect(`http://mta-sts.${DOMAIN}/x`)];
        return got.join("|") === `301 https://${DOMAIN}/a?b=1|301 https://mta-sts.${DOMAIN}/x` ? undefined : got.join("\n");
    });
    checks.check("www and the hostname redirect to the one canonical host, path and query kept", () => {
        const got = [redirect(`https://www.${DOMAIN}/p?q=2`), redirect(`https://mail.${DOMAIN}/p`)];
        return got.join("|") === `301 https://${DOMAIN}/p?q=2|301 https://${DOMAIN}/p` ? undefined : got.join("\n");
    });
    checks.check("HSTS and the security headers on every answer, no version", () => {
        const heads = [curl(`-I https://${DOMAIN}/`).stdout, curl(`-I https://www.${DOMAIN}/`).stdout];
        const wanted = [/^strict-transport-security: max-age=63072000\r?$/mi, /^x-content-type-options: nosniff\r?$/mi,
            /^x-frame-options: SAMEORIGIN\r?$/mi, /^referrer-policy: strict-origin-when-cross-origin\r?$/mi, /^server: nginx\r?$/mi];
        const missing = heads.flatMap(h => wanted.filter(w => !w.test(h)).map(String));
        return missing.length ? `missing ${missing.join(", ")}\n${heads[0]}` : undefined;
    });
    checks.check("TLS 1.0 and 1.1 are refused; 1.2 and 1.3 verify", () => {
        const tls = (version: string) => fromClient(`openssl s_client -connect ${c.serverIp}:443 -servername ${DOMAIN} -${version} ` +
            `-cipher DEFAULT@SECLEVEL=0 -CAfile ${c.root} -verify_return_error </dev/null 2>&1`).code;
        const codes = Object.fromEntries(["tls1", "tls1_1", "tls1_2", "tls1_3"].map(v => [v, tls(v)]));
        return codes.tls1 !== 0 && codes.tls1_1 !== 0 && codes.tls1_2 === 0 && codes.tls1_3 === 0 ? undefined : JSON.stringify(codes);
    });

    // git push deploys, as the owner would from a laptop.
    const repo = path.join(c.work, "site");
    fs.mkdirSync(repo);
    const ssh = (key: string) => `ssh -i ${key} -p ${c.sshPort} ${SSH_OPTIONS}`;
    const git = (args: string, key = c.ownerKey) => sh(`cd ${repo} && GIT_SSH_COMMAND='${ssh(key)}' ` +
        `git -c user.name=owner -c user.email=alice@${DOMAIN} ${args}`, { ns: NET.client.ns, timeoutMs: 60_000 });
    const remote = `ssh://git@${c.serverIp}/srv/git/site.git`;
    const page = () => curl(`https://${DOMAIN}/`).stdout;
    /** Pushes a page; `broken` makes the build fail, `probe` is shell the build runs (as a hostile dependency would). */
    const push = (text: string, broken = false, probe?: string, key = c.ownerKey) => {
        fs.writeFileSync(path.join(repo, "index.html"), `<!doctype html><p>${text}: @BUILD@</p>\n`);
        if (broken) fs.writeFileSync(path.join(repo, "broken"), "");
        else fs.rmSync(path.join(repo, "broken"), { force: true });
        if (probe) fs.writeFileSync(path.join(repo, "probe"), probe);
        else fs.rmSync(path.join(repo, "probe"), { force: true });
        git(`add -A && git -c user.name=owner -c user.email=alice@${DOMAIN} commit -qm '${text}'`);
        return git(`push -q ${remote} HEAD:main`, key);
    };
    checks.check("the placeholder page is served before the first push", () => page().includes(`<p>${DOMAIN}</p>`) ? undefined : page());
    git("init -q -b main");
    const first = push("first version");
    checks.check("git push over SSH builds the site and makes it live", () =>
        first.code === 0 && page().includes("first version: built by siteBuild") ? undefined : first.stderr + page());
    const failed = push("second version", true);
    checks.check("a push whose build fails is refused with the build's message, and the old site stays up", () =>
        failed.code !== 0 && /the build failed; push refused/.test(failed.stderr) && page().includes("first version: built")
            ? undefined : `exit ${failed.code}: ${failed.stderr}\n${page()}`);
    const third = push("third version");
    checks.check("the next good push goes live", () => third.code === 0 && page().includes("third version: built") ? undefined : third.stderr + page());
    const builder = push("built as whom", false, "id -un > public/builder.txt");
    checks.check("the build runs as selfhost-site, not as the pushing login", () =>
        builder.code === 0 && curl(`https://${DOMAIN}/builder.txt`).stdout.trim() === "selfhost-site" ? undefined : builder.stderr + curl(`https://${DOMAIN}/builder.txt`).stdout);
    const deployed = push("pushed by CI", false, undefined, c.deployKey);
    checks.check("a siteDeployKeys key publishes the site through the git login", () =>
        deployed.code === 0 && page().includes("pushed by CI: built") ? undefined : deployed.stderr + page());
    checks.check("that key gets no shell, no command, no forwarding and no other login: git and nothing else", () => {
        const tries = {
            shell: fromClient(`${ssh(c.deployKey)} -tt git@${c.serverIp} 2>&1`),
            command: fromClient(`${ssh(c.deployKey)} git@${c.serverIp} id 2>&1`),
            forwarding: fromClient(`${ssh(c.deployKey)} -N -o ExitOnForwardFailure=yes -R 18080:127.0.0.1:80 git@${c.serverIp} 2>&1`),
            admin: fromClient(`${ssh(c.deployKey)} ${c.adminUser}@${c.serverIp} id 2>&1`),
        };
        const allowed = Object.entries(tries).filter(([, r]) => r.code === 0 || /uid=/.test(r.stdout));
        return allowed.length ? allowed.map(([what, r]) => `${what}: exit ${r.code} ${r.stdout.trim().slice(-120)}`).join("\n") : undefined;
    });
    const live = page();
    const escalate = push("escalated", false, "sudo -n true");
    const mail = push("mail read", false, "cat \"$(find /srv/mail -type f 2>/dev/null | head -1)\" > public/stolen");
    const secret = push("secret read", false, "cat /etc/selfhost/backup/password > public/stolen");
    checks.check("a build that tries sudo, or to read mail or the backup password, fails: the push is refused and the site stays", () =>
        [escalate, mail, secret].every(r => r.code !== 0) && page() === live ? undefined
            : `sudo: exit ${escalate.code}, mail: exit ${mail.code}, secret: exit ${secret.code} ${secret.stderr}`);
    checks.check("a symlink the build made to a system file is not served", () => {
        const status = curl(`-o /dev/null -w '%{http_code}' https://${DOMAIN}/leak`).stdout;
        return status === "403" ? undefined : `/leak: HTTP ${status}`;
    });
    checks.check("the site is a release on the volume, switched by symlink", () => {
        const r = server.exec("readlink /srv/www/site; ls /srv/www/releases | wc -l");
        const [target, count] = r.stdout.trim().split("\n");
        return /^\/srv\/www\/releases\/\d{8}T\d{6}Z-[0-9a-f]{12}$/.test(target) && Number(count) <= 4 ? undefined : r.stdout;
    });

    checks.check("a ~user page made in a new folder of ~/public_html is served, while the admin's other new files are closed to other users (umask 027)", () => {
        const made = fromClient(`ssh -i ${c.ownerKey} -p ${c.sshPort} ${SSH_OPTIONS} ` +
            `${c.adminUser}@${c.serverIp} 'mkdir -p ~/public_html/notes && echo "<p>the admin home page</p>" > ~/public_html/index.html && ` +
            `echo "<p>the admin home page</p>" > ~/public_html/notes/index.html && echo private > ~/private.txt && stat -c %A ~/private.txt'`);
        const got = curl(`https://${DOMAIN}/~${c.adminUser}/`).stdout + curl(`https://${DOMAIN}/~${c.adminUser}/notes/`).stdout;
        const others = server.exec(`runuser -u nobody -- cat ${HOMES_DIR}/${c.adminUser}/private.txt`);
        return made.code === 0 && got.split("the admin home page").length === 3 && /^-rw-r?w?-?---$/.test(made.stdout.trim()) && others.code !== 0 ? undefined
            : `${made.stdout}${made.stderr} ${got.slice(0, 200)} nobody: ${others.code}`;
    });
    checks.check("dotfiles are never served (a ~user/.env here), /.well-known is", () => {
        const made = fromClient(`ssh -i ${c.ownerKey} -p ${c.sshPort} ${SSH_OPTIONS} ` +
            `${c.adminUser}@${c.serverIp} 'echo SECRET=1 > ~/public_html/.env'`);
        const status = (url: string) => curl(`-o /dev/null -w '%{http_code}' '${url}'`).stdout;
        const [dotfile, wellKnown] = [status(`https://${DOMAIN}/~${c.adminUser}/.env`), status(`https://${DOMAIN}/.well-known/autoconfig/mail/config-v1.1.xml`)];
        return made.code === 0 && dotfile === "404" && wellKnown === "200" ? undefined : `~/.env: ${dotfile}, /.well-known: ${wellKnown}`;
    });

    checks.check("the MTA-STS policy is served and its hash is the id published in DNS", () => {
        const policy = curl(`https://mta-sts.${DOMAIN}/.well-known/mta-sts.txt`).stdout;
        const id = fromClient(`kdig +short @${NET.inet.ipv4} TXT _mta-sts.${DOMAIN}`).stdout.match(/id=([0-9a-f]+)/)?.[1];
        const fields = Object.fromEntries(policy.split("\r\n").filter(Boolean).map(l => l.split(": ")));
        const hash = crypto.createHash("sha256").update(policy).digest("hex").slice(0, 20);
        return fields.version === "STSv1" && fields.mx === `mail.${DOMAIN}` && /^(testing|enforce)$/.test(fields.mode) && Number(fields.max_age) > 0 && id === hash
            ? undefined : `policy ${JSON.stringify(fields)}, DNS id ${id}, policy hash ${hash}`;
    });
    const ports = [portOf("imaps"), portOf("submissions"), portOf("submission")];
    checks.check("Thunderbird autoconfig names the hostname and the real ports (both URLs)", () => {
        const xmls = [curl(`https://autoconfig.${DOMAIN}/mail/config-v1.1.xml`).stdout, curl(`https://${DOMAIN}/.well-known/autoconfig/mail/config-v1.1.xml`).stdout];
        const ok = xmls.every(x => /<hostname>mail\.example\.test<\/hostname>/.test(x) && ports.every(p => x.includes(`<port>${p}</port>`)));
        return ok ? undefined : xmls[0];
    });
    checks.check("Outlook autodiscover answers its POST with the hostname and ports", () => {
        const xml = curl(`-X POST -H 'Content-Type: text/xml' --data '<Autodiscover/>' https://autodiscover.${DOMAIN}/autodiscover/autodiscover.xml`).stdout;
        return /<Server>mail\.example\.test<\/Server>/.test(xml) && xml.includes(`<Port>${portOf("imaps")}</Port>`) ? undefined : xml;
    });

    // Two stand-in apps on the server's loopback: one under a path, one on its own subdomain.
    fs.copyFileSync(path.join(__dirname, "app.py"), path.join(server.root, "root/app.py"));
    server.exec("(setsid python3 /root/app.py echo 8080 >/dev/null 2>&1 &); (setsid python3 /root/app.py chat 8081 >/dev/null 2>&1 &); sleep 1");
    checks.check("an app under a path answers through the proxy, told the host and https", () => {
        const got = curl(`https://${DOMAIN}/echo/hello?x=1`).stdout;
        return got.trim() === `app echo path=/echo/hello?x=1 host=${DOMAIN} proto=https` ? undefined : got;
    });
    checks.check("a proxied app's responses are never compressed (BREACH: apps echo secrets), while static pages are", () => {
        const encoding = (url: string) => /^content-encoding: *(\S+)/im.exec(curl(`-o /dev/null -D - -H 'Accept-Encoding: gzip' ${url}`).stdout)?.[1] ?? "none";
        const [app, page] = [encoding(`https://${DOMAIN}/echo/${"x".repeat(200)}`), encoding(`https://${DOMAIN}/`)];
        return app === "none" && page === "gzip" ? undefined : `app: ${app}, static page: ${page}`;
    });
    checks.check("an app on its own subdomain answers, with a certificate for that name", () => {
        const got = curl(`https://chat.${DOMAIN}/room`).stdout;
        return got.trim() === `app chat path=/room host=chat.${DOMAIN} proto=https` ? undefined : got;
    });
    checks.check("websockets pass through the proxy (101 with the right accept key, then a frame)", () => {
        const r = curl(`--http1.1 -i -N --max-time 3 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' ` +
            `-H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' https://chat.${DOMAIN}/socket`);
        return /^HTTP\/1\.1 101/m.test(r.stdout) && /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i.test(r.stdout) && r.stdout.includes("hi chat")
            ? undefined : r.stdout.slice(0, 400);
    });
    checks.check("the statistics report is served on the server's loopback, reached through an SSH tunnel; goaccess ran confined as selfhost-stats", () => {
        const tunnel = fromClient(`ssh -f -N -o ExitOnForwardFailure=yes -i ${c.ownerKey} -p ${c.sshPort} ${SSH_OPTIONS} ` +
            `-L 18089:127.0.0.1:${LOCAL_PORTS.webStats} ${c.adminUser}@${c.serverIp}`);
        const report = fromClient("curl -s --max-time 10 http://127.0.0.1:18089/");
        fromClient("pkill -f 'L 18089:127.0.0.1'");
        const timer = server.exec("systemctl is-enabled selfhost-webstats.timer").stdout.trim();
        const writer = server.exec("stat -c %U /var/lib/selfhost/webstats/index.html").stdout.trim();
        const exposure = server.exposure("selfhost-webstats.service");
        return tunnel.code === 0 && /goaccess/i.test(report.stdout) && timer === "enabled" && writer === "selfhost-stats" && exposure <= 3 ? undefined
            : `tunnel ${tunnel.code} ${tunnel.stderr}, timer ${timer}, written by ${writer}, exposure ${exposure}, ${report.stdout.slice(0, 200)}`;
    });
    checks.check("nginx -t is clean and logs are kept 14 days", () => {
        const r = server.exec("nginx -t 2>&1 && logrotate -d /etc/logrotate.d/nginx 2>&1 | grep -c 'error' ; grep -c 'rotate 14' /etc/logrotate.d/nginx");
        return /successful/.test(r.stdout) && r.stdout.trim().endsWith("0\n1") ? undefined : r.stdout;
    });
    server.exec("pkill -f /root/app.py");
}
