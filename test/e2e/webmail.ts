/**
 * Webmail on the local target, in a real browser: Debian's Chromium on the client host, driven by
 * Selenium (webmail.py). alice reads the peer's mail, writes to the peer, makes a folder and a Sieve
 * filter in Settings → Filters that files the peer's next message, and logs out for good. Screenshots of
 * every page are kept under the work dir.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { run, sh, Result } from "./sh";
import { NET } from "./world";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { PEER_USER } from "./peer";

export interface WebmailContext {
    readonly checks: Checks;
    readonly server: TestServer;
    readonly peer: TestServer;
    readonly serverIp: string;
    /** The ACME CA's root, which the world trusts. */
    readonly root: string;
    readonly work: string;
    readonly passwords: Record<string, string>;
}

const NAME = "webmail.example.test";
const URL = `https://${NAME}/`;
const SCRIPT = path.join(__dirname, "webmail.py");
const IMAP = path.join(__dirname, "imap.py");
const FOLDER = "Peer";
const PEER_ADDRESS = `${PEER_USER}@peer.test`;

/** Where the browser puts the screenshots (the client sees the work dir at the same path). */
const screenshotsOf = (work: string) => path.join(work, "webmail-screenshots");
/** Where they are kept once the run is over (the work dir goes; the next run replaces them). */
export const KEPT_SCREENSHOTS = path.join(os.tmpdir(), "selfhost-webmail-screenshots");

/**
 * A login through the form as a script does it (its CSRF token from the page, then the POST), from the
 * client; `from` picks the source address. Answers the Location the POST redirects to ("" if none):
 * the mailbox when Dovecot took the password over TLS the webmail verified.
 */
export function formLogin(o: { user: string; password: string; ca: string; serverIp: string; from?: string }): string {
    const curl = `curl -s --max-time 20 ${o.from ? `--interface ${o.from}` : ""} --cacert ${o.ca} --resolve ${NAME}:443:${o.serverIp} -b /tmp/jar -c /tmp/jar`;
    return sh(`rm -f /tmp/jar; token=$(${curl} ${URL} | sed -n 's/.*name="_token" value="\\([^"]*\\)".*/\\1/p' | head -1); ` +
        `${curl} -o /dev/null -w '%{redirect_url}' --data-urlencode _task=login --data-urlencode _action=login --data-urlencode _timezone=UTC ` +
        `--data-urlencode "_token=$token" --data-urlencode '_user=${o.user}' --data-urlencode '_pass=${o.password}' '${URL}?_task=login'`,
    { ns: NET.client.ns, timeoutMs: 60_000 }).stdout.trim();
}

