/**
 * `npm run preflight`: before the first `pulumi up`. The configuration exactly as the program reads it
 * (every problem by key, with its fix), the credentials, the Hetzner and DNS provider APIs, the
 * domain's delegation, what it costs a month (Hetzner's price lists), and what to know about port 25.
 *
 *   npm run preflight -- [--config FILE|-] [--resolver IP] [--offline] [--json]
 *
 * Without --config it asks `pulumi config --json --show-secrets` (the tokens are used, never printed).
 * FILE is your Pulumi.<stack>.yaml (its encrypted tokens are known to be set, not tried) or that JSON.
 */
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { Resolver } from "dns/promises";
import { spawnSync } from "child_process";
import { loadSettings, ConfigError, Settings } from "../config";
import { recordShapes } from "../components/dns/records";
import { explain } from "../components/dns/livedns";
import { Finding, finding, render } from "./findings";
import { costFinding, CloudPricing, StorageBoxTypes } from "./costs";

/** `pulumi config --json` entries: key → { value }; `encrypted`: set in a stack file as a `secure:` value, so known to be there but not readable here. */
type StackConfig = Record<string, { value?: string; secret?: boolean; encrypted?: boolean }>;

/** What an encrypted value stands in for while the configuration is validated (a well-formed token). */
const ENCRYPTED = "encrypted";

/**
 * A stack file (Pulumi.<stack>.yaml) as `pulumi config --json` would give it: structured values as JSON,
 * keys without a namespace in the project's (selfhost), `secure:` values known to be set but not read.
 */
export function fromStackFile(text: string): StackConfig {
    const config: Record<string, unknown> = (YAML.parse(text) ?? {}).config ?? {};
    return Object.fromEntries(Object.entries(config).map(([k, v]) => {
        const key = k.includes(":") ? k : `selfhost:${k}`;
        if (v !== null && typeof v === "object" && !Array.isArray(v) && "secure" in v) return [key, { value: ENCRYPTED, secret: true, encrypted: true }];
        return [key, { value: typeof v === "string" ? v : JSON.stringify(v) }];
    }));
}

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
    const encrypted = (key: string) => config[key]?.encrypted === true;
    const token = value("hcloud:token");
    out.push(encrypted("hcloud:token") ? finding("credentials", "hcloud:token", "ok", "set, encrypted in the stack file (not tried here: run preflight without --config to try it)")
        : token ? finding("credentials", "hcloud:token", "ok", "set")
        : finding("credentials", "hcloud:token", "error", "not set", "a read & write API token of your Hetzner Cloud project: pulumi config set --secret hcloud:token"));
    // The one Gandi credential the config validation let through, and how LiveDNS expects it.
    const gandi = s?.dnsProvider !== "gandi" ? undefined
        : value("selfhost:gandiToken") ? { key: "selfhost:gandiToken", authorization: `Bearer ${value("selfhost:gandiToken")}` }
        : value("selfhost:gandiApiKey") ? { key: "selfhost:gandiApiKey", authorization: `Apikey ${value("selfhost:gandiApiKey")}` } : undefined;
    if (gandi) {
        out.push(config[gandi.key].secret ? finding("credentials", gandi.key, "ok", "set, encrypted")
            : finding("credentials", gandi.key, "warn", "set in clear in the stack file", `pulumi config set --secret ${gandi.key.replace("selfhost:", "")} <it> (and rotate it if the file was shared)`));
    }
    if (!o.offline) {
        if (token && !encrypted("hcloud:token")) {
            const reached = await api("Hetzner Cloud API", "https://api.hetzner.cloud/v1/locations", { Authorization: `Bearer ${token}` }, "create a new token in the Cloud Console (Security → API tokens)");
            out.push(reached);
            if (s && reached.status === "ok") out.push(await costs(s, token));
        }
        if (s && gandi && !encrypted(gandi.key)) out.push(...await gandiZone(s, gandi.authorization));
    }
    if (s && s.dnsProvider !== "none") {
        const resolver = new Resolver({ timeout: 5000, tries: 2 });
        if (o.resolver) resolver.setServers([o.resolver]);
        const ns = await resolver.resolveNs(s.domain).catch((e: NodeJS.ErrnoException) => [`(${e.code})`]);
        const delegated = ns.length > 0 && ns.every(n => PROVIDER_NS[s!.dnsProvider].test(n));
        out.push(delegated ? finding("dns", `delegation of ${s.domain}`, "ok", ns.join(" "))
            : finding("dns", `delegation of ${s.domain}`, "warn", `name servers: ${ns.join(" ") || "none"}`,
                s.dnsProvider === "hetzner" ? "the first pulumi up makes the zone, then its TLS step waits up to 10 minutes for public DNS and, " +
                    "if the domain is not delegated by then, stops naming the name servers: delegate to them at your registrar, then pulumi up again"
                    : "switch the domain to Gandi LiveDNS name servers at Gandi"));
    }
    if (s && s.backup.kind !== "off" && !s.keysKeptOffline) {
        out.push(finding("data", "the keys to your backups", "warn", "only in this stack's state, on this machine",
            "after the first up, keep `pulumi stack output --show-secrets backupPassword` and `pulumi stack output backupRepository` " +
            "and the stack's passphrase somewhere else (a password manager, paper), then: pulumi config set keysKeptOffline true"));
    }
    out.push(finding("mail", "outbound port 25", "warn", "Hetzner blocks it on new accounts: the server can receive mail but not send",
        "after your first paid invoice, ask Hetzner support to unblock port 25 for the project; `npm run check` tests it"));
    return out;
}

