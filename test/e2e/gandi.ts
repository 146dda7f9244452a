/**
 * Gandi in the simulated internet: the LiveDNS API (test/livedns-api.ts) on the "inet" host, its zone
 * starting with Gandi's defaults and served by the world's knot. The program's record sets are
 * published through the provider's own serialized code with a personal access token — after
 * `npm run preflight` has listed what they take over — and every later check resolves what it wrote.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { ProgramRun, unsecret } from "../program";
import { NET, apiCertificate } from "./world";
import { daemon, sh, waitFor, Cleanup } from "./sh";
import { Finding } from "../../check/findings";
import { tlsaValues } from "../../components/tls";
import { Checks } from "./checks";

const ROOT = path.join(__dirname, "..", "..");
const PORT = 8443;
export const GANDI_API_URL = `https://${NET.inet.ipv4}:${PORT}/v5/livedns`;

/** A personal access token for this run only. */
export const gandiToken = () => crypto.randomBytes(20).toString("hex");

export interface Gandi {
    /** The API's trust anchor (PEM file), as the owner's machine trusts Gandi's real CA. */
    readonly ca: string;
    readonly log: string;
}

/** Starts the API; each change is written to `zoneFile` (after `header`) and knot reloads it. */
export async function startGandi(dir: string, o: { domain: string; header: string; zoneFile: string; reload: string; sign: string; token: string },
    cleanup: Cleanup): Promise<Gandi> {
    fs.mkdirSync(dir, { recursive: true });
    apiCertificate(dir, "e2e LiveDNS API CA");
    const config = path.join(dir, "livedns.json");
    fs.writeFileSync(config, JSON.stringify({
        listen: { host: NET.inet.ipv4, port: PORT }, cert: path.join(dir, "api.pem"), key: path.join(dir, "api.key"),
        zone: o.domain, zoneFile: o.zoneFile, header: o.header, reload: o.reload, sign: o.sign,
        credentials: { [`Bearer ${o.token}`]: [o.domain] },
    }));
    const log = path.join(dir, "livedns.log");
    const api = daemon([process.execPath, "-r", "ts-node/register/transpile-only", path.join(ROOT, "test", "livedns-api.ts"), config], log, { ns: NET.inet.ns });
    cleanup.add("LiveDNS API", () => api.pid && sh(`kill ${api.pid}`));
    const ca = path.join(dir, "api-ca.pem");
    await waitFor("the LiveDNS API to answer", 60, () =>
        sh(`curl -sf --cacert ${ca} -H 'Authorization: Bearer ${o.token}' ${GANDI_API_URL}/domains/${o.domain}`, { ns: NET.client.ns }).code === 0);
    return { ca, log };
}

/** Node with the API's CA trusted, as on a machine whose CA store has Gandi's. */
function node(args: string[], gandi: Gandi, input: string) {
    return spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", ...args], {
        cwd: ROOT, input, encoding: "utf8", timeout: 300_000, env: { ...process.env, NODE_EXTRA_CA_CERTS: gandi.ca },
    });
}

