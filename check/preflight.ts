/**
 * `npm run preflight`: before the first `pulumi up`. The configuration exactly as the program reads it
 * (every problem by key, with its fix), the credentials, the Hetzner and DNS provider APIs, the
 * domain's delegation, and what to know about port 25.
 *
 *   npm run preflight -- [--config FILE|-] [--resolver IP] [--offline] [--json]
 *
 * Without --config it asks `pulumi config --json --show-secrets` (the tokens are used, never printed).
 */
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import { Resolver } from "dns/promises";
import { spawnSync } from "child_process";
import { loadSettings, ConfigError, Settings } from "../config";
import { Finding, finding, render } from "./findings";

/** `pulumi config --json` entries: key → { value }. */
type StackConfig = Record<string, { value?: string; secret?: boolean }>;

/** Name servers each provider delegates to. */
const PROVIDER_NS: Record<string, RegExp> = { gandi: /\.gandi\.net\.?$/, hetzner: /\.ns\.hetzner\.(com|de)\.?$/ };

export async function preflight(config: StackConfig, o: { resolver?: string; offline?: boolean } = {}): Promise<Finding[]> {
    const out: Finding[] = [];
    const value = (key: string) => config[key]?.value;
    pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(config).filter(([, v]) => v.value !== undefined).map(([k, v]) => [k, v.value!])));
    let s: Settings | undefined;
    try {
        s = loadSettings();
        out.push(finding("config", "stack configuration", "ok", `${s.domain}: ${s.users.length} users, ${s.serverType} in ${s.location}, DNS at ${s.dnsProvider}`));
    } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        for (const p of e.problems) {
            const [key, ...rest] = p.split(" ");
            out.push(finding("config", key, "error", rest.join(" "), `pulumi config set ${key.replace(/^selfhost:/, "")} <value>`));
        }
    }
    const token = value("hcloud:token");
    out.push(token ? finding("credentials", "hcloud:token", "ok", "set")
        : finding("credentials", "hcloud:token", "error", "not set", "a read & write API token of your Hetzner Cloud project: pulumi config set --secret hcloud:token"));
    const gandiKey = value("gandi:key");
    if (s?.dnsProvider === "gandi") {
        out.push(gandiKey ? finding("credentials", "gandi:key", "ok", "set")
            : finding("credentials", "gandi:key", "error", "not set", "a Gandi API key (not a PAT; see README): pulumi config set --secret gandi:key"));
    }
    if (!o.offline) {
        if (token) out.push(await api("Hetzner Cloud API", "https://api.hetzner.cloud/v1/locations", { Authorization: `Bearer ${token}` }, "create a new token in the Cloud Console (Security → API tokens)"));
        if (s?.dnsProvider === "gandi" && gandiKey) {
            out.push(await api(`Gandi LiveDNS: ${s.domain}`, `https://api.gandi.net/v5/livedns/domains/${s.domain}`, { Authorization: `Apikey ${gandiKey}` },
                "the domain must be on Gandi LiveDNS, and the key must manage it"));
        }
    }
    if (s && s.dnsProvider !== "none") {
        const resolver = new Resolver({ timeout: 5000, tries: 2 });
        if (o.resolver) resolver.setServers([o.resolver]);
        const ns = await resolver.resolveNs(s.domain).catch((e: NodeJS.ErrnoException) => [`(${e.code})`]);
        const delegated = ns.length > 0 && ns.every(n => PROVIDER_NS[s!.dnsProvider].test(n));
        out.push(delegated ? finding("dns", `delegation of ${s.domain}`, "ok", ns.join(" "))
            : finding("dns", `delegation of ${s.domain}`, "warn", `name servers: ${ns.join(" ") || "none"}`,
                s.dnsProvider === "hetzner" ? "after pulumi up, set the `nameservers` output at your registrar"
                    : "switch the domain to Gandi LiveDNS name servers at Gandi"));
    }
    out.push(finding("mail", "outbound port 25", "warn", "Hetzner blocks it on new accounts: the server can receive mail but not send",
        "after your first paid invoice, ask Hetzner support to unblock port 25 for the project; `npm run check` tests it"));
    return out;
}

async function api(name: string, url: string, headers: Record<string, string>, fix: string): Promise<Finding> {
    try {
        const r = await fetch(url, { headers, signal: AbortSignal.timeout(10000) });
        if (r.ok) return finding("providers", name, "ok", `HTTP ${r.status}`);
        return finding("providers", name, "error", `HTTP ${r.status}`, r.status === 401 || r.status === 403 ? `the credentials were refused: ${fix}` : fix);
    } catch (e) {
        return finding("providers", name, "error", `unreachable: ${e instanceof Error ? e.message : e}`, "check this machine's network");
    }
}

function readConfig(source?: string): StackConfig {
    if (source) return JSON.parse(fs.readFileSync(source === "-" ? 0 : source, "utf8"));
    const r = spawnSync("pulumi", ["config", "--json", "--show-secrets"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`pulumi config failed (${r.error?.message ?? r.stderr.trim()}); or pass --config FILE`);
    return JSON.parse(r.stdout);
}

async function main(): Promise<number> {
    const argv = process.argv.slice(2);
    const arg = (flag: string) => { const i = argv.indexOf(flag); return i >= 0 ? argv[i + 1] : undefined; };
    const findings = await preflight(readConfig(arg("--config")), { resolver: arg("--resolver"), offline: argv.includes("--offline") });
    console.log(argv.includes("--json") ? JSON.stringify(findings, null, 2) : render(findings));
    return findings.some(f => f.status === "error") ? 1 : 0;
}

if (require.main === module) {
    main().then(code => process.exit(code), e => { console.error(e instanceof Error ? e.message : e); process.exit(2); });
}
