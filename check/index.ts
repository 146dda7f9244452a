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
import { Target, Options, dnsFindings, tlsFindings, portFindings, stunFindings, sshFindings, relayFindings, serverFindings } from "./probes";

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

export function targetOf(outputs: Record<string, any>): Target {
    const ssh = String(outputs.sshCommand ?? "").match(/^ssh -p (\d+) ([^@\s]+)@/);
    if (!outputs.domain || !outputs.records || !ssh) throw new Error("these are not this stack's outputs (domain, records, sshCommand missing)");
    return {
        domain: outputs.domain, hostname: outputs.hostname, ipv4: outputs.ipv4, ipv6: outputs.ipv6, records: outputs.records,
        sshPort: Number(ssh[1]), adminUser: ssh[2], knownHosts: outputs.sshKnownHosts,
    };
}

export async function check(t: Target, o: Options): Promise<Finding[]> {
    return [
        ...await dnsFindings(t, o),
        ...tlsFindings(t, o),
        ...await portFindings(t),
        ...await stunFindings(t),
        ...sshFindings(t),
        ...await relayFindings(t),
        ...serverFindings(t, o),
    ];
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
