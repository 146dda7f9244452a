/** Benchmark baselines for the local target (a bare install of the same packages, idle memory) and the inbound burst. */
import * as path from "path";
import { Cleanup } from "./sh";
import { TestServer } from "./server";

/** Units whose memory is reported, when they run. */
const UNITS = ["ssh", "nginx", "postfix", "postfix-mta-sts-resolver", "selfhost-mta-sts", "dovecot", "rspamd", "redis-server", "unbound", "prosody", "fail2ban",
    // The webmail's PHP: ours and the proxy that starts it, while used; Debian's own php-fpm unit, which we keep off, with its defaults.
    "roundcube", "selfhost-webmail", "php8.4-fpm",
    // STUN/TURN for calls (Debian's defaults: no authentication, which we never let it start with).
    "coturn",
    // The sender rewriting for forwarded mail; unattended-upgrades' shutdown guard (Python).
    "postsrsd", "unattended-upgrades"];

/** A fresh host from the same image, no cloud-init payload: how long does plain `apt-get install` take? */
export async function benchBaseline(dir: string, packages: string, trust: string[], cleanup: Cleanup):
    Promise<{ bootMs: number; installMs: number; server: TestServer }> {
    const server = new TestServer({ name: "baseline", dir, ipv4: "198.51.100.11", ipv6: "2001:db8:10::11", trust }, cleanup);
    const started = Date.now();
    await server.boot();
    const bootMs = Date.now() - started;
    const r = server.exec(`export DEBIAN_FRONTEND=noninteractive; apt-get -q update >/dev/null && apt-get -q install -y --no-install-recommends ${packages} >/dev/null`);
    if (r.code !== 0) throw new Error(`baseline install failed: ${r.stderr}`);
    return { bootMs, installMs: r.ms, server };
}

/** Seconds dpkg spent in a server's first apt-get install (apt's history: unpack, configure, triggers; the download is before it). */
export function firstDpkgSeconds(server: TestServer): number {
    const dates = server.exec("grep -m2 -E '^(Start|End)-Date: ' /var/log/apt/history.log").stdout.trim().split("\n")
        .map(l => Date.parse(l.replace(/^\S+ /, "").replace(/ +/, "T") + "Z"));
    return dates.length === 2 ? (dates[1] - dates[0]) / 1000 : NaN;
}

/**
 * Proportional set size (kB) of every process of a unit, and its anonymous part: what the kernel
 * cannot drop under pressure (file-backed pages, e.g. rspamd's mapped Hyperscan database, it can).
 */
function pssKb(server: TestServer, unit: string): { pss: number; anon: number } | undefined {
    const r = server.exec(`systemctl is-active --quiet ${unit} || exit 3; cg=$(systemctl show -p ControlGroup --value ${unit}); ` +
        `for p in $(cat /sys/fs/cgroup$cg/cgroup.procs); do awk '/^(Pss|Pss_Anon):/{print $1, $2}' /proc/$p/smaps_rollup 2>/dev/null; done`);
    if (r.code !== 0) return undefined;
    const sum = (key: string) => r.stdout.split("\n").filter(l => l.startsWith(`${key}: `)).reduce((n, l) => n + Number(l.split(" ")[1]), 0);
    return { pss: sum("Pss"), anon: sum("Pss_Anon") };
}

/**
 * At rest: what runs on demand has gone (services/on-demand.ts: each socket's proxy exits after a few idle
 * minutes and its daemon stops with it). The checks just before used them; their idle exit comes now.
 */
function atRest(server: TestServer): void {
    server.exec("for socket in $(systemctl list-units --no-legend --plain 'selfhost-*.socket' | cut -d' ' -f1); do " +
        "systemctl stop \"${socket%.socket}.service\" 2>/dev/null; done; sleep 1");
}

export function memoryTable(ours: TestServer, defaults: TestServer): void {
    atRest(ours);
    console.log("\nidle memory, PSS in MB (ours at rest: what runs on demand gone; its anonymous part; the same packages with Debian's defaults)");
    const row = (cells: string[]) => console.log(`| ${cells[0].padEnd(24)} | ${cells.slice(1).map(c => c.padStart(8)).join(" | ")} |`);
    const mb = (kb: number) => (kb / 1024).toFixed(1);
    row(["unit", "ours", "anon", "defaults"]);
    const total = { pss: 0, anon: 0, defaults: 0 };
    for (const unit of UNITS) {
        const [x, y] = [pssKb(ours, unit), pssKb(defaults, unit)];
        if (x === undefined && y === undefined) continue;
        total.pss += x?.pss ?? 0;
        total.anon += x?.anon ?? 0;
        total.defaults += y?.pss ?? 0;
        row([unit, mb(x?.pss ?? 0), mb(x?.anon ?? 0), mb(y?.pss ?? 0)]);
    }
    row(["total", mb(total.pss), mb(total.anon), mb(total.defaults)]);
}

/** The whole of these units' idle memory on a host, in MB: PSS and its anonymous part. */
export function idleMemoryMb(server: TestServer, units: readonly string[]): { pss: number; anon: number } {
    atRest(server);
    const found = units.map(u => pssKb(server, u) ?? { pss: 0, anon: 0 });
    return { pss: found.reduce((n, x) => n + x.pss, 0) / 1024, anon: found.reduce((n, x) => n + x.anon, 0) / 1024 };
}