/** The Gandi records a first `up` replaces or removes: sets of a name and type the stack declares, and CNAMEs where it writes. */
export function adoption(declared: readonly { name: string; type: string }[], existing: readonly GandiRrset[]): Adopted[] {
    const ours = new Set(declared.map(d => `${d.name} ${d.type}`));
    const names = new Set(declared.map(d => d.name));
    return existing.flatMap((rrset): Adopted[] => ours.has(`${rrset.rrset_name} ${rrset.rrset_type}`) ? [{ rrset, fate: "replaced" }]
        : rrset.rrset_type === "CNAME" && names.has(rrset.rrset_name) ? [{ rrset, fate: "removed" }] : []);
}

interface Adopted { rrset: GandiRrset; fate: "replaced" | "removed" }

interface GandiRrset { rrset_name: string; rrset_type: string; rrset_values: string[] }

/** The zone at Gandi: reachable with the credential, and what the stack will take over in it. */
async function gandiZone(s: Settings, authorization: string): Promise<Finding[]> {
    const name = `Gandi LiveDNS: ${s.domain}`;
    try {
        const r = await fetch(`${s.gandiApiUrl}/domains/${s.domain}/records`, { headers: { Authorization: authorization }, signal: AbortSignal.timeout(10000) });
        if (!r.ok) return [finding("providers", name, "error", `HTTP ${r.status}`, explain(r.status, s.domain, await r.text()))];
        const taken = adoption(recordShapes(s), await r.json() as GandiRrset[]);
        return [finding("providers", name, "ok", `HTTP ${r.status}`),
            ...taken.map(t => finding("gandi zone", `${t.rrset.rrset_name} ${t.rrset.rrset_type}`, "warn", `${t.fate} at the first up: ${t.rrset.rrset_values.join(" ")}`,
                t.fate === "replaced" ? "the stack's set takes its place; nothing to do unless you still need it" : "a CNAME cannot sit beside the stack's records at this name")),
            ...(taken.length ? [] : [finding("gandi zone", "existing records", "ok", "none is replaced or removed")]),
            await gandiSigning(s, authorization)];
    } catch (e) {
        return [finding("providers", name, "error", `unreachable: ${e instanceof Error ? e.message : e}`, "check this machine's network")];
    }
}

/** Whether Gandi signs the zone already (a key-signing key); either way the first `up` leaves it signed. */
async function gandiSigning(s: Settings, authorization: string): Promise<Finding> {
    const name = `${s.domain} at Gandi LiveDNS`;
    const r = await fetch(`${s.gandiApiUrl}/domains/${s.domain}/keys`, { headers: { Authorization: authorization }, signal: AbortSignal.timeout(10000) });
    if (!r.ok) return finding("dnssec", name, "warn", `keys: HTTP ${r.status}`, explain(r.status, s.domain, await r.text()));
    const ksk = (await r.json() as { flags: number; deleted?: boolean }[]).some(k => k.flags === 257 && !k.deleted);
    return finding("dnssec", name, "ok", ksk ? "signed already: the stack adopts its key"
        : "not signed yet: the first up has Gandi sign it; then add its DS (pulumi stack output dnssecDs) at your registrar");
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

/** The month's cost from Hetzner's current price lists (a Storage Box's price may be missing: the finding says so). */
async function costs(s: Settings, token: string): Promise<Finding> {
    const get = async (url: string) => {
        const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10000) });
        if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
        return r.json();
    };
    try {
        const boxes = s.backup.kind === "storagebox" ? await get("https://api.hetzner.com/v1/storage_box_types").catch(() => undefined) : undefined;
        return costFinding(s, await get("https://api.hetzner.cloud/v1/pricing") as CloudPricing, boxes as StorageBoxTypes | undefined);
    } catch (e) {
        return finding("costs", "a month at Hetzner", "warn", `no price list: ${e instanceof Error ? e.message : e}`, "see hetzner.com/cloud and hetzner.com/storage/storage-box");
    }
}

function readConfig(source?: string): StackConfig {
    if (source) {
        const text = fs.readFileSync(source === "-" ? 0 : source, "utf8");
        // Pulumi.<stack>.yaml as it is, or the JSON of `pulumi config --json --show-secrets`.
        return text.trimStart().startsWith("{") ? JSON.parse(text) : fromStackFile(text);
    }
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