/** `npm run preflight` against the stack's config (as `pulumi config --json --show-secrets` prints it). */
export function preflightAgainst(gandi: Gandi, config: Record<string, unknown>): Finding[] {
    const stack = Object.fromEntries(Object.entries(config).map(([k, v]) =>
        [`selfhost:${k}`, { value: typeof v === "string" ? v : JSON.stringify(v), secret: k === "gandiToken" }]));
    const r = node([path.join(ROOT, "check", "preflight.ts"), "--config", "-", "--json", "--resolver", NET.inet.ipv4], gandi, JSON.stringify(stack));
    if (!r.stdout.trim().startsWith("[")) throw new Error(`preflight: ${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout);
}

export interface Published { name: string; id: string; refreshed: boolean; changesAfterRefresh: boolean; outs: Record<string, unknown> }

const RRSET = "pulumi-nodejs:dynamic/gandi:LiveDnsRrset";
/** The sets whose values the server gives (port 25's TLSA, from the tls step's output): published once it ran. */
const fromServer = (r: { inputs: Record<string, unknown> }) => r.inputs.type === "TLSA";

/** Creates dynamic resources as Pulumi's dynamic-provider host would, then refreshes each. */
function play(gandi: Gandi, config: Record<string, string>, resources: { name: string; inputs: unknown }[]): Published[] {
    const r = node([path.join(ROOT, "test", "e2e", "play-dynamic.ts")], gandi, JSON.stringify({ config, resources }));
    if (r.status !== 0) throw new Error(`publishing at Gandi failed: ${r.stderr}${r.stdout}`);
    return r.stdout.trim().split("\n").map(l => JSON.parse(l));
}

/** The program's record sets that wait for nothing on the server, as the first `up` writes them before the server exists. */
export const publish = (gandi: Gandi, program: ProgramRun, config: Record<string, string>): Published[] =>
    play(gandi, config, program.all(RRSET).filter(r => !fromServer(r)).map(r => ({ name: r.name, inputs: unsecret(r.inputs) })));

/** The record sets of `before` that `after` no longer declares, deleted as the engine deletes them. */
export function withdraw(gandi: Gandi, before: ProgramRun, after: ProgramRun, config: Record<string, string>): string[] {
    const kept = new Set(after.all(RRSET).map(r => r.name));
    const gone = before.all(RRSET).filter(r => !kept.has(r.name));
    if (gone.length) play(gandi, config, gone.map(r => ({ name: r.name, inputs: unsecret(r.inputs), delete: true })));
    return gone.map(r => `${r.inputs.name} ${r.inputs.type}`);
}

/** The TLSA data the tls step printed, parsed by the program's own function. */
export const printedTlsa = (tlsStepOutput: string) => tlsaValues(tlsStepOutput);

/** Port 25's TLSA set, as the engine writes it once the tls step has run (or a wrong one, for a fault). Returns the values. */
export function publishTlsa(gandi: Gandi, program: ProgramRun, config: Record<string, string>, values: string[], owner = "_25._tcp.mail"): string[] {
    const set = program.all(RRSET).find(r => fromServer(r) && r.inputs.name === owner)!;
    play(gandi, config, [{ name: set.name, inputs: { ...unsecret<Record<string, unknown>>(set.inputs), values } }]);
    return values;
}

/** The provider's configuration, as the stack's config holds it. */
export const gandiConfig = (config: Record<string, unknown>, token: string) =>
    ({ "selfhost:gandiToken": token, "selfhost:gandiApiUrl": String(config.gandiApiUrl) });

/** Preflight's list, the publishing itself, what the zone holds afterwards; DNSSEC turned on, and its DS handed to the registry. */
export async function gandiChecks(c: { checks: Checks; gandi: Gandi; program: ProgramRun; config: Record<string, unknown>; token: string;
    delegateSigned: (ds: string) => Promise<void> }): Promise<void> {
    const { checks } = c;
    const domain = String(c.config.domain);
    const dig = (name: string, type: string) => sh(`kdig +short @${NET.inet.ipv4} ${name} ${type}`, { ns: NET.client.ns }).stdout.trim();
    checks.check("preflight lists exactly what the first up takes over at Gandi: its parking and mail sets, its www and webmail CNAMEs", () => {
        const listed = preflightAgainst(c.gandi, c.config).filter(f => f.area === "gandi zone").map(f => `${f.detail.split(" ")[0]} ${f.name}`).sort();
        const expected = ["removed webmail CNAME", "removed www CNAME", "replaced @ A", "replaced @ MX", "replaced @ TXT", "replaced _imap._tcp SRV", "replaced _imaps._tcp SRV",
            "replaced _pop3._tcp SRV", "replaced _pop3s._tcp SRV", "replaced _submission._tcp SRV"];
        return JSON.stringify(listed) === JSON.stringify(expected) ? undefined : listed.join("; ");
    });
    let published: Published[] = [];
    checks.check("every record set is written through the provider's serialized code with the personal access token (no 409 on Gandi's defaults)", () => {
        published = publish(c.gandi, c.program, gandiConfig(c.config, c.token));
        const declared = c.program.all(RRSET).filter(r => !fromServer(r)).length;
        return published.length === declared && declared > 20 ? undefined : `${published.length} of ${declared}`;
    });
    checks.check("a refresh reads each set back, and the next preview would show no change", () => {
        const off = published.filter(p => !p.refreshed || p.changesAfterRefresh).map(p => p.name);
        return published.length && !off.length ? undefined : `differ: ${off.join(", ") || "nothing published"}`;
    });
    checks.check("the world's DNS serves what was written; Gandi's other records stay; its www and webmail CNAMEs gave way", () => {
        const got = { mx: dig(domain, "MX"), www: dig(`www.${domain}`, "CNAME"), wwwA: dig(`www.${domain}`, "A"),
            webmail: dig(`webmail.${domain}`, "CNAME"), webmailA: dig(`webmail.${domain}`, "A"), gm1: dig(`gm1._domainkey.${domain}`, "CNAME"), acme: dig(`acme.${domain}`, "A") };
        return got.mx === `10 mail.${domain}.` && got.www === "" && got.wwwA && got.webmail === "" && got.webmailA &&
            got.gm1 === "gm1.gandimail.net." && got.acme === NET.inet.ipv4 ? undefined : JSON.stringify(got);
    });
    await dnssecChecks(c, dig);
}

const SIGNING = "pulumi-nodejs:dynamic/gandi:LiveDnsSigning";

/** DNSSEC: the zone starts unsigned, as a new LiveDNS zone does; the stack's signing resource turns it on; its DS goes to the registry. */
async function dnssecChecks(c: Parameters<typeof gandiChecks>[0], dig: (name: string, type: string) => string): Promise<void> {
    const { checks } = c;
    const domain = String(c.config.domain);
    const unsignedBefore = dig(domain, "DNSKEY") === "";
    const signing = c.program.one(SIGNING);
    const [played] = play(c.gandi, gandiConfig(c.config, c.token), [{ name: signing.name, inputs: unsecret(signing.inputs) }]);
    const ds = String(played.outs.ds ?? "");
    checks.check("the stack turns DNSSEC on at Gandi: the zone, unsigned before, is signed, and its DS is the stack's output", () =>
        unsignedBefore && dig(domain, "DNSKEY") && /^\d+ 13 2 [0-9A-Fa-f]{64}$/.test(ds) && played.refreshed && !played.changesAfterRefresh
            ? undefined : `unsigned before: ${unsignedBefore}; DNSKEY now: ${dig(domain, "DNSKEY") || "none"}; ds: ${ds}; ${JSON.stringify(played)}`);
    // The owner adds the DS at the registrar, as README says; validation is then whole (the server's report and DANE prove it).
    if (ds) await c.delegateSigned(ds);
    checks.check("with the owner's DS in the registry, the root delegates the test domain securely", () =>
        dig(domain, "DS").toLowerCase().replace(/\s+/g, "") === ds.toLowerCase().replace(/\s+/g, "") ? undefined : `root says: ${dig(domain, "DS")}`);
}
