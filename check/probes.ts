/**
 * The outside view: public DNS against the stack's DNS model, reverse DNS, every TLS endpoint, the
 * open and closed ports, SSH, an open-relay probe and the blocklists. The inside view comes from the
 * server's own `selfhost-status` over SSH. Each probe returns findings; none throws.
 */
import * as net from "net";
import * as dgram from "dgram";
import * as crypto from "crypto";
import * as https from "https";
import * as tls from "tls";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Resolver } from "dns/promises";
import { spawnSync } from "child_process";
import { DnsRecord, untxt, policyId } from "../components/dns/records";
import { SERVICE_PORTS, LOCAL_PORTS, portOf } from "../services/catalog";
import { schema } from "../config";
import { STATUS_COMMAND } from "../components/status";
import { Finding, finding, Status } from "./findings";

/** What the stack says the server is: its outputs, the only input. */
export interface Target {
    readonly domain: string;
    readonly hostname: string;
    readonly ipv4: string;
    readonly ipv6: string;
    readonly records: readonly DnsRecord[];
    readonly sshPort: number;
    readonly adminUser: string;
    /** The server's host key as a known_hosts line (the stack's `sshKnownHosts`): SSH verifies exactly that. */
    readonly knownHosts?: string;
}

export interface Options {
    /** DNS resolver to ask (default: the system's). */
    readonly resolver?: string;
    /** Extra CA file to trust (the local target's ACME root, or the private CA). */
    readonly ca?: string;
    readonly sshKey?: string;
    /** known_hosts for the server's SSH host key (default: yours, learning it on first contact). */
    readonly knownHosts?: string;
    /** A certificate expiring sooner than this is a warning (certbot renews 30 days ahead). */
    readonly certWarnDays: number;
}

const PUBLISH_HINT = "publish the stack's records: pulumi up (or copy them from `pulumi stack output zoneFile` to your DNS host)";

const fqdn = (name: string, domain: string) => name === "@" ? domain : `${name}.${domain}`;

/** Well-known records by their purpose, the rest by type and name. */
function recordLabel(r: DnsRecord, domain: string): string {
    const name = fqdn(r.name, domain);
    if (r.type === "MX") return `MX ${name}`;
    if (r.type === "TXT" && r.values.some(v => untxt(v).startsWith("v=spf1"))) return `SPF ${name}`;
    if (r.name.endsWith("._domainkey")) return `DKIM ${name}`;
    if (r.name === "_dmarc") return `DMARC ${name}`;
    if (r.name === "_mta-sts") return `MTA-STS id ${name}`;
    if (r.name === "_smtp._tls") return `TLS-RPT ${name}`;
    return `${r.type} ${name}`;
}

/** The answer for a record in the model's presentation form, sorted. */
async function lookup(resolver: Resolver, r: DnsRecord, domain: string): Promise<string[]> {
    const name = fqdn(r.name, domain);
    const dot = (host: string) => host ? `${host}.` : ".";
    switch (r.type) {
        case "A": return (await resolver.resolve4(name)).sort();
        case "AAAA": return (await resolver.resolve6(name)).sort();
        case "MX": return (await resolver.resolveMx(name)).map(m => `${m.priority} ${dot(m.exchange)}`).sort();
        case "TXT": return (await resolver.resolveTxt(name)).map(chunks => chunks.join("")).sort();
        case "SRV": return (await resolver.resolveSrv(name)).map(s => `${s.priority} ${s.weight} ${s.port} ${dot(s.name)}`).sort();
        case "CAA": return (await resolver.resolveCaa(name)).map(c => {
            const [tag, value] = Object.entries(c).find(([k]) => k !== "critical")!;
            return `${c.critical} ${tag} "${value}"`;
        }).sort();
        default: throw new Error(`no lookup for ${r.type}`);
    }
}

const expected = (r: DnsRecord) => r.values.map(v => {
    if (r.type === "TXT") return untxt(v);
    if (r.type === "AAAA") return net.isIPv6(v) ? v.replace(/(^|:)0+(?=[0-9a-f])/g, "$1") : v;
    return v;
}).sort();

