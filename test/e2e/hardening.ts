/**
 * Hardening checks on the local target: a port scan (nmap) over IPv4 and IPv6, SSH's algorithms as
 * offered on the wire, the admin allowlist, the daemons' checkers, and — once SSH is open to anyone —
 * attacks on SSH, SMTP AUTH and IMAP that fail2ban must ban within seconds and lift after banTime.
 */
import { sh, Result } from "./sh";
import { NET } from "./world";
import { formLogin } from "./webmail";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { publicPorts } from "../../services/catalog";
import { SSH_OPTIONS } from "./client";

export interface HardeningContext {
    readonly checks: Checks;
    readonly server: TestServer;
    readonly serverIp: string;
    readonly serverIpv6: string;
    readonly sshPort: number;
    /** CA file that verifies the server's certificates. */
    readonly root: string;
    readonly passwords: Record<string, string>;
    /** The jails the program declares. */
    readonly jails: readonly string[];
}

const fromClient = (cmd: string, timeoutMs = 120_000): Result => sh(cmd, { ns: NET.client.ns, timeoutMs });
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
/** The jail list of `fail2ban-client status`, as it prints it (sorted). */
export const runningJails = (status: string) => /Jail list:\s*(.*)$/m.exec(status)?.[1].trim() ?? "";

/** Ports nmap does not see as filtered (open or closed: the firewall let the probe through). */
function unfiltered(target: string, extra = ""): number[] {
    const r = fromClient(`nmap ${target.includes(":") ? "-6" : ""} -Pn -n -sS -p- --min-rate 5000 -T4 ${extra} ${target} -oG -`);
    const ports = r.stdout.match(/Ports: (.*?)(\t|$)/m)?.[1] ?? "";
    return [...ports.matchAll(/(\d+)\/(open|closed)\/tcp/g)].map(m => Number(m[1])).sort((a, b) => a - b);
}

const reachable = (from: string, to: string, port: number) => fromClient(`nc -s ${from} -z -w 3 ${to} ${port}`).code === 0;

