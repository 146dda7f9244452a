/**
 * The secondary MX on the local target: the program with `secondaryMxLocation` set, a second machine
 * booted from its own user-data, its steps applied as the engine would; then the server's outage:
 * mail goes to the secondary, which filters as the server does and hands everything over once the
 * server is back. Last, the secondary is turned off again (records withdrawn, the server's steps back).
 */
import * as path from "path";
import { ProgramRun, unsecret } from "../program";
import { firstAddress } from "../../components/host";
import { NET } from "./world";
import { run, Result } from "./sh";
import { TestServer, ServerSpec } from "./server";
import { Checks } from "./checks";
import { Step, stepsThatChanged, changedServerInputs } from "./steps";
import { PEER_USER } from "./peer";
import { GTUBE } from "./mail";
import { npmRunCheck, EXPECTED_WARNINGS } from "./status";
import { idleMemoryMb } from "./bench";
import { SECONDARY_UNITS } from "../../components/secondary";
import * as hardening from "../../components/hardening";
import * as resolver from "../../components/resolver";

/** What "Hetzner" hands the secondary here: addresses on the same link (a slice of the one /64 the simulated internet has; .11 is the benchmark's baseline host). */
export const MX2 = { ipv4: "198.51.100.12", ipv6Network: "2001:db8:10:0:12::/80" };
const MX2_IPV6 = firstAddress(MX2.ipv6Network);
const DOMAIN = "example.test";
const MAILDIR = `/srv/mail/${DOMAIN}/alice/Maildir`;

export interface SecondaryContext {
    readonly checks: Checks;
    readonly server: TestServer;
    readonly peer: TestServer;
    /** The stack as it runs, and the same with the secondary on. */
    readonly program: ProgramRun;
    readonly withSecondary: ProgramRun;
    /** The server's spec: the secondary trusts what it trusts and resolves from the same root. */
    readonly serverSpec: ServerSpec;
    readonly work: string;
    readonly root: string;
    /** The owner's SSH key (npm run check logs in as the admin). */
    readonly ownerKey: string;
    /** The peer's DKIM key: it signs from here on. */
    readonly signAsPeer: () => void;
    readonly boot: (spec: ServerSpec) => Promise<TestServer>;
    /** Applies steps in order (publishing what a tls step printed); returns each step's output. */
    readonly apply: (steps: Step[], label: string) => Map<string, { ms: number; out: string }>;
    /** Runs a step's delete, as the engine does when its machine goes. */
    readonly remove: (step: Step) => Result;
    /** The record sets of a program through the provider (those that left it deleted), and a TLSA set's values. */
    readonly publish: (before: ProgramRun, after: ProgramRun) => string[];
    readonly publishTlsa: (run: ProgramRun, owner: string, values: string[]) => void;
}