export async function dnsFindings(t: Target, o: Options): Promise<Finding[]> {
    const resolver = new Resolver({ timeout: 5000, tries: 2 });
    if (o.resolver) resolver.setServers([o.resolver]);
    const out: Finding[] = [];
    // Node's resolver has no TLSA (nor DNSSEC): the server's own report checks those, through its validating resolver.
    for (const r of t.records.filter(r => r.type !== "TLSA")) {
        const label = recordLabel(r, t.domain);
        try {
            const got = await lookup(resolver, r, t.domain);
            const want = expected(r);
            const same = got.length === want.length && got.every((g, i) => g === want[i]);
            out.push(same ? finding("dns", label, "ok", want.join(" | ").slice(0, 90))
                : finding("dns", label, "error", `public DNS says ${got.join(" | ") || "nothing"}; the stack says ${want.join(" | ")}`, PUBLISH_HINT));
        } catch (e) {
            out.push(finding("dns", label, "error", `missing (${(e as NodeJS.ErrnoException).code ?? e})`, PUBLISH_HINT));
        }
    }
    // Reverse DNS: each IP's PTR is the hostname, whose A/AAAA is that IP again.
    for (const ip of [t.ipv4, t.ipv6]) {
        const name = `PTR ${ip}`;
        try {
            const ptr = await resolver.reverse(ip);
            const back = ip.includes(":") ? await resolver.resolve6(t.hostname) : await resolver.resolve4(t.hostname);
            out.push(ptr.includes(t.hostname) && back.includes(ip) ? finding("dns", name, "ok", `${t.hostname}, forward-confirmed`)
                : finding("dns", name, "error", `PTR ${ptr.join(",")}; ${t.hostname} → ${back.join(",")}`,
                    "the PTR is set by the stack (hcloud.Rdns): pulumi up; mail servers distrust a host without it"));
        } catch (e) {
            out.push(finding("dns", name, "error", `no PTR (${(e as NodeJS.ErrnoException).code ?? e})`, "pulumi up sets it (hcloud.Rdns)"));
        }
    }
    out.push(...await mtaStsPolicyFinding(t, o));
    out.push(...await blocklistFindings(t, resolver));
    return out;
}

/** The policy served at mta-sts.<domain> must hash to the id the TXT record announces. */
async function mtaStsPolicyFinding(t: Target, o: Options): Promise<Finding[]> {
    const record = t.records.find(r => r.name === "_mta-sts");
    if (!record) return [];
    const id = untxt(record.values[0]).match(/id=(\w+)/)?.[1];
    const host = `mta-sts.${t.domain}`;
    const body = await new Promise<string>(resolve => {
        const req = https.get({ host: t.ipv4, servername: host, headers: { Host: host }, path: "/.well-known/mta-sts.txt", timeout: 10000,
            ca: o.ca ? [...tls.rootCertificates, fs.readFileSync(o.ca, "utf8")] : undefined }, res => {
            let text = "";
            res.on("data", d => text += d);
            res.on("end", () => resolve(res.statusCode === 200 ? text : ""));
        });
        req.on("error", () => resolve(""));
        req.on("timeout", () => { req.destroy(); resolve(""); });
    });
    const hash = policyId(body);
    return [body && hash === id ? finding("mail", "MTA-STS policy", "ok", `served at https://${host}/, id ${id} matches`)
        : finding("mail", "MTA-STS policy", "error", body ? `served policy hashes to ${hash}, the record says ${id}` : `not served at https://${host}/.well-known/mta-sts.txt`,
            "pulumi up re-runs the web step, which serves the policy the record was made from")];
}

/** zen.spamhaus.org for both IPs, dbl.spamhaus.org for the domain. Spamhaus answers 127.255.255.x to public resolvers. */
async function blocklistFindings(t: Target, resolver: Resolver): Promise<Finding[]> {
    const reversed = (ip: string) => ip.includes(":")
        ? [...expandIpv6(ip).replace(/:/g, "")].reverse().join(".")
        : ip.split(".").reverse().join(".");
    const queries: [string, string, RegExp][] = [
        [`zen.spamhaus.org ${t.ipv4}`, `${reversed(t.ipv4)}.zen.spamhaus.org`, /^127\.0\.0\.([2-9]|1[01])$/],
        [`zen.spamhaus.org ${t.ipv6}`, `${reversed(t.ipv6)}.zen.spamhaus.org`, /^127\.0\.0\.([2-9]|1[01])$/],
        [`dbl.spamhaus.org ${t.domain}`, `${t.domain}.dbl.spamhaus.org`, /^127\.0\.1\.\d+$/],
    ];
    const out: Finding[] = [];
    for (const [name, query, listed] of queries) {
        try {
            const answers = await resolver.resolve4(query);
            if (answers.some(a => listed.test(a))) {
                out.push(finding("blocklists", name, "error", `listed (${answers.join(", ")})`, "see https://check.spamhaus.org/ for why and how to delist"));
            } else {
                out.push(finding("blocklists", name, "warn", `answered ${answers.join(", ")}: the query was refused`,
                    "Spamhaus refuses queries from public resolvers; run the check with --resolver set to your own"));
            }
        } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            out.push(code === "ENOTFOUND" ? finding("blocklists", name, "ok", "not listed")
                : finding("blocklists", name, "warn", `could not ask (${code})`, "try another --resolver"));
        }
    }
    return out;
}