export async function webmailChecks(c: WebmailContext): Promise<void> {
    const { checks, server, peer } = c;
    const shots = screenshotsOf(c.work);
    const client = (cmd: string): Result => sh(cmd, { ns: NET.client.ns, timeoutMs: 60_000 });
    const browser = (...args: string[]): Result => {
        const r = run(["python3", SCRIPT, URL, "alice@example.test", shots, ...args], { ns: NET.client.ns, input: c.passwords.alice, timeoutMs: 300_000 });
        for (const line of r.stdout.split("\n").filter(l => l.startsWith("shot "))) console.log(`    screenshot ${line.split(" ").slice(1).join(": ")}`);
        return r;
    };
    // chromedriver's native frames ("#3 0x…") say nothing and would push the exception's own line out of view.
    const failure = (r: Result) => r.code === 0 && /^ok$/m.test(r.stdout) ? undefined
        : `exit ${r.code}\n${r.stderr.split("\n").filter(l => !/^#\d+ 0x[0-9a-f]+ /.test(l.trim())).slice(-25).join("\n")}`;
    const inFolder = async (folder: string, subject: string, seconds = 60): Promise<boolean> => {
        for (let i = 0; i < seconds; i++) {
            const r = run(["python3", IMAP, "mail.example.test", c.root, "alice@example.test", "list", folder], { ns: NET.client.ns, input: c.passwords.alice, timeoutMs: 60_000 });
            if (r.stdout.includes(`Subject: ${subject}`)) return true;
            await new Promise(resolve => setTimeout(resolve, 1000));
        }
        return false;
    };
    // Subjects without quotes: they go through the peer's shell.
    const fromPeer = (subject: string) => {
        const r = peer.exec(`printf 'Subject: ${subject}\\n\\nWritten on the peer.\\n' | sendmail -f ${PEER_ADDRESS} alice@example.test`);
        if (r.code !== 0) throw new Error(`the peer's sendmail failed: ${r.stderr}`);
    };

    // Chromium trusts the certificates of its NSS database, as a browser trusts Let's Encrypt's root.
    client(`rm -rf /root/.pki && mkdir -p /root/.pki/nssdb && certutil -d sql:/root/.pki/nssdb -N --empty-password && ` +
        `certutil -d sql:/root/.pki/nssdb -A -t C,, -n acme-root -i ${c.root}`);

    checks.check("Debian's PHP-FPM is off; Roundcube's runs only while used: when its proxy exits idle it stops, " +
        "and the next request starts it (the master as root, a worker as roundcube) behind nginx's socket (www-data, 0600)", () => {
        const state = () => server.exec("systemctl is-active roundcube").stdout.trim();
        const debian = server.exec("systemctl is-enabled php8.4-fpm; systemctl is-active php8.4-fpm").stdout.trim().replace(/\n/g, " ");
        const idleExit = server.exec("systemctl show -P ExecStart selfhost-webmail.service").stdout.match(/--exit-idle-time=\S+/)?.[0];
        server.exec("systemctl stop selfhost-webmail.service");
        const stopped = state();
        const page = client(`curl -s -o /dev/null -w '%{http_code}' --cacert ${c.root} --resolve ${NAME}:443:${c.serverIp} ${URL}`).stdout;
        const r = server.exec("main=$(systemctl show -p MainPID --value roundcube); ps -o user= -p $main; ps -o user= --ppid $main | sort -u; " +
            "stat -c '%U %a' /run/selfhost-webmail.sock; systemctl show -p NRestarts --value roundcube").stdout.trim().replace(/\n/g, " ");
        const found = `php8.4-fpm ${debian}; ${idleExit ?? "no idle exit"}; after the proxy's exit ${stopped}; a request: ${page}, then ${state()}: ${r}`;
        return debian === "disabled inactive" && idleExit && stopped === "inactive" && page === "200" && state() === "active" &&
            r === "root roundcube www-data 600 0" ? undefined : found;
    });

    // alice's active Sieve script as it was, put back at the end: later checks count the peer's mail in her INBOX.
    const activeScript = server.exec("doveadm sieve list -u alice@example.test | sed -n 's/ ACTIVE$//p'").stdout.trim();
    // doveadm's table formatter titles the script "sieve script:".
    const scriptOf = () => server.exec(`doveadm sieve get -u alice@example.test '${activeScript}' | sed '1{/^sieve script:$/d}'`).stdout;
    const scriptBefore = scriptOf();

    fromPeer("e2e for the webmail");
    const arrived = await inFolder("INBOX", "e2e for the webmail");
    const readSend = browser("read-send", "e2e for the webmail", PEER_ADDRESS, "e2e from the webmail", FOLDER, PEER_ADDRESS);
    checks.check("in Chromium, alice logs in to the webmail with her address and mail password and finds the peer's message in her inbox; " +
        "she writes to the peer, makes a folder and a filter in Settings → Filters, and the console shows no CSP violation", () =>
        arrived ? failure(readSend) : "the peer's message never reached the INBOX");

    const atPeer = async (): Promise<string> => {
        for (let i = 0; i < 60; i++) {
            const message = peer.exec(`cat /var/mail/${PEER_USER} 2>/dev/null`).stdout.split(/^(?=From )/m).find(m => m.includes("Subject: e2e from the webmail"));
            if (message) return message;
            await new Promise(resolve => setTimeout(resolve, 500));
        }
        return "";
    };
    const sent = await atPeer();
    const results = sent.match(/^Authentication-Results:[^\n]*(\n\s+[^\n]*)*/m)?.[0] ?? "";
    checks.check("the webmail's message reaches the peer with spf, dkim and dmarc passing there", () =>
        ["spf", "dkim", "dmarc"].every(m => new RegExp(`\\b${m}=pass\\b`).test(results)) ? undefined : `${results || "(no Authentication-Results)"}\n${sent.slice(0, 800)}`);
    checks.check("the filter is in alice's active Sieve script on the server (ManageSieve, written by the webmail)", () => {
        // Roundcube adds to the script that is active (an earlier check made one); it makes "roundcube" only when none is.
        const r = server.exec("doveadm sieve get -u alice@example.test \"$(doveadm sieve list -u alice@example.test | sed -n 's/ ACTIVE$//p')\"");
        return r.stdout.includes(`fileinto "${FOLDER}"`) && r.stdout.includes(PEER_ADDRESS) ? undefined : r.stdout + r.stderr;
    });

    fromPeer("e2e filed by the webmail filter");
    const filed = await inFolder(FOLDER, "e2e filed by the webmail filter");
    const logout = browser("folder-logout", FOLDER, "e2e filed by the webmail filter");
    checks.check(`the peer's next message lands in ${FOLDER} (IMAP), alice sees it there, logs out, and her old session's cookies get the login form`, () =>
        filed ? failure(logout) : `not in ${FOLDER}`);
    checks.check("a wrong password is refused in the browser", () => failure(browser("wrong-password")));

    const head = client(`curl -sS -D - -o /dev/null --cacert ${c.root} --resolve ${NAME}:443:${c.serverIp} ${URL}`).stdout;
    const plain = client(`curl -s -o /dev/null -w '%{http_code} %{redirect_url}' --resolve ${NAME}:80:${c.serverIp} 'http://${NAME}/?_task=mail'`).stdout;
    checks.check("the webmail's page: HTTP only redirects to it; strict CSP, HSTS, no framing by others; its session cookie Secure, HttpOnly, SameSite=Strict", () => {
        if (plain !== `301 ${URL}?_task=mail`) return `http://: ${plain}`;
        const cookie = /^set-cookie: roundcube_sessid=[^\r\n]*/mi.exec(head)?.[0] ?? "";
        const csp = /^content-security-policy: ([^\r\n]*)/mi.exec(head)?.[1] ?? "";
        return /default-src 'none'/.test(csp) && /frame-ancestors 'self'/.test(csp) && /^strict-transport-security:/mi.test(head) &&
            /; secure/i.test(cookie) && /; HttpOnly/i.test(cookie) && /; samesite=strict/i.test(cookie) ? undefined : head;
    });
    const hidden = ["installer/", "config/config.inc.php", "plugins/managesieve/config.inc.php", "SQL/sqlite.initial.sql", "logs/", "temp/",
        "bin/gc.sh", "program/lib/Roundcube/rcube.php", "composer.json", "skins/elastic/templates/login.html", "index.php/../config/"];
    checks.check(`nothing but the entry point and static files is served (${hidden.length} internal paths: 404)`, () => {
        const served = hidden.map(p => [p, client(`curl -s -o /dev/null -w '%{http_code}' --cacert ${c.root} --resolve ${NAME}:443:${c.serverIp} ${URL}${p}`).stdout] as const)
            .filter(([, code]) => code !== "404");
        return served.length ? served.map(([p, code]) => `${p}: ${code}`).join("\n") : undefined;
    });
    checks.check("every request the browser made was answered (no 404 nor 5xx for the webmail in nginx's log)", () => {
        // The browser's requests, by its user agent (curl's probes of internal paths are meant to get 404).
        const r = server.exec("grep -F 'Chrome/' /var/log/nginx/access.log | awk '$9 ~ /^(404|5..)$/' | head -5");
        return r.stdout.trim() ? r.stdout : undefined;
    });
    checks.check("the webmail's PHP logged no error", () => {
        const r = server.exec("journalctl --no-pager -o cat -t roundcube -t roundcube-fpm -p err");
        // The wrong password above is an IMAP error in Roundcube's log; nothing else may be.
        const errors = r.stdout.split("\n").filter(l => l && !/^-- No entries --$/.test(l) && !/IMAP Error: Login failed for alice@example\.test /.test(l));
        return errors.length ? errors.slice(0, 5).join("\n") : undefined;
    });
    const putBack = server.exec(`doveadm sieve put -a -u alice@example.test '${activeScript}' <<'EOF'\n${scriptBefore.trimEnd()}\nEOF`);
    checks.check("once proven, the filter goes again: alice's active script is as before (later checks count the peer's mail in her INBOX)", () =>
        putBack.code === 0 && scriptOf() === scriptBefore && scriptBefore.includes("require") ? undefined : `exit ${putBack.code}: ${putBack.stderr}\n${scriptOf()}`);
    fs.rmSync(KEPT_SCREENSHOTS, { recursive: true, force: true });
    fs.cpSync(shots, KEPT_SCREENSHOTS, { recursive: true, filter: f => !f.endsWith(".json") });
    console.log(`    screenshots kept in ${KEPT_SCREENSHOTS}`);
}