export function hardeningChecks(c: HardeningContext): void {
    const { checks, server } = c;
    const listed = publicPorts(c.sshPort).map(p => p.port).sort((a, b) => a - b);
    for (const target of [c.serverIp, c.serverIpv6]) {
        checks.check(`a full port scan of ${target} finds only the listed ports reachable`, () => {
            const seen = unfiltered(target);
            return seen.length && seen.every(p => listed.includes(p)) ? undefined : `reachable: ${seen.join(", ")}; listed: ${listed.join(", ")}`;
        });
    }
    checks.check("SSH is filtered for an address outside adminSources, and open to the admin's", () =>
        !reachable(NET.client.listed, c.serverIp, c.sshPort) && reachable(NET.client.ipv4, c.serverIp, c.sshPort) ? undefined : "allowlist not applied");
    checks.check("SSH offers only modern algorithms (no SHA-1, CBC, small DH groups, ssh-rsa)", () => {
        const r = fromClient(`nmap -Pn -n -p ${c.sshPort} --script ssh2-enum-algos ${c.serverIp}`);
        const algos = [...r.stdout.matchAll(/^\|\s{5,}(\S+)$/gm)].map(m => m[1]);
        const weak = algos.filter(a => /sha1|cbc|group1-|group14|group-exchange|md5|3des|arcfour|^ssh-rsa$|^ssh-dss$|hmac-sha2-256$|umac-64/.test(a));
        return algos.length > 10 && weak.length === 0 ? undefined : `weak: ${weak.join(", ")}; offered: ${algos.length}`;
    });
    checks.check("a client that only speaks SHA-1 key exchange is turned away", () => {
        const r = fromClient(`ssh -p ${c.sshPort} ${SSH_OPTIONS} ` +
            `-o KexAlgorithms=diffie-hellman-group14-sha1 admin@${c.serverIp} true`);
        return r.code !== 0 && /no matching key exchange method/.test(r.stderr) ? undefined : r.stderr;
    });
    checks.check(`sshd -t, nft -c -f and fail2ban-client -t are clean; the ${c.jails.length} jails run`, () => {
        const r = server.exec("sshd -t && nft -c -f /etc/nftables.conf && fail2ban-client -t >/dev/null && fail2ban-client status");
        return r.code === 0 && runningJails(r.stdout) === [...c.jails].sort().join(", ") ? undefined : r.stdout + r.stderr;
    });
    checks.check("forwarding is denied (nft and the kernel) and the kernel ignores redirects and source routes, logs martians", () => {
        const r = server.exec("nft list chain inet selfhost forward; sysctl -n net.ipv4.conf.all.accept_redirects net.ipv6.conf.all.accept_redirects " +
            "net.ipv4.conf.all.accept_source_route net.ipv4.tcp_syncookies net.ipv4.conf.all.rp_filter net.ipv4.ip_forward net.ipv4.conf.all.log_martians");
        const values = r.stdout.trim().split("\n").slice(-7).join(" ");
        return /policy drop/.test(r.stdout) && values === "0 0 0 1 1 0 1" ? undefined : r.stdout;
    });
    checks.check("unused network protocols (dccp, sctp, rds, tipc) and removable storage are never loaded on demand", () => {
        // modprobe's own view of its configuration: what it would run instead of loading each module.
        const modules = ["dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"];
        const r = server.exec(`for m in ${modules.join(" ")}; do modprobe -n -v $m 2>&1; done`);
        const refused = r.stdout.trim().split("\n").filter(l => /^install \/bin\/false/.test(l)).length;
        return refused === modules.length ? undefined : r.stdout + r.stderr;
    });
    checks.check("sshd as it runs: no agent forwarding, no TCP keepalives, the logging key named (VERBOSE)", () => {
        const r = server.exec("sshd -T | grep -E '^(allowagentforwarding|tcpkeepalive|loglevel) '").stdout.trim().split("\n").sort().join(", ");
        return r === "allowagentforwarding no, loglevel VERBOSE, tcpkeepalive no" ? undefined : r;
    });
    checks.check("the server cannot connect out to a port its services do not need", () => {
        // Nothing listens on the peer's 2525: if the packet left, the peer's reset would say "refused".
        const r = server.exec(`nc -v -z -w 3 ${NET.peer.ipv4} 2525`);
        const smtp = server.exec(`nc -z -w 3 ${NET.peer.ipv4} 25`);
        return /timed out|not permitted/i.test(r.stderr) && smtp.code === 0 ? undefined : `2525: ${r.stderr.trim()}; 25: exit ${smtp.code}`;
    });
    checks.check("security updates are on: daily timers, unattended-upgrade dry run, the admin mailed on change, our conffiles kept", () => {
        const r = server.exec("systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer && apt-config dump | grep -E " +
            "'^(APT::Periodic::Unattended-Upgrade \"1\"|Unattended-Upgrade::Mail \"root\"|Unattended-Upgrade::MailReport \"on-change\"|DPkg::Options:: \"--force-confold\")' | wc -l" +
            " && unattended-upgrade --dry-run >/dev/null 2>&1 && echo dry-run-ok");
        return /^4$/m.test(r.stdout) && /dry-run-ok/.test(r.stdout) ? undefined : r.stdout + r.stderr;
    });
    checks.check("after a library upgrade, the daemons still running the old one are restarted (needrestart from apt's hook): redis after liblzf1, and rspamd after redis", () => {
        const pid = (unit: string) => server.exec(`systemctl show -p MainPID --value ${unit}`).stdout.trim();
        const [before, rspamdBefore] = [pid("redis-server"), pid("rspamd")];
        // A real package operation: dpkg replaces the library's file, apt's hook runs needrestart.
        const r = server.exec("apt-get install -y -q --reinstall liblzf1 2>&1 | tail -5");
        const after = pid("redis-server");
        const active = server.exec("systemctl is-active redis-server").stdout.trim();
        // redis restarts rspamd once it is up (without waiting for it): wait until rspamd is back, listening.
        const rspamdBack = server.exec(`for i in $(seq 30); do [ "$(systemctl show -P MainPID rspamd)" != ${rspamdBefore} ] && ` +
            "ss -ltn | grep -q ':11332 ' && exit 0; sleep 1; done; exit 1").code === 0;
        return r.code === 0 && before !== "0" && after !== before && active === "active" && rspamdBack ? undefined
            : `redis-server pid ${before} → ${after} (${active}); rspamd back with a new pid: ${rspamdBack}; apt: ${r.stdout}${r.stderr}`;
    });
    checks.check("no version in the SMTP, IMAP or HTTP banners", () => {
        const smtp = fromClient(`(sleep 1; printf 'QUIT\\r\\n') | nc -w 5 ${c.serverIp} 25`).stdout.split("\n")[0];
        const imap = fromClient(`sleep 1 | openssl s_client -quiet -no_ign_eof -connect ${c.serverIp}:993 -CAfile ${c.root} 2>/dev/null | head -1`).stdout;
        const http = fromClient(`curl -skI https://${c.serverIp}/ | grep -i '^server:'`).stdout;
        const all = [smtp, imap, http].join("\n");
        return /^220 mail\.example\.test ESMTP\r?$/.test(smtp) && /ready\./.test(imap) && !/\d+\.\d+|postfix|dovecot|debian/i.test(all.replace(/mail\.example\.test/g, ""))
            ? undefined : all;
    });
}