function expandIpv6(ip: string): string {
    const [head, tail = ""] = ip.split("::");
    const h = head ? head.split(":") : [];
    const tl = tail ? tail.split(":") : [];
    const groups = [...h, ...Array(8 - h.length - tl.length).fill("0"), ...tl];
    return groups.map(g => g.padStart(4, "0")).join(":");
}

/** Each TLS endpoint (STARTTLS where the protocol has it): a valid certificate for the right name, and its days left. */
/** A TLS endpoint to check: what it is, its port, the name its certificate must verify for, s_client's extra arguments. */
export type Endpoint = [string, number, string, string[]];
/** Port 25's, on a host of the stack (the server's, the secondary MX's). */
export const smtpEndpoint = (hostname: string): Endpoint => ["SMTP STARTTLS", portOf("smtp"), hostname, ["-starttls", "smtp"]];

/** The server's endpoints: HTTPS for every name, mail, XMPP and TURN. */
function serverEndpoints(t: Target): Endpoint[] {
    const webNames = [...new Set(t.records.filter(r => r.type === "A").map(r => fqdn(r.name, t.domain)))];
    return [
        ...webNames.map((n): Endpoint => [n, portOf("https"), n, []]),
        smtpEndpoint(t.hostname),
        ["submissions", portOf("submissions"), t.hostname, []],
        ["submission STARTTLS", portOf("submission"), t.hostname, ["-starttls", "smtp"]],
        ["IMAPS", portOf("imaps"), t.hostname, []],
        ["ManageSieve STARTTLS", portOf("sieve"), t.hostname, ["-starttls", "sieve"]],
        ["XMPP STARTTLS", portOf("xmpp-client"), t.domain, ["-starttls", "xmpp", "-xmpphost", t.domain]],
        ["XMPP direct TLS", portOf("xmpps-client"), t.domain, []],
        ["TURN over TLS", portOf("turns"), t.hostname, []],
    ];
}

export function tlsFindings(t: Target, o: Options, endpoints = serverEndpoints(t)): Finding[] {
    return endpoints.map(([what, p, name, extra]) => {
        const label = `${what === name ? "HTTPS" : what} ${name}:${p}`;
        const r = spawnSync("openssl", ["s_client", "-connect", `${t.ipv4}:${p}`, "-servername", name, "-verify_hostname", name,
            "-verify_return_error", ...(o.ca ? ["-CAfile", o.ca] : []), ...extra], { input: "", encoding: "utf8", timeout: 15000 });
        const out = (r.stdout ?? "") + (r.stderr ?? "");
        if (!/Verify return code: 0 \(ok\)/.test(out)) {
            const why = out.match(/verify error:[^\n]*|Connection refused|connect:[^\n]*|errno=\d+/)?.[0] ?? "no TLS handshake";
            return finding("tls", label, "error", why, "is the service running? then: pulumi up re-runs the tls step (certbot) and reloads it");
        }
        const cert = out.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/)?.[0] ?? "";
        const end = spawnSync("openssl", ["x509", "-noout", "-enddate"], { input: cert, encoding: "utf8" }).stdout.replace("notAfter=", "").trim();
        const days = Math.floor((Date.parse(end) - Date.now()) / 86_400_000);
        const status: Status = days < 7 ? "error" : days < o.certWarnDays ? "warn" : "ok";
        return finding("tls", label, status, `valid, expires in ${days} days`,
            "certbot renews 30 days ahead: on the server journalctl -u certbot, sudo certbot renew");
    });
}

/**
 * Port 25 closed as seen from here: the server's fault, or this network's? Many home and office networks
 * block outbound 25; if another mail server is unreachable on 25 too, it is this side (a warning: the
 * server's own report checks 25 from the server).
 */
export function port25Blame(referenceReachable: boolean, reference: string): Finding | undefined {
    return referenceReachable ? undefined : finding("ports", "25 (smtp) from here", "warn",
        `neither the server nor ${reference} answers on 25 from this network`,
        "your network blocks outbound port 25 (common at home); run npm run check from elsewhere, or read the server's own report below");
}