export async function secondaryChecks(c: SecondaryContext): Promise<void> {
    const { checks, server, peer } = c;
    const client = (argv: string[]): Result => run(argv, { ns: NET.client.ns, timeoutMs: 90_000 });
    const until = async (seconds: number, probe: () => boolean): Promise<boolean> => {
        for (let i = 0; i < seconds; i++) {
            if (probe()) return true;
            await new Promise(r => setTimeout(r, 1000));
        }
        return probe();
    };
    const swaksTo = (ip: string, args: string[]) => client(["swaks", "--server", ip, "--port", "25", "--helo", "client.elsewhere.test", ...args]);

    const changed = stepsThatChanged(c.program, c.withSecondary);
    checks.check("turning the secondary on changes on the server exactly its mail and web steps, and replaces nothing", () => {
        const onServer = changed.filter(s => !s.name.startsWith("mx2-")).map(s => s.name).join(",");
        return onServer === "web,mail" && !changedServerInputs(c.program, c.withSecondary) ? undefined
            : `server steps: ${onServer}; server inputs changed: ${changedServerInputs(c.program, c.withSecondary)}`;
    });

    // The new records first (as the engine does: the tls steps wait for them), then the machine and its steps.
    c.publish(c.program, c.withSecondary);
    const userData: string = unsecret(c.withSecondary.all("hcloud:index/server:Server").find(s => s.inputs.name === `mx2.${DOMAIN}`)!.inputs.userData);
    const mx2 = await c.boot({ ...c.serverSpec, name: "mx2", dir: path.join(c.work, "mx2"), ipv4: MX2.ipv4, ipv6: MX2_IPV6, userData, volumeId: undefined });
    const applied = c.apply(changed, "secondary on");
    const printed = [...applied.get("mx2-tls")!.out.matchAll(/^tlsa (3 1 1 [0-9a-f]{64})$/gm)].map(m => m[1]);
    c.publishTlsa(c.withSecondary, "_25._tcp.mx2", printed);

    checks.check("the secondary's port 25 offers STARTTLS with a certificate for mx2.example.test, and its key is the published TLSA record", () => {
        const r = client(["sh", "-c", `openssl s_client -connect ${MX2.ipv4}:25 -starttls smtp -servername mx2.${DOMAIN} -verify_hostname mx2.${DOMAIN} ` +
            `-CAfile ${c.root} -verify_return_error </dev/null 2>&1`]);
        const cert = r.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/)?.[0] ?? "";
        const served = `3 1 1 ${run(["sh", "-c", "openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"], { input: cert }).stdout.split(" ")[0]}`;
        const published = client(["kdig", "+short", `@${NET.inet.ipv4}`, `_25._tcp.mx2.${DOMAIN}`, "TLSA"]).stdout
            .split("\n").filter(Boolean).map(l => { const [u, s, m, ...hex] = l.split(/\s+/); return `${u} ${s} ${m} ${hex.join("").toLowerCase()}`; });
        return /Verify return code: 0 \(ok\)/.test(r.stdout) && cert && published.includes(served) ? undefined : `served ${served}; published ${published}\n${r.stdout.slice(-400)}`;
    });
    checks.check("npm run check covers the secondary too: its port 25, relaying refused, SSH keys only, and its own report, all green", () => {
        const r = npmRunCheck(c, c.withSecondary.outputs);
        const ofMx2 = r.findings.filter(f => f.area.startsWith(`mx2.${DOMAIN}: `));
        const wrong = ofMx2.filter(f => f.status === "error" || (f.status === "warn" && !EXPECTED_WARNINGS.includes(f.name)));
        const names = ofMx2.map(f => f.name).join(", ");
        return ofMx2.length >= 15 && !wrong.length && /SMTP STARTTLS mx2\.example\.test:25/.test(names) && /waiting for mail\.example\.test/.test(names)
            ? undefined : `${ofMx2.length} findings of the secondary: ${wrong.map(f => `${f.status} ${f.area}/${f.name}: ${f.detail}`).join("; ") || names}\n${r.raw.slice(-600)}`;
    });
    checks.check("the secondary refuses an unknown recipient at RCPT (it never bounces to a forged sender)", () => {
        const r = swaksTo(MX2.ipv4, ["--from", "someone@peer.test", "--to", `nobody@${DOMAIN}`, "--quit-after", "RCPT"]);
        return r.code !== 0 && /550 5\.1\.1 .*User unknown in relay recipient table/.test(r.stdout) ? undefined : r.stdout.slice(-500);
    });
    checks.check("the secondary takes mail for an alias and the postmaster, and is no open relay", () => {
        const ok = ["info", "postmaster"].map(u => swaksTo(MX2.ipv4, ["--from", "someone@peer.test", "--to", `${u}@${DOMAIN}`, "--quit-after", "RCPT"]));
        const relay = swaksTo(MX2.ipv4, ["--from", "someone@peer.test", "--to", "victim@elsewhere.test", "--quit-after", "RCPT"]);
        return ok.every(r => r.code === 0) && relay.code !== 0 && /Relay access denied/.test(relay.stdout) ? undefined
            : `${ok.map(r => r.stdout.slice(-200)).join("\n")}\nrelay: ${relay.stdout.slice(-300)}`;
    });
    checks.check("a client on the DNS blocklist is refused at the secondary, as at the server", () => {
        const r = swaksTo(MX2.ipv4, ["--local-interface", NET.client.listed, "--from", "someone@peer.test", "--to", `alice@${DOMAIN}`, "--quit-after", "RCPT"]);
        return r.code !== 0 && /554 5\.7\.1 .*zen\.spamhaus\.org/.test(r.stdout) ? undefined : r.stdout.slice(-500);
    });
    checks.check("GTUBE gets the same answer from the secondary as from the server (rspamd with the server's settings)", () => {
        const answer = (ip: string) => {
            const r = swaksTo(ip, ["--from", `${PEER_USER}@peer.test`, "--to", `alice@${DOMAIN}`, "--header", `Subject: e2e gtube at ${ip}`, "--body", GTUBE]);
            // swaks marks the server's refusals with "<**": the one after the message's end is the last.
            return r.stdout.split("\n").filter(l => /^<\*\* +[0-9]{3} /.test(l)).pop()?.replace(/^<\*\* +/, "").slice(0, 9) ?? r.stdout.slice(-300);
        };
        const [atServer, atSecondary] = [answer(c.server.spec.ipv4), answer(MX2.ipv4)];
        return atServer === atSecondary && /^4|^5/.test(atServer) ? undefined : `server: ${atServer}; secondary: ${atSecondary}`;
    });

    const memory = idleMemoryMb(mx2, [...hardening.units, ...resolver.units, ...SECONDARY_UNITS]);
    console.log(`  the secondary's idle memory, every unit: ${memory.pss.toFixed(1)} MB PSS, ${memory.anon.toFixed(1)} MB anonymous`);

    console.log("  the server goes down; the peer sends 20 messages");
    c.signAsPeer();
    await server.pullPlug();
    const tag = `e2e via mx2 ${Date.now()}`;
    const subjects = Array.from({ length: 20 }, (_, i) => `${tag} #${i + 1}`);
    for (const subject of subjects) {
        peer.exec(`printf 'From: ${PEER_USER}@peer.test\\nTo: alice@${DOMAIN}\\nSubject: ${subject}\\nDate: %s\\nMessage-ID: <%s@peer.test>\\n\\n` +
            `Held for a while by the secondary MX, then delivered.\\n' "$(date -R)" "$(cat /proc/sys/kernel/random/uuid)" | sendmail -f ${PEER_USER}@peer.test alice@${DOMAIN}`);
    }
    const queued = () => mx2.exec(`postqueue -j | grep -c 'alice@${DOMAIN}'`).stdout.trim();
    const held = await until(180, () => queued() === "20");
    checks.check("with the server down, the secondary took all 20 messages from the peer and holds them", () =>
        held ? undefined : `the secondary holds ${queued()}; the peer's queue: ${peer.exec("postqueue -p | tail -8").stdout}`);
    // The first try says why (the relay transport, postfix/relay/smtp); later ones say "delivery temporarily suspended" (postfix/error).
    const deferrals = () => Number(mx2.exec(`journalctl -o cat --no-pager | grep -c 'status=deferred (\\(delivery temporarily suspended: \\)\\?connect to mail\\.${DOMAIN}'`).stdout.trim());
    const bounces = () => Number(mx2.exec("journalctl -o cat --no-pager | grep -c 'status=bounced'").stdout.trim());
    // A try gives up on each of the server's addresses only after its connect timeouts.
    await until(90, () => deferrals() >= 20);
    checks.check("the secondary holds them because the server is down, waiting to retry (not bounced, not delivered elsewhere)", () =>
        deferrals() >= 20 && bounces() === 0 ? undefined : `deferred ${deferrals()}, bounced ${bounces()}`);
    checks.check("the secondary's own report says how many messages wait for the server (a warning)", () => {
        const r = mx2.exec("/usr/local/sbin/selfhost-status | grep 'waiting for'");
        return /^warn\tmail\twaiting for mail\.example\.test\t20 message\(s\), the oldest since /.test(r.stdout) ? undefined : r.stdout + r.stderr;
    });

    console.log("  the server is back");
    await server.powerOn();
    // What the boot does once the volume is there (server.ts): the services that keep data, and the ETRN that waited for them.
    server.mountVolumeAsAtBoot(["postfix", "dovecot", "redis-server", "nginx", "prosody", "roundcube", "selfhost-etrn"]);
    const inbox = () => server.exec(`grep -rhs '^Subject: ${tag}' ${MAILDIR}/new ${MAILDIR}/cur | sort`).stdout.split("\n").filter(Boolean);
    const arrived = await until(240, () => inbox().length >= 20);
    checks.check("once the server is back, all 20 arrive in alice's INBOX, each exactly once", () => {
        const got = inbox().map(l => l.replace(/^Subject: /, ""));
        const missing = subjects.filter(s => !got.includes(s));
        return arrived && got.length === 20 && !missing.length ? undefined : `${got.length} arrived; missing: ${missing.join(", ")}`;
    });
    checks.check("the server asked for them at boot (ETRN), so they came without waiting for the secondary's next retry", () => {
        const r = server.exec("journalctl -b -u selfhost-etrn -o cat --no-pager");
        return /mx2\.example\.test sends what it holds: 250/.test(r.stdout) ? undefined : r.stdout.slice(-400);
    });
    checks.check("the secondary's queue is empty afterwards, and its report says so", () => {
        const left = mx2.exec("postqueue -j").stdout.trim();
        const report = mx2.exec("/usr/local/sbin/selfhost-status | grep 'waiting for'").stdout;
        return left === "" && /^ok\tmail\twaiting for mail\.example\.test\tno message/.test(report) ? undefined : `${left.slice(0, 400)}\n${report}`;
    });
    checks.check("the server judged them by the peer, not by the secondary: the peer's DKIM signature verifies and SPF passes for its address", () => {
        const file = server.exec(`grep -rls '^Subject: ${subjects[0]}$' ${MAILDIR}/new ${MAILDIR}/cur | head -1`).stdout.trim();
        const message = server.exec(`cat '${file}'`).stdout;
        const ours = message.match(/^Authentication-Results: mail\.example\.test;[^\n]*(\n[ \t][^\n]*)*/m)?.[0] ?? "";
        return /dkim=pass[^;]*header\.d=peer\.test/.test(ours) && /spf=pass/.test(ours) && /^DKIM-Signature: .*d=peer\.test/ms.test(message)
            ? undefined : `${ours || "no Authentication-Results of the server"}\n${message.split("\n\n")[0].slice(-1200)}`;
    });

    console.log("  the secondary goes (a new location, or turned off): its handover first");
    const mx2Base = changed.find(s => s.name === "mx2-base")!;
    const lastOne = `e2e held at the handover ${Date.now()}`;
    server.exec("systemctl stop postfix");
    peer.exec(`printf 'From: ${PEER_USER}@peer.test\\nSubject: ${lastOne}\\n\\nx\\n' | sendmail -f ${PEER_USER}@peer.test alice@${DOMAIN}`);
    const taken = await until(120, () => queued() === "1");
    const refused = c.remove(mx2Base);
    const smtpAtMx2 = () => swaksTo(MX2.ipv4, ["--quit-after", "CONNECT"]).code === 0;
    checks.check("while the server takes no mail, the secondary's handover refuses to let it go (the message it holds would be lost), and it takes mail again", () =>
        taken && refused.code !== 0 && /holds 1 message\(s\) that mail\.example\.test does not take now/.test(refused.stderr) && smtpAtMx2()
            ? undefined : `held by the secondary: ${taken}; handover: exit ${refused.code} ${refused.stderr.slice(-300)}; port 25 answers: ${smtpAtMx2()}`);
    server.exec("systemctl start postfix");
    const handedOver = c.remove(mx2Base);
    const delivered = await until(60, () => server.exec(`grep -rlqs '^Subject: ${lastOne}' ${MAILDIR}/new ${MAILDIR}/cur`).code === 0);
    checks.check("with the server back, the handover hands the message over and the secondary stops taking mail", () =>
        handedOver.code === 0 && delivered && mx2.exec("postqueue -j").stdout.trim() === "" && !smtpAtMx2()
            ? undefined : `handover: exit ${handedOver.code} ${handedOver.stderr.slice(-300)}; delivered: ${delivered}; port 25 answers: ${smtpAtMx2()}`);

    console.log("  the secondary is gone; mail goes on");
    await mx2.pullPlug();
    const direct = `e2e with the secondary down ${Date.now()}`;
    peer.exec(`printf 'From: ${PEER_USER}@peer.test\\nSubject: ${direct}\\n\\nx\\n' | sendmail -f ${PEER_USER}@peer.test alice@${DOMAIN}`);
    const straight = await until(60, () => server.exec(`grep -rlqs '^Subject: ${direct}' ${MAILDIR}/new ${MAILDIR}/cur`).code === 0);
    checks.check("with the secondary stopped, mail from the peer still arrives at the server directly", () => straight ? undefined :
        peer.exec("postqueue -p | tail -6").stdout);

    console.log("  the secondary turned off again");
    const back = stepsThatChanged(c.withSecondary, c.program);
    c.apply(back, "secondary off");
    const withdrawn = c.publish(c.withSecondary, c.program);
    checks.check("turning it off again re-runs the server's mail and web steps, withdraws its records, and stops the ETRN at boot", () => {
        const mx = client(["kdig", "+short", `@${NET.inet.ipv4}`, DOMAIN, "MX"]).stdout.trim();
        const etrn = server.exec("systemctl cat selfhost-etrn 2>&1").code;
        return back.map(s => s.name).join(",") === "web,mail" && mx === `10 mail.${DOMAIN}.` && withdrawn.includes("mx2 A") && etrn !== 0 ? undefined
            : `steps ${back.map(s => s.name)}; MX ${mx}; withdrawn ${withdrawn}; selfhost-etrn unit: ${etrn === 0 ? "still there" : "gone"}`;
    });
}