/** fail2ban's banned addresses, all jails. */
const banned = (server: TestServer, jail: string) => server.exec(`fail2ban-client get ${jail} banip`).stdout;

async function bannedWithin(server: TestServer, jails: string[], address: string, seconds: number): Promise<string | undefined> {
    for (let i = 0; i < seconds * 2; i++) {
        const jail = jails.find(j => banned(server, j).includes(address));
        if (jail) return jail;
        await sleep(500);
    }
    return undefined;
}

export async function attackChecks(c: HardeningContext, banTime: number): Promise<void> {
    const { checks, server } = c;
    const [sshAttacker, smtpAttacker, imapAttacker, webmailAttacker] = NET.client.attackers;
    // Each attack fails once per call, as a client that keeps guessing does, until a jail bans it (at most 10
    // calls; maxretry is 5). sshd may drop a guessing source's connections itself (OpenSSH 10's
    // PerSourcePenalties): those never reach the log, so a fixed count could end before the jail's fifth.
    const attacks: { what: string, from: string, jails: string[], port: number, attempt: (i: number) => void }[] = [
        {
            what: "failed SSH logins", from: sshAttacker, jails: ["sshd"], port: c.sshPort,
            attempt: i => fromClient(`ssh -b ${sshAttacker} -p ${c.sshPort} ${SSH_OPTIONS} ` +
                `-o ConnectTimeout=5 intruder${i}@${c.serverIp} true`),
        },
        {
            what: "failed SMTP AUTH attempts", from: smtpAttacker, jails: ["dovecot", "postfix-sasl"], port: 587,
            attempt: i => fromClient(`swaks --server ${c.serverIp} --local-interface ${smtpAttacker} --port 587 --tls --tls-ca-path ${c.root} ` +
                `--tls-sni mail.example.test --helo client.elsewhere.test --auth PLAIN --auth-user alice@example.test ` +
                `--auth-password wrong${i} --quit-after AUTH --timeout 30`),
        },
        {
            what: "failed IMAP logins", from: imapAttacker, jails: ["dovecot"], port: 993,
            attempt: i => fromClient(`curl -s --max-time 20 --interface ${imapAttacker} --cacert ${c.root} --resolve mail.example.test:993:${c.serverIp} ` +
                `imaps://mail.example.test/ -u alice@example.test:wrong${i} -o /dev/null`),
        },
        {
            what: "failed webmail logins", from: webmailAttacker, jails: ["roundcube"], port: 443,
            attempt: i => formLogin({ user: `intruder${i}@example.test`, password: `wrong${i}`, ca: c.root, serverIp: c.serverIp, from: webmailAttacker }),
        },
    ];
    for (const { what, from, jails, port, attempt } of attacks) {
        let [jail, attempts] = [undefined as string | undefined, 0];
        const since = server.exec("date '+%F %T'").stdout.trim();
        while (!jail && attempts < 10) {
            attempt(attempts++);
            if (attempts >= 5) jail = await bannedWithin(server, jails, from, attempts < 10 ? 3 : 30);
        }
        checks.check(`repeated ${what} from ${from} get it banned (${jail ?? "no jail"}), and only it`, () =>
            jail && !reachable(from, c.serverIp, port) && reachable(NET.client.ipv4, c.serverIp, port) ? undefined
                : `after ${attempts} attempts banned: ${jails.map(j => banned(server, j).trim()).join(" | ")}; the server logged: ` +
                server.exec(`journalctl -o cat --since '${since}' | grep -F '${from}' | tail -12`).stdout);
    }
    checks.check("the right password still works for the user whose password was attacked", () => {
        const r = fromClient(`curl -s --max-time 20 --cacert ${c.root} --resolve mail.example.test:993:${c.serverIp} ` +
            `imaps://mail.example.test/ -u alice@example.test:${c.passwords.alice} -o /dev/null -w '%{exitcode}'`);
        return r.stdout === "0" ? undefined : `curl exit ${r.stdout}`;
    });
    const started = Date.now();
    while (!reachable(sshAttacker, c.serverIp, c.sshPort) && Date.now() - started < (banTime + 30) * 1000) await sleep(2000);
    const liftedAfter = (Date.now() - started) / 1000;
    checks.check(`the SSH ban is lifted after banTime (${banTime} s)`, () =>
        reachable(sshAttacker, c.serverIp, c.sshPort) && !banned(server, "sshd").includes(sshAttacker) ? undefined : `still banned after ${liftedAfter.toFixed(0)} s`);
}