/** A mail server to tell "blocked here" from "closed there" (the status report's own probe by default). */
const SMTP_REFERENCE = String(schema().checkSmtpHost.default);

/** Ports: what the catalog opens is open, the rest (SSH's default, the internal services) is not. */
export async function portFindings(t: Target): Promise<Finding[]> {
    const open = SERVICE_PORTS.filter(p => p.protocol === "tcp");
    const closed = [22, 110, 143, 3306, 5432, 8080, 11333, ...Object.values(LOCAL_PORTS)].filter(p => p !== t.sshPort);
    const smtp = portOf("smtp");
    const out: Finding[] = [];
    for (const ip of [t.ipv4, t.ipv6]) {
        const states = await Promise.all([...open.map(p => p.port), ...closed].map(p => connects(ip, p)));
        let shutPorts = open.filter((_, i) => !states[i]);
        const blocked = shutPorts.some(p => p.port === smtp) ? port25Blame(await connects(SMTP_REFERENCE, smtp), SMTP_REFERENCE) : undefined;
        if (blocked) {
            out.push(blocked);
            shutPorts = shutPorts.filter(p => p.port !== smtp);
        }
        const shut = shutPorts.map(p => `${p.port} (${p.name})`);
        const extra = closed.filter((_, i) => states[open.length + i]);
        out.push(shut.length ? finding("ports", `open on ${ip}`, "error", `closed: ${shut.join(", ")}`, "is the service running? the host firewall (nftables) comes from services/catalog.ts: pulumi up")
            : finding("ports", `open on ${ip}`, "ok", open.map(p => p.port).join(" ")));
        out.push(extra.length ? finding("ports", `closed on ${ip}`, "error", `open: ${extra.join(", ")}`, "something listens and is let in outside the stack: nft list ruleset; ss -tlnp")
            : finding("ports", `closed on ${ip}`, "ok", closed.join(" ")));
    }
    return out;
}

/**
 * A STUN Binding request (RFC 5389) over UDP: the answer's XOR-MAPPED-ADDRESS is this host's address as the
 * server saw it; undefined when nothing (or something else) answered within 3 s.
 */
export function stunBinding(host: string, port: number): Promise<string | undefined> {
    const MAGIC = 0x2112a442;
    const request = Buffer.alloc(20);
    request.writeUInt16BE(0x0001, 0);
    request.writeUInt32BE(MAGIC, 4);
    const transaction = crypto.randomBytes(12);
    transaction.copy(request, 8);
    return new Promise(resolve => {
        const socket = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
        const done = (answer?: string) => { clearTimeout(timer); socket.close(); resolve(answer); };
        const timer = setTimeout(() => done(), 3000);
        socket.on("error", () => done());
        socket.on("message", m => {
            if (m.length < 20 || m.readUInt16BE(0) !== 0x0101 || !m.subarray(8, 20).equals(transaction)) return;
            for (let at = 20; at + 4 <= m.length; at += 4 + Math.ceil(m.readUInt16BE(at + 2) / 4) * 4) {
                if (m.readUInt16BE(at) !== 0x0020 || m[at + 5] !== 0x01) continue;
                const address = (m.readUInt32BE(at + 8) ^ MAGIC) >>> 0;
                return done([24, 16, 8, 0].map(shift => (address >>> shift) & 255).join("."));
            }
            done("an address");
        });
        socket.send(request, port, host);
    });
}

/** STUN on UDP, which the TCP port probes cannot see: calls need it. */
export async function stunFindings(t: Target): Promise<Finding[]> {
    const port = portOf("turn");
    const answer = await stunBinding(t.ipv4, port);
    return [answer ? finding("ports", `STUN on ${t.ipv4} (UDP ${port})`, "ok", `answers; sees this host as ${answer}`)
        : finding("ports", `STUN on ${t.ipv4} (UDP ${port})`, "error", "no answer", "calls need coturn: on the server systemctl status coturn; pulumi up re-runs the xmpp step")];
}

const connects = (host: string, port: number) => new Promise<boolean>(resolve => {
    const s = net.connect({ host, port, timeout: 3000 });
    s.on("connect", () => { s.destroy(); resolve(true); });
    s.on("timeout", () => { s.destroy(); resolve(false); });
    s.on("error", () => resolve(false));
});

