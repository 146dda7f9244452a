/**
 * Mail checks on the local target, with real clients from outside: swaks (SMTP), Python's imaplib
 * (IMAP), sieve-connect (ManageSieve), and a peer mail server that verifies what we send.
 */
import * as fs from "fs";
import * as path from "path";
import * as crypto from "crypto";
import { sh, run, Result } from "./sh";
import { NET } from "./world";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { DANE_DOMAINS, PEER_USER } from "./peer";
import { LOCAL_PORTS } from "../../services/catalog";
import { LOOPBACK_CLIENTS } from "../../components/mail";

export interface MailContext {
    readonly checks: Checks;
    readonly server: TestServer;
    readonly peer: TestServer;
    /** CA file that verifies the server's certificates. */
    readonly root: string;
    readonly passwords: Record<string, string>;
    /** The stack's sendLimitPerHour. */
    readonly sendLimitPerHour: number;
    readonly work: string;
    readonly serverIp: string;
    readonly serverIpv6: string;
    /** Keyring with dave's OpenPGP private key. */
    readonly openpgpHome: string;
}

const DOMAIN = "example.test";
const HOST = `mail.${DOMAIN}`;
const IMAP = path.join(__dirname, "imap.py");
/** The spam test string every filter knows (rspamd scores it far above spam: gtube.map). */
export const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const BODY = "Dear friend, this message carries enough ordinary words for a filter to learn from: " +
    "gardens, rivers, mountains, bicycles, libraries, harbours, orchards, lanterns, meadows and violins.";