/** The middle of sorted numbers at a fraction (0.5: the median). */
const percentile = (sorted: number[], at: number) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(at * sorted.length))] : NaN;

/**
 * Inbound throughput through the whole chain (Postfix → rspamd → Dovecot LMTP → maildir) against two
 * baselines from the same run: smtp-sink on the same server (the network and SMTP alone), and the same
 * burst with rspamd taken out of Postfix (Postfix → LMTP → maildir: the most the chain could do); all fed
 * by smtp-source from the peer. The chain's time runs until the last message is in the mailbox; `problems`
 * lists what Postfix deferred and what Dovecot logged as an error meanwhile (empty when the burst went
 * through cleanly); `scanMs` is rspamd's own time per message (its log), p50 and p95.
 */
export async function throughput(server: TestServer, peer: TestServer, serverIp: string, messages = 200): Promise<{
    chainPerSecond: number; sinkPerSecond: number; unfilteredPerSecond: number; delivered: number; problems: string; scanMs: { p50: number; p95: number };
}> {
    const source = (to: string, port: number, subject: string) =>
        `smtp-source -c -s 4 -m ${messages} -l 2048 -S '${subject}' -f carol@peer.test -t ${to} ${serverIp}:${port}`;
    // The sink's port is not a service port: open it for the measurement only.
    server.exec("nft insert rule inet selfhost input tcp dport 2526 accept comment bench");
    server.exec("(smtp-sink -u postfix 0.0.0.0:2526 256 >/dev/null 2>&1 &)");
    await new Promise(r => setTimeout(r, 500));
    const sink = peer.exec(source("sink@example.test", 2526, "e2e sink"));
    server.exec("pkill -f 'smtp-sink -u postfix'; nft -f /etc/nftables.conf");

    /** One burst into alice's mailbox: how many arrived, in how many seconds, and what went wrong on the way. */
    const burst = async (subject: string) => {
        const count = () => Number(server.exec(`grep -rl '${subject}' /srv/mail/example.test/alice/Maildir/new 2>/dev/null | wc -l`).stdout.trim());
        const before = count();
        const since = server.exec("date '+%F %T'").stdout.trim();
        const started = Date.now();
        const sent = peer.exec(source("alice@example.test", 25, subject));
        // A deferred message is retried only minutes later: waiting that long would hide it, so the wait is short.
        while (count() - before < messages && Date.now() - started < 60_000) await new Promise(r => setTimeout(r, 250));
        const delivered = count() - before;
        const seconds = (Date.now() - started) / 1000;
        const problems = server.exec(`journalctl --since '${since}' --no-pager -o cat -t postfix/lmtp | grep 'status=deferred' | head -3; ` +
            `journalctl --since '${since}' --no-pager -o cat -u dovecot -p err | head -3`).stdout.trim() +
            // Short of the count: where the rest is (refused at the door, queued, or still on its way).
            (delivered < messages ? [
                `smtp-source: ${(sent.stdout + sent.stderr).split("\n").filter(Boolean).slice(0, 4).join(" | ")}`,
                server.exec(`echo "in any folder: $(grep -rl '${subject}' /srv/mail/example.test/alice/Maildir | wc -l)"; ` +
                    `journalctl --since '${since}' --no-pager -o short | grep -e ' postfix/' -e ' rspamd' | grep -v -e ' connect from' -e ' disconnect from' | tail -10; ` +
                    // rspamd writes its own log file; its unit's journal shows a worker that died.
                    "tail -15 /var/log/rspamd/rspamd.log; journalctl -u rspamd --no-pager -o short -n 8; postqueue -p | tail -4").stdout.trim(),
            ].join("\n") : "");
        return { delivered, perSecond: delivered / seconds, problems };
    };

    const logLines = () => Number(server.exec("wc -l < /var/log/rspamd/rspamd.log").stdout.trim());
    const logStart = logLines();
    const chain = await burst("e2e throughput");
    // rspamd logs each message it scanned with its time ("time: 41.2ms").
    const scans = server.exec(`tail -n +${logStart + 1} /var/log/rspamd/rspamd.log | grep -o 'time: [0-9.]*ms' | grep -o '[0-9.]*'`).stdout
        .split("\n").filter(Boolean).map(Number).sort((a, b) => a - b);

    // The real limit: the same burst, rspamd out of Postfix's way for the measurement only.
    // main.cf comes back byte for byte (the mail step's own file: a later run must find it unchanged).
    server.exec("cp -p /etc/postfix/main.cf /run/main.cf.bench && postconf -e smtpd_milters= non_smtpd_milters= && postfix reload");
    const unfiltered = await burst("e2e unfiltered");
    server.exec("cp -p /run/main.cf.bench /etc/postfix/main.cf && rm /run/main.cf.bench && postfix reload");

    return {
        chainPerSecond: chain.perSecond, sinkPerSecond: messages / (sink.ms / 1000), unfilteredPerSecond: unfiltered.perSecond,
        delivered: chain.delivered, problems: [chain.problems, unfiltered.problems].filter(Boolean).join("\n"),
        scanMs: { p50: percentile(scans, 0.5), p95: percentile(scans, 0.95) },
    };
}
