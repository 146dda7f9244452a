/**
 * `npm run check`: is the server what the stack promised? Reads the stack's outputs (its DNS model,
 * names and addresses) and checks them from here and, over SSH, from the server itself.
 *
 *   npm run check -- [--outputs FILE|-] [--resolver IP] [--ca FILE] [--ssh-key FILE] [--known-hosts FILE] [--cert-warn-days N] [--json]
 *
 * Without --outputs it asks `pulumi stack output --json`. Exits 1 when anything is an error.
 */
import * as fs from "fs";
import { spawnSync } from "child_process";
import { Finding, render } from "./findings";
import { Target, Options, dnsFindings, tlsFindings, smtpEndpoint, portFindings, stunFindings, sshFindings, relayFindings, serverFindings } from "./probes";

const USAGE = "usage: npm run check -- [--outputs FILE|-] [--resolver IP] [--ca FILE] [--ssh-key FILE] [--known-hosts FILE] [--cert-warn-days N] [--json]";

function flags(argv: string[]): Record<string, string> {
    const out: Record<string, string> = {};
    for (let i = 0; i < argv.length; i++) {
        const key = argv[i].replace(/^--/, "");
        if (!argv[i].startsWith("--") || !["outputs", "resolver", "ca", "ssh-key", "known-hosts", "cert-warn-days", "json"].includes(key)) throw new Error(USAGE);
        out[key] = key === "json" ? "yes" : argv[++i] ?? "";
    }
    return out;
}

/** The stack's outputs, as `pulumi stack output --json` prints them. */
function readOutputs(source?: string): Record<string, any> {
    if (source) return JSON.parse(fs.readFileSync(source === "-" ? 0 : source, "utf8"));
    const r = spawnSync("pulumi", ["stack", "output", "--json"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`pulumi stack output failed (${r.error?.message ?? r.stderr.trim()}); or pass --outputs FILE`);
    return JSON.parse(r.stdout);
}

/** The server, and the secondary MX when the stack has one (the same admin and SSH port). */
export function targetOf(outputs: Record<string, any>): Target & { secondary?: Target } {
    const ssh = String(outputs.sshCommand ?? "").match(/^ssh -p (\d+) ([^@\s]+)@/);
    if (!outputs.domain || !outputs.records || !ssh) throw new Error("these are not this stack's outputs (domain, records, sshCommand missing)");
    const server: Target = {
        domain: outputs.domain, hostname: outputs.hostname, ipv4: outputs.ipv4, ipv6: outputs.ipv6, records: outputs.records,
        sshPort: Number(ssh[1]), adminUser: ssh[2], knownHosts: outputs.sshKnownHosts,
    };
    const mx2 = outputs.secondaryMx;
    return { ...server, ...mx2 ? { secondary: { ...server, hostname: mx2.hostname, ipv4: mx2.ipv4, ipv6: mx2.ipv6, knownHosts: mx2.sshKnownHosts } } : {} };
}

export async function check(t: Target & { secondary?: Target }, o: Options): Promise<Finding[]> {
    return [
        ...await dnsFindings(t, o),
        ...tlsFindings(t, o),
        ...await portFindings(t),
        ...await stunFindings(t),
        ...sshFindings(t),
        ...await relayFindings(t),
        ...serverFindings(t, o),
        ...t.secondary ? await secondaryFindings(t.secondary, o) : [],
    ];
}

/** The secondary MX: port 25's certificate, no relaying for strangers, SSH keys only, and its own report. */
async function secondaryFindings(mx2: Target, o: Options): Promise<Finding[]> {
    const found = [...tlsFindings(mx2, o, [smtpEndpoint(mx2.hostname)]), ...await relayFindings(mx2), ...sshFindings(mx2), ...serverFindings(mx2, o)];
    return found.map(f => ({ ...f, area: `${mx2.hostname}: ${f.area}` }));
}

async function main(): Promise<number> {
    const f = flags(process.argv.slice(2));
    const options: Options = {
        resolver: f.resolver, ca: f.ca, sshKey: f["ssh-key"], knownHosts: f["known-hosts"], certWarnDays: Number(f["cert-warn-days"] ?? 21),
    };
    const findings = await check(targetOf(readOutputs(f.outputs)), options);
    console.log(f.json ? JSON.stringify(findings, null, 2) : render(findings));
    return findings.some(x => x.status === "error") ? 1 : 0;
}

if (require.main === module) {
    main().then(code => process.exit(code), e => { console.error(e instanceof Error ? e.message : e); process.exit(2); });
}