/** SSH with a password must be refused; only keys log in. */
export function sshFindings(t: Target): Finding[] {
    const r = spawnSync("ssh", ["-p", String(t.sshPort), "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=8", `check-probe@${t.ipv4}`, "true"], { encoding: "utf8", timeout: 20000 });
    const err = r.stderr ?? "";
    if (/Permission denied \(publickey\)/.test(err)) return [finding("ssh", "password login", "ok", "refused: keys only")];
    if (/Permission denied/.test(err)) return [finding("ssh", "password login", "error", err.trim(), "sshd must offer publickey only: pulumi up re-runs the hardening step")];
    return [finding("ssh", "password login", "warn", `not reachable from here: ${err.trim().split("\n").pop()}`, "with adminSources set, run the check from one of them")];
}

/** A stranger asking us to relay to another domain must be refused. */
export async function relayFindings(t: Target, port = portOf("smtp")): Promise<Finding[]> {
    // A null sender: no sender check can refuse it first, so the answer to RCPT is the relay decision.
    const dialog = ["EHLO check.invalid", "MAIL FROM:<>", "RCPT TO:<relay-probe@example.net>", "QUIT"];
    const replies = await new Promise<string[]>(resolve => {
        const got: string[] = [];
        let buffer = "";
        let step = 0;
        const s = net.connect({ host: t.ipv4, port, timeout: 20000 });
        s.on("data", d => {
            buffer += d.toString();
            // A reply is complete on a line "NNN " (multi-line replies use "NNN-").
            while (/^\d{3} .*\r?\n/m.test(buffer)) {
                const end = buffer.search(/^\d{3} .*\r?\n/m);
                const line = buffer.slice(end).split("\n")[0];
                got.push(line.trim());
                buffer = buffer.slice(end + line.length + 1);
                if (step < dialog.length) s.write(`${dialog[step++]}\r\n`); else s.end();
            }
        });
        s.on("timeout", () => { s.destroy(); resolve(got); });
        s.on("error", () => resolve(got));
        s.on("close", () => resolve(got));
    });
    const rcpt = replies[3] ?? "";
    if (/^5\d\d/.test(rcpt)) return [finding("mail", "open relay", "ok", `refused: ${rcpt}`)];
    if (!rcpt) return [finding("mail", "open relay", "warn", `no answer on port 25 (${replies.join(" / ") || "no connection"})`, "is Postfix running?")];
    if (/^4\d\d/.test(rcpt)) return [finding("mail", "open relay", "warn", `inconclusive, refused for now: ${rcpt}`, "run the check from a host with reverse DNS")];
    return [finding("mail", "open relay", "error", `relay to another domain answered: ${rcpt}`,
        "smtpd_relay_restrictions must end in reject_unauth_destination: pulumi up re-runs the mail step")];
}

/** The server's own report, over SSH as the admin (your key, or --ssh-key). */
export function serverFindings(t: Target, o: Options): Finding[] {
    // The stack's pinned key when the outputs have it; else your known_hosts (a first contact is trusted).
    const pinned = t.knownHosts && path.join(fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-check-")), "known_hosts");
    if (pinned) fs.writeFileSync(pinned, `${t.knownHosts}\n`);
    const hostKeys = pinned ? ["-o", `UserKnownHostsFile=${pinned}`, "-o", "StrictHostKeyChecking=yes"]
        : [...(o.knownHosts ? ["-o", `UserKnownHostsFile=${o.knownHosts}`] : []), "-o", "StrictHostKeyChecking=accept-new"];
    const r = spawnSync("ssh", ["-p", String(t.sshPort), "-o", "BatchMode=yes", "-o", "ConnectTimeout=8", ...(o.sshKey ? ["-i", o.sshKey] : []),
        ...hostKeys, `${t.adminUser}@${t.ipv4}`, `sudo -n env CERT_WARN_DAYS=${o.certWarnDays} ${STATUS_COMMAND}`],
    { encoding: "utf8", timeout: 120000 });
    if (pinned) fs.rmSync(path.dirname(pinned), { recursive: true, force: true });
    if (r.status !== 0 && !r.stdout) {
        return [finding("server", "selfhost-status", "error", `could not run over SSH: ${(r.stderr ?? "").trim().split("\n").pop()}`,
            `ssh -p ${t.sshPort} ${t.adminUser}@${t.ipv4} must work with your key`)];
    }
    return r.stdout.trim().split("\n").filter(Boolean).map(line => {
        const [status, area, name, detail, hint] = line.split("\t");
        return finding(area, name, (["ok", "warn", "error"].includes(status) ? status : "error") as Status, detail, hint);
    });
}