export async function mailChecks(c: MailContext): Promise<void> {
    const { checks, server, peer } = c;
    const client = (argv: string[], input = ""): Result => run(argv, { ns: NET.client.ns, input, timeoutMs: 60_000 });
    // Clients introduce themselves properly, so a refusal is for what they ask, not for a bad HELO.
    const HELO = "client.elsewhere.test";
    const login = (user: string) => `${user}@${DOMAIN}`;
    const swaks = (args: string[]) => client(["swaks", "--server", c.serverIp, "--tls-ca-path", c.root,
        "--tls-verify", "--tls-sni", HOST, "--tls-verify-target", HOST, "--timeout", "30", "--helo", HELO, ...args]);
    const submit = (user: string, from: string, to: string, subject: string, port: 587 | 465 = 587, extra: string[] = []) =>
        swaks(["--port", String(port), port === 587 ? "--tls" : "--tls-on-connect", "--auth", "PLAIN", "--auth-user", login(user),
            "--auth-password", c.passwords[user], "--from", from, "--to", to, "--header", `Subject: ${subject}`, "--body", BODY, ...extra]);
    const imap = (user: string, ...args: string[]) => client(["python3", IMAP, HOST, c.root, login(user), ...args], c.passwords[user]);
    const waitInMailbox = async (user: string, mailbox: string, subject: string, seconds = 30): Promise<boolean> => {
        for (let i = 0; i < seconds * 2; i++) {
            if (imap(user, "list", mailbox).stdout.includes(`Subject: ${subject}`)) return true;
            await new Promise(r => setTimeout(r, 500));
        }
        return false;
    };
    /** The message with this subject in the peer user's mailbox, once it has arrived ("" if it never does). */
    const atPeer = async (subject: string): Promise<string> => {
        for (let i = 0; i < 60; i++) {
            const mbox = peer.exec(`cat /var/mail/${PEER_USER} 2>/dev/null`).stdout;
            const message = mbox.split(/^(?=From )/m).find(m => m.includes(`Subject: ${subject}`));
            if (message) return message;
            await new Promise(r => setTimeout(r, 500));
        }
        return "";
    };
    const ok = (r: Result) => r.code === 0 ? undefined : `exit ${r.code}\n${(r.stdout + r.stderr).split("\n").slice(-12).join("\n")}`;
    const since = server.exec("date '+%F %T'").stdout.trim();

    checks.check("postfix check, postconf and doveconf -n and rspamadm configtest are clean", () => {
        const r = server.exec("postfix check 2>&1 && ! postconf -n 2>&1 >/dev/null | grep . && doveconf -n >/dev/null && rspamadm configtest");
        return ok(r);
    });
    checks.check("every mailbox exists with its special-use flag", () => {
        const out = imap("alice", "mailboxes");
        const missing = ["Drafts", "Sent", "Junk", "Trash", "Archive"].filter(m => !new RegExp(`\\\\${m}\\b.*\\b${m}$`, "m").test(out.stdout));
        return missing.length ? `missing: ${missing.join(", ")}\n${out.stdout}${out.stderr}` : undefined;
    });

    // Submission, both ports, to a user, an alias and a +tag address; then read over IMAPS.
    const sent: [string, string, string, 587 | 465][] = [
        ["alice", "bob@example.test", "e2e 587 to bob", 587],
        ["bob", "info@example.test", "e2e 465 to alias info", 465],
        ["alice", "bob+news@example.test", "e2e to bob plus tag", 587],
    ];
    for (const [user, to, subject, port] of sent) {
        checks.check(`submission on ${port} as ${user} to ${to} is accepted`, () => ok(submit(user, login(user), to, subject, port)));
    }
    for (const [owner, subject] of [["bob", "e2e 587 to bob"], ["alice", "e2e 465 to alias info"], ["bob", "e2e to bob plus tag"]]) {
        const arrived = await waitInMailbox(owner, "INBOX", subject);
        checks.check(`"${subject}" is in ${owner}'s INBOX, read over IMAPS`, () => arrived ? undefined : imap(owner, "list", "INBOX").stdout);
    }
    checks.check("submitted mail does not carry the sender's IP address", () => {
        const headers = imap("bob", "show", "INBOX", "e2e 587 to bob").stdout;
        return headers.includes(NET.client.ipv4) ? `client IP in headers:\n${headers}` : undefined;
    });

    // bob forwards a copy to the peer: mail from a foreign sender needs SRS to keep passing SPF there.
    peer.exec(`printf 'Subject: e2e forwarded\\n\\n${BODY}\\n' | sendmail -f ${PEER_USER}@peer.test bob@${DOMAIN}`);

    // GTUBE goes first (it may be greylisted for a minute; the peer retries) and is checked at the end.
    peer.exec(`printf 'Subject: e2e gtube\\n\\n${GTUBE}\\n' | sendmail -f ${PEER_USER}@peer.test bob@${DOMAIN}`);

    // Peer → us, and us → peer (verified by the peer's rspamd).
    peer.exec(`printf 'Subject: e2e from the peer\\n\\n${BODY}\\n' | sendmail -f ${PEER_USER}@peer.test alice@${DOMAIN}`);
    const fromPeer = await waitInMailbox("alice", "INBOX", "e2e from the peer", 60);
    checks.check("mail from the peer's server arrives in alice's INBOX", () => fromPeer ? undefined :
        server.exec("journalctl -u postfix --since -3min --no-pager | tail -15").stdout);
    // The peer uses DANE: our MX's TLSA record (published from the tls step's output) must name the key port 25 serves.
    checks.check("the peer verified our port 25 by its TLSA record (DANE-EE) before it handed over the mail", () => {
        const log = peer.exec(`journalctl -t postfix/smtp --no-pager -o cat | grep 'TLS connection established to ${HOST}'`).stdout;
        return fromPeer && /^Verified TLS connection established to mail\.example\.test\[/m.test(log) ? undefined : log.slice(-600) || "no TLS connection to us logged at the peer";
    });
    checks.check("submission to the peer is accepted", () => ok(submit("alice", login("alice"), `${PEER_USER}@peer.test`, "e2e to the peer")));
    const received = await atPeer("e2e to the peer");
    const results = received.match(/^Authentication-Results:[^\n]*(\n\s+[^\n]*)*/m)?.[0] ?? "";
    for (const method of ["spf", "dkim", "dmarc"]) {
        checks.check(`the peer's verifier reports ${method}=pass`, () =>
            new RegExp(`\\b${method}=pass\\b`).test(results) ? undefined : `Authentication-Results: ${results || "(none)"}\n${received.slice(0, 1500)}`);
    }
    checks.check("the peer saw our forward-confirmed hostname", () =>
        new RegExp(`from ${HOST} \\(${HOST} \\[(${c.serverIp}|IPv6:${c.serverIpv6})\\]\\)`).test(received) ? undefined :
            received.split("\n").filter(l => /^Received|^\s/.test(l)).slice(0, 6).join("\n"));

    // MTA-STS: peer.test publishes an enforce policy, so our mail to it must go over TLS verified for
    // peer.test, and must wait, not go, when the certificate there does not verify.
    const policy = () => server.exec(`postmap -q ${NET.peer.domain} socketmap:inet:127.0.0.1:${LOCAL_PORTS.mtaSts}:postfix`);
    checks.check("the MTA-STS resolver hands Postfix the peer's enforce policy", () => {
        const r = policy();
        return /^secure match=peer\.test\b/.test(r.stdout) ? undefined : `exit ${r.code}: ${r.stdout}${r.stderr}`;
    });
    checks.check("the resolver runs only while lookups come: when their proxy exits idle it stops, and the next lookup starts it with the same answer", () => {
        const running = () => server.exec("systemctl is-active postfix-mta-sts-resolver").stdout.trim();
        const before = running();
        const idleExit = server.exec("systemctl show -P ExecStart selfhost-mta-sts.service").stdout.match(/--exit-idle-time=\S+/)?.[0];
        server.exec("systemctl stop selfhost-mta-sts.service");
        const stopped = running();
        const again = policy().stdout;
        return before === "active" && idleExit && stopped !== "active" && running() === "active" && /^secure match=peer\.test\b/.test(again)
            ? undefined : `before ${before}, ${idleExit ?? "no idle exit"}, after the proxy's exit ${stopped}, then ${running()}: ${again}`;
    });
    checks.check("mail to the peer went over TLS verified for peer.test", () => {
        const log = server.exec("journalctl -t postfix/smtp --no-pager -o cat | grep 'TLS connection established to peer.test'").stdout;
        return /^Verified TLS connection established to peer\.test\[/m.test(log) ? undefined : log.slice(-600) || "no TLS connection to the peer logged";
    });
    const mitm = "e2e past a stranger's certificate";
    const useCert = (name: string) => peer.exec(`postconf -e smtpd_tls_chain_files=/etc/ssl/${name}.key,/etc/ssl/${name}.pem && postfix reload`);
    peer.exec("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=peer.test " +
        "-addext subjectAltName=DNS:peer.test -keyout /etc/ssl/stranger.key -out /etc/ssl/stranger.pem 2>/dev/null");
    useCert("stranger");
    submit("alice", login("alice"), `${PEER_USER}@peer.test`, mitm);
    let reason = "";
    for (let i = 0; i < 60 && !/certificate/i.test(reason); i++) {
        await new Promise(r => setTimeout(r, 500));
        reason = server.exec("postqueue -j").stdout;
    }
    checks.check("a certificate at the peer that does not verify: the message waits in our queue, the peer gets nothing", () =>
        /Server certificate not verified/.test(reason) && !peer.exec(`grep -c '${mitm}' /var/mail/${PEER_USER}`).stdout.trim().match(/^[1-9]/)
            ? undefined : reason || "not in the queue");
    useCert("peer");
    server.exec("postqueue -f");
    const through = await atPeer(mitm);
    checks.check("once it verifies again, the message goes through", () => through ? undefined : server.exec("postqueue -p").stdout);

    // DANE: a domain whose MX has a TLSA record (in a signed zone) gets TLS verified against that key;
    // one whose TLSA names another key gets nothing: the message waits, as with a failing MTA-STS.
    checks.check("mail to a DANE domain goes over TLS verified by its TLSA record (DANE-EE)", () => ok(
        submit("alice", login("alice"), `${PEER_USER}@${DANE_DOMAINS.good}`, "e2e over DANE")));
    const overDane = await atPeer("e2e over DANE");
    checks.check("… and arrives, the connection logged as verified", () => {
        const log = server.exec(`journalctl -t postfix/smtp --no-pager -o cat | grep 'TLS connection established to mx.${DANE_DOMAINS.good}'`).stdout;
        return overDane && /^Verified TLS connection established to mx\.dane\.test\[/m.test(log) ? undefined : log.slice(-600) || "no TLS connection logged";
    });
    submit("alice", login("alice"), `${PEER_USER}@${DANE_DOMAINS.bad}`, "e2e past a wrong TLSA");
    let daneReason = "";
    for (let i = 0; i < 60 && !/certificate/i.test(daneReason); i++) {
        await new Promise(r => setTimeout(r, 500));
        daneReason = server.exec(`postqueue -j | grep '${DANE_DOMAINS.bad}'`).stdout;
    }
    checks.check("a TLSA record that does not match the server's key: the message waits in our queue, the peer gets nothing", () =>
        /Server certificate not verified/.test(daneReason) && !peer.exec(`grep -c 'e2e past a wrong TLSA' /var/mail/${PEER_USER}`).stdout.trim().match(/^[1-9]/)
            ? undefined : daneReason || "not in the queue");
    // It would wait for days: out of the queue, so later checks see only their own mail there.
    server.exec(`postqueue -j | grep '${DANE_DOMAINS.bad}' | grep -o '"queue_id": *"[^"]*"' | cut -d'"' -f4 | postsuper -d - >/dev/null`);

    const copy = await atPeer("e2e forwarded");
    checks.check("bob's forward reaches the peer with an SRS envelope sender, and SPF passes there", () =>
        /^Return-Path: <SRS0=[^>]*@example\.test>/m.test(copy) && /\bspf=pass\b/.test(copy) ? undefined : copy.slice(0, 1200) || "no forwarded copy");
    checks.check("bob keeps his own copy", () => imap("bob", "list", "INBOX").stdout.includes("Subject: e2e forwarded") ? undefined : "not in bob's INBOX");
    checks.check("mail that is delivered here keeps its own envelope sender: SRS is for forwarded copies only", () => {
        const headers = imap("alice", "show", "INBOX", "e2e from the peer").stdout;
        return new RegExp(`^Return-Path: <${PEER_USER}@peer\\.test>`, "m").test(headers) ? undefined : headers.slice(0, 600);
    });

    // Spam: moving mail in and out of Junk teaches Bayes.
    const learned = (kind: "spam" | "ham") => {
        const out = server.exec(`rspamc --connect 127.0.0.1:${LOCAL_PORTS.rspamdController} stat`).stdout;
        const m = out.match(new RegExp(`BAYES_${kind.toUpperCase()} .*?learned: (\\d+)`));
        return m ? Number(m[1]) : -1;
    };
    const teaches = async (kind: "spam" | "ham", from: string, to: string) => {
        const before = learned(kind);
        const moved = imap("alice", "move", from, to, "e2e from the peer");
        for (let i = 0; i < 60 && learned(kind) <= before; i++) await new Promise(r => setTimeout(r, 1000));
        const after = learned(kind);
        return after > before ? undefined : `${kind} learned ${before} → ${after}; ${moved.stdout}${moved.stderr}`;
    };
    const spam = await teaches("spam", "INBOX", "Junk");
    checks.check("moving a message into Junk teaches rspamd spam", () => spam);
    const ham = await teaches("ham", "Junk", "INBOX");
    checks.check("moving it out of Junk teaches rspamd ham", () => ham);

    // ManageSieve: a user's script takes effect on delivery.
    const script = path.join(c.work, "filter.sieve");
    fs.writeFileSync(script, 'require ["fileinto", "mailbox"];\nif header :contains "Subject" "e2e sieve" { fileinto :create "Filtered"; stop; }\n');
    const manageSieve = (...action: string[]) => client(["sieve-connect", "--server", HOST, "--port", "4190", "--user", login("alice"),
        "--passwordfd", "0", "--tlscafile", c.root, "--remotesieve", "e2e", ...action], c.passwords.alice);
    const upload = manageSieve("--upload", "--localsieve", script);
    const activate = manageSieve("--activate");
    checks.check("a Sieve script uploads and activates over ManageSieve", () => ok(upload) ?? ok(activate));
    submit("bob", login("bob"), login("alice"), "e2e sieve test");
    const filtered = await waitInMailbox("alice", "Filtered", "e2e sieve test");
    checks.check("the uploaded Sieve script files matching mail", () => filtered ? undefined : imap("alice", "list", "INBOX").stdout);

    // What must be refused.
    checks.check("TLS: no anonymous or NULL cipher on 25, 465 or 587, nothing below TLS 1.2 on 465 and 587; a modern handshake works on each", () => {
        const handshake = (port: number, ...args: string[]) => client(["openssl", "s_client", "-connect", `${c.serverIp}:${port}`, "-servername", HOST,
            ...(port === 465 ? [] : ["-starttls", "smtp"]), ...args], "Q\n").code === 0;
        const problems = [25, 465, 587].flatMap(port => [
            ...(handshake(port) ? [] : [`${port}: a modern handshake fails`]),
            ...(handshake(port, "-tls1_2", "-cipher", "aNULL:eNULL:@SECLEVEL=0") ? [`${port}: anonymous or NULL cipher accepted`] : []),
            ...(port !== 25 && handshake(port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0") ? [`${port}: TLS 1.1 accepted`] : []),
        ]);
        return problems.join("; ") || undefined;
    });
    checks.check("spam from an authenticated user is refused at submission, saying so (one stolen password cannot burn the IP)", () => {
        const r = swaks(["--port", "587", "--tls", "--auth", "PLAIN", "--auth-user", login("alice"), "--auth-password", c.passwords.alice,
            "--from", login("alice"), "--to", `${PEER_USER}@peer.test`, "--header", "Subject: e2e outbound spam", "--body", GTUBE]);
        return r.code !== 0 && /5\.7\.1 Spam message rejected/.test(r.stdout) ? undefined : `exit ${r.code}\n${r.stdout.slice(-500)}`;
    });
    checks.check("AUTH is not offered before STARTTLS on 587, nor at all on 25", () => {
        const plain = client(["swaks", "--server", c.serverIp, "--port", "587", "--quit-after", "EHLO"]);
        const mx = client(["swaks", "--server", c.serverIp, "--port", "25", "--tls", "--tls-ca-path", c.root, "--quit-after", "AUTH", "--tls-sni", HOST]);
        const problems = [];
        if (/250[- ]AUTH/.test(plain.stdout)) problems.push("587 offers AUTH in clear");
        if (/250[- ]AUTH/.test(mx.stdout)) problems.push("25 offers AUTH");
        return problems.join("; ") || undefined;
    });
    checks.check("an authenticated user cannot send as somebody else", () => {
        const r = submit("alice", login("bob"), `${PEER_USER}@peer.test`, "e2e forged");
        return r.code !== 0 && /not owned by user/.test(r.stdout) ? undefined : `exit ${r.code}\n${r.stdout.slice(-600)}`;
    });
    checks.check("nobody outside may send as our domain on port 25", () => {
        const r = swaks(["--port", "25", "--from", login("alice"), "--to", login("bob"), "--quit-after", "RCPT"]);
        return r.code !== 0 && /authenticated/.test(r.stdout) ? undefined : r.stdout.slice(-500);
    });
    checks.check("a client on the DNS blocklist is refused", () => {
        const r = swaks(["--port", "25", "--local-interface", NET.client.listed, "--from", "someone@peer.test", "--to", login("bob"), "--quit-after", "RCPT"]);
        return r.code !== 0 && /zen\.spamhaus\.org/.test(r.stdout) ? undefined : r.stdout.slice(-500);
    });
    const relays: [string, string, string[]][] = [
        ["plain relay", "x@peer.test", ["victim@elsewhere.test"]],
        ["relay with our own domain as sender", login("alice"), ["victim@elsewhere.test"]],
        ["null sender relay", "<>", ["victim@elsewhere.test"]],
        ["%-hack", "x@peer.test", [`victim%elsewhere.test@${DOMAIN}`]],
        ["%-hack via the hostname", "x@peer.test", [`victim%elsewhere.test@${HOST}`]],
        ["!-path", "x@peer.test", [`elsewhere.test!victim@${DOMAIN}`]],
        ["bare !-path", "x@peer.test", ["elsewhere.test!victim"]],
        ["source route", "x@peer.test", [`@${DOMAIN}:victim@elsewhere.test`]],
        ["source route via the hostname", "x@peer.test", [`@${HOST}:victim@elsewhere.test`]],
        ["quoted local part", "x@peer.test", [`"victim@elsewhere.test"@${DOMAIN}`]],
        ["quoted %-hack", "x@peer.test", [`"victim%elsewhere.test"@${DOMAIN}`]],
        ["double @", "x@peer.test", [`victim@elsewhere.test@${DOMAIN}`]],
        ["IP literal", "x@peer.test", [`victim@[${NET.peer.ipv4}]`]],
        ["upper-case foreign domain", "x@peer.test", ["victim@ELSEWHERE.TEST"]],
        ["trailing dot", "x@peer.test", ["victim@elsewhere.test."]],
        ["a subdomain of ours", "x@peer.test", [`victim@sub.${DOMAIN}`]],
        ["localhost", "x@peer.test", ["victim@localhost"]],
        ["HELO as our own hostname", "x@peer.test", ["victim@elsewhere.test", "--helo", HOST]],
    ];
    for (const [what, from, [to, ...extra]] of relays) {
        checks.check(`open relay attempt refused: ${what}`, () => {
            const r = client(["swaks", "--server", c.serverIp, "--port", "25", "--helo", HELO, "--from", from, "--to", to,
                "--quit-after", "RCPT", ...extra]);
            const refused = r.code !== 0 && /<\*\* +[45]\d\d/.test(r.stdout) && !/Helo command rejected/.test(r.stdout);
            return refused ? undefined : `exit ${r.code}\n${r.stdout.slice(-400)}`;
        });
    }
    checks.check("at the hostname only postmaster, abuse and root take mail: a system account is refused", () => {
        const rcpt = (to: string) => client(["swaks", "--server", c.serverIp, "--port", "25", "--helo", HELO, "--from", "someone@peer.test",
            "--to", to, "--quit-after", "RCPT"]);
        const [system, postmaster, abuse] = [rcpt(`www-data@${HOST}`), rcpt(`postmaster@${HOST}`), rcpt(`abuse@${HOST}`)];
        return system.code !== 0 && /<\*\* +550/.test(system.stdout) && postmaster.code === 0 && abuse.code === 0 ? undefined
            : `www-data: exit ${system.code}, postmaster: exit ${postmaster.code}, abuse: exit ${abuse.code}\n${system.stdout.slice(-300)}`;
    });
    checks.check("a local program (not root, vmail or the admin) can neither use sendmail nor reach port 25, rspamd or redis over loopback: nothing local gets a signature", () => {
        const submit = server.exec(`printf 'From: alice@${DOMAIN}\\nSubject: forged\\n\\nx\\n' | runuser -u nobody -- /usr/sbin/sendmail -f alice@${DOMAIN} ${PEER_USER}@peer.test`);
        const ports = LOOPBACK_CLIENTS.map(l => l.port);
        const reach = (user: string) => server.exec(`for p in ${ports.join(" ")}; do runuser -u ${user} -- timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null && echo $p; done`).stdout.trim();
        const [byNobody, byRoot] = [reach("nobody"), reach("root")];
        return submit.code !== 0 && /not allowed to submit/.test(submit.stderr) && byNobody === "" && byRoot === ports.join("\n") ? undefined
            : `sendmail as nobody: exit ${submit.code} ${submit.stderr.trim()}; reachable by nobody: [${byNobody}]; by root: [${byRoot}]`;
    });
    {
        // dave sends nothing else in this run: his bucket is full. The limit comes from the stack's config.
        const limit = c.sendLimitPerHour;
        const replies = Array.from({ length: limit + 2 }, (_, i) => submit("dave", login("dave"), login("dave"), `e2e rate ${i + 1}`));
        const firstRefused = replies.findIndex(r => r.code !== 0);
        checks.check(`a user's (${limit} + 1)th message within the hour is held back with a temporary refusal; the first ${limit} go`, () => {
            const refusal = replies[firstRefused]?.stdout ?? "";
            return firstRefused >= limit && firstRefused <= limit + 1 && /<~\*? +4\d\d .*[Rr]atelimit/.test(refusal) ? undefined
                : `first refusal at message ${firstRefused + 1}: ${refusal.split("\n").filter(l => /<~/.test(l)).slice(-2).join(" | ")}`;
        });
    }
    {
        // erin's mailbox holds 1 MB (quotaMb in the stack's config). Attachments of random bytes (a third more once encoded)
        // take it to ~88%, then ~97%, then past 100% (the message that crosses the limit is let in: Dovecot's grace).
        const attach = (kb: number) => {
            const file = path.join(c.work, `quota-${kb}.bin`);
            fs.writeFileSync(file, crypto.randomBytes(kb * 1024));
            return ["--attach-type", "application/octet-stream", "--attach", `@${file}`];
        };
        const warning = (percent: number) => `Your mailbox is ${percent}% full`;
        const first = submit("alice", login("alice"), login("erin"), "e2e quota 1", 587, attach(660));
        const warned80 = await waitInMailbox("erin", "INBOX", warning(80));
        checks.check("a mailbox past 80% of its quota: its user gets a warning mail", () =>
            ok(first) ?? (warned80 ? undefined : imap("erin", "list", "INBOX").stdout));
        const second = submit("alice", login("alice"), login("erin"), "e2e quota 2", 587, attach(64));
        const warned95 = await waitInMailbox("erin", "INBOX", warning(95));
        const adminCopy = await waitInMailbox("alice", "INBOX", warning(95));
        checks.check("past 95%: the user is warned again and the admin gets a copy", () =>
            ok(second) ?? (warned95 && adminCopy ? undefined : `erin: ${warned95}, alice (admin): ${adminCopy}`));
        const third = submit("alice", login("alice"), login("erin"), "e2e quota 3", 587, attach(150));
        checks.check("the message that crosses the limit is still delivered (grace), and the mail client sees usage and the 1 MB limit (IMAP QUOTA)", () => {
            if (ok(third)) return ok(third);
            const line = imap("erin", "quota").stdout;
            const [, used, limit] = line.match(/STORAGE (\d+) (\d+)/) ?? [];
            return Number(limit) === 1024 && Number(used) > 1024 ? undefined : line || "no quota line";
        });
        const rcpt = (port: 25 | 587) => port === 25
            ? client(["swaks", "--server", c.serverIp, "--port", "25", "--helo", HELO, "--from", "someone@peer.test", "--to", login("erin"), "--quit-after", "RCPT"])
            : submit("alice", login("alice"), login("erin"), "e2e quota 4", 587, ["--quit-after", "RCPT"]);
        for (const port of [25, 587] as const) {
            checks.check(`a full mailbox refuses new mail at RCPT on ${port} with 552 5.2.2 (${port === 25 ? "the sending server bounces it" : "the sender is told at once"})`, () => {
                const r = rcpt(port);
                // swaks marks an error reply <** in clear, <~* inside TLS.
                return r.code !== 0 && /<(\*\*|~\*) +552 5\.2\.2/.test(r.stdout) ? undefined : `exit ${r.code}\n${r.stdout.slice(-300)}`;
            });
        }
        checks.check("nothing for the full mailbox waits in our queue, and others still receive", () => {
            const queued = server.exec("postqueue -j").stdout;
            const toAlice = submit("bob", login("bob"), login("alice"), "e2e quota others");
            return !queued.includes(login("erin")) && toAlice.code === 0 ? undefined : `queue: ${queued.slice(0, 300)}; to alice: exit ${toAlice.code}`;
        });
    }
    checks.check("open relay attempt refused: unauthenticated on the submission port", () => {
        const r = swaks(["--port", "587", "--tls", "--from", "x@peer.test", "--to", "victim@elsewhere.test", "--quit-after", "RCPT"]);
        return r.code !== 0 ? undefined : r.stdout.slice(-400);
    });
    peer.exec("postqueue -f");
    const junked = await waitInMailbox("bob", "Junk", "e2e gtube", 90);
    // A forward would have left at delivery, with the Junk copy; give it the time a delivery takes.
    await new Promise(r => setTimeout(r, 10_000));
    checks.check("spam is never forwarded: bob's forward address did not get the GTUBE message", () =>
        junked && !peer.exec(`cat /var/mail/${PEER_USER} 2>/dev/null`).stdout.includes("Subject: e2e gtube") ? undefined : `in bob's Junk: ${junked}`);
    checks.check("GTUBE from the peer is filed into bob's Junk (not rejected, not in INBOX)", () =>
        junked && !imap("bob", "list", "INBOX").stdout.includes("e2e gtube") ? undefined :
            server.exec("journalctl -u postfix --since -5min --no-pager | grep -i carol | tail -5").stdout || "not in Junk");
    await openpgpChecks(c, submit, imap, waitInMailbox);
    // Everything above is ordinary use (refusals included): none of it may leave an error in Dovecot's log.
    checks.check("Dovecot logged no errors through all of the above", () =>
        server.exec(`journalctl --since '${since}' --no-pager -o cat -u dovecot -p err | head -5`).stdout.trim() || undefined);

    checks.check("no plaintext IMAP on 143", () => sh(`nc -z -w 3 ${c.serverIp} 143`, { ns: NET.client.ns }).code !== 0 ? undefined : "143 is open");
}

/** dave has an OpenPGP key: his mail rests encrypted (PGP/MIME), he decrypts it, and encrypted mail is left alone. */
async function openpgpChecks(c: MailContext, submit: (user: string, from: string, to: string, subject: string) => Result,
    imap: (user: string, ...args: string[]) => Result, waitInMailbox: (user: string, mailbox: string, subject: string) => Promise<boolean>): Promise<void> {
    const { checks, server } = c;
    const marker = "orchards-and-lanterns-7f3a";
    const plain = "e2e encrypt me";
    submit("alice", `alice@${DOMAIN}`, `dave@${DOMAIN}`, plain);
    const arrived = await waitInMailbox("dave", "INBOX", plain);
    const raw = imap("dave", "raw", "INBOX", plain).stdout;
    checks.check("mail to a user with an OpenPGP key is stored as PGP/MIME, subject still readable", () =>
        arrived && /^Content-Type: multipart\/encrypted; protocol="application\/pgp-encrypted"/m.test(raw) && !raw.includes("gardens, rivers")
            ? undefined : raw.slice(0, 600) || "not delivered");
    checks.check("the owner's private key decrypts it to the original body", () => {
        const armored = raw.match(/-----BEGIN PGP MESSAGE-----[\s\S]*?-----END PGP MESSAGE-----/)?.[0] ?? "";
        const r = run(["gpg", "--batch", "--homedir", c.openpgpHome, "--decrypt"], { input: armored });
        return r.code === 0 && r.stdout.includes("gardens, rivers") && /^Content-Type: text\/plain/m.test(r.stdout) ? undefined : r.stderr;
    });
    checks.check("no plaintext of it on the data volume", () => {
        const r = server.exec(`grep -rl 'gardens, rivers' /srv/mail/${DOMAIN}/dave || true`);
        return r.stdout.trim() === "" ? undefined : r.stdout;
    });
    const already = "e2e already encrypted";
    c.peer.exec(`printf 'Subject: ${already}\\n\\n-----BEGIN PGP MESSAGE-----\\n\\nhQEMA${marker}\\n-----END PGP MESSAGE-----\\n' | ` +
        `sendmail -f ${PEER_USER}@peer.test dave@${DOMAIN}`);
    const kept = await waitInMailbox("dave", "INBOX", already);
    checks.check("a message that is already encrypted is stored as it came", () => {
        const r = imap("dave", "raw", "INBOX", already).stdout;
        return kept && r.includes(marker) && !/multipart\/encrypted/.test(r) ? undefined : r.slice(0, 600) || "not delivered";
    });
}
