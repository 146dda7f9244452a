/**
 * Gandi LiveDNS record sets over Gandi's LiveDNS v5 REST API, as a Pulumi dynamic provider: one
 * resource per (name, type), like `ZoneRrset` at Hetzner. It exists because the only Gandi provider on
 * npm authenticates with a legacy API key, which accounts made today cannot create.
 *
 * - Credentials are read from the stack's config when the provider starts (`selfhost:gandiToken`, a
 *   personal access token sent as `Bearer`, or a legacy `selfhost:gandiApiKey` sent as `Apikey`):
 *   never an input, so never in state, diffs or logs. A renewed token needs no change to any record.
 * - Adoption: creating PUTs the set, replacing one of the same name and type that Gandi (its default
 *   zone) or a person made earlier, and removes a CNAME at that name (a CNAME cannot sit beside other
 *   data, RFC 1034 §3.6.2). Nothing else in the zone is touched.
 * - Values compare in canonical form (TXT chunks joined, names without case or trailing dot), so the
 *   values Gandi hands back on `pulumi refresh` diff as equal to the program's.
 *
 * The class is serialized into the state and run by Pulumi in a process of its own: it uses only Node's
 * globals and the functions of this file.
 */
import * as pulumi from "@pulumi/pulumi";
import { HTTPS_URL } from "../../config";

/**
 * The Gandi options' rules (config/index.ts calls this): one credential when the zone is at Gandi,
 * and an https API root. The credentials' values go no further than this presence check.
 */
export function gandiOptions(raw: Record<string, unknown>, dnsProvider: string,
    bad: (key: string, message: string) => void): { gandiApiUrl: string } {
    const [token, key] = [raw.gandiToken, raw.gandiApiKey].map(v => String(v ?? ""));
    // What an Authorization header carries (RFC 7235 token68): a pasted quote or line break is caught here.
    for (const [name, value] of [["gandiToken", token], ["gandiApiKey", key]]) {
        if (value && !/^[A-Za-z0-9._~+\/-]+=*$/.test(value)) bad(name, "is not a token as Gandi issues them (letters, digits and - . _ ~ + /); paste it again, without quotes.");
    }
    if (dnsProvider === "gandi" && !token && !key) {
        bad("gandiToken", "is required with dnsProvider gandi: a Gandi personal access token with the permission " +
            "\"Manage domain name technical configurations\": `pulumi config set --secret gandiToken <token>` " +
            "(or a legacy API key as gandiApiKey)." + (raw.legacyGandiKey ? " gandi:key is no longer read: set the same key as gandiApiKey." : ""));
    }
    if (token && key) bad("gandiApiKey", "and gandiToken are both set: keep one, the token (`pulumi config rm gandiApiKey`).");
    const gandiApiUrl = String(raw.gandiApiUrl);
    if (!HTTPS_URL.test(gandiApiUrl)) bad("gandiApiUrl", `"${gandiApiUrl}" must be the https:// root of the LiveDNS API (the default is Gandi's).`);
    return { gandiApiUrl };
}

export interface RrsetArgs {
    /** The LiveDNS API root (Gandi's, or its sandbox). */
    readonly apiUrl: string;
    readonly zone: string;
    /** Relative name, "@" for the apex. */
    readonly name: string;
    readonly type: string;
    readonly ttl: number;
    /** Presentation form, as in a zone file. */
    readonly values: readonly string[];
}

type Inputs = { [K in Exclude<keyof RrsetArgs, "values">]: pulumi.Input<RrsetArgs[K]> } & { readonly values: pulumi.Input<string>[] };

/** Inputs whose change replaces a set (see `diff`): another API, zone, name or type is another set. */
export const REPLACED_ON = ["apiUrl", "zone", "name", "type"] as const;

/** Gandi's minimum TTL, and its maximum (30 days). */
const TTL = { min: 300, max: 2_592_000 };
/** Rate limiting: Gandi answers 429 over its per-minute budget; back off this many times. */
const RETRIES = 6;

/** A value in a form that compares equal however Gandi returns it. */
export function canonical(type: string, value: string): string {
    const v = value.trim().replace(/\s+/g, " ");
    if (type === "TXT") {
        const chunks = [...v.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map(m => m[1]);
        return chunks.length ? chunks.join("") : v;
    }
    // Names inside MX, SRV, CNAME, NS and TLSA's hex: case-insensitive, names with or without the root's dot.
    return ["MX", "SRV", "CNAME", "NS", "A", "AAAA", "TLSA"].includes(type) ? v.toLowerCase().replace(/\.$/, "") : v;
}

export const sameValues = (type: string, a: readonly string[], b: readonly string[]) =>
    JSON.stringify(a.map(v => canonical(type, v)).sort()) === JSON.stringify(b.map(v => canonical(type, v)).sort());

/** What to do about an answer that is not a success, in Gandi's terms. */
export function explain(status: number, zone: string, body: string): string {
    const said = (() => { try { return JSON.parse(body).message ?? body; } catch { return body; } })();
    const fix =
        status === 401 ? "the credentials were refused: a personal access token expires (Gandi shows its end date); make a new one " +
            "(Gandi: Organizations → Sharing → Personal Access Token, permission \"Manage domain name technical configurations\") and " +
            "`pulumi config set --secret gandiToken <token>`" :
        status === 403 ? `the token may not change ${zone}: give it the permission "Manage domain name technical configurations" for this domain` :
        status === 404 ? `${zone} is not on Gandi LiveDNS: at Gandi, switch the domain's name servers to LiveDNS, or use dnsProvider hetzner` :
        status === 429 ? "Gandi kept rate-limiting the requests; run `pulumi up` again in a minute" :
        "Gandi's API answered with an error";
    return `Gandi LiveDNS, ${zone}: HTTP ${status} (${String(said).slice(0, 200)}): ${fix}`;
}

/** A record name as a path segment; "@" (the apex) stays as Gandi's reference writes it. */
const segment = (name: string) => encodeURIComponent(name).replace(/%40/g, "@");

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** The credential as an Authorization header, from the stack's config (read when a provider starts). */
function authorizationFrom(req: pulumi.dynamic.ConfigureRequest): string | undefined {
    const token = req.config.get("selfhost:gandiToken");
    const key = req.config.get("selfhost:gandiApiKey");
    return token ? `Bearer ${token}` : key ? `Apikey ${key}` : undefined;
}

/** One API call about a zone; 429 is retried after Retry-After (or 1, 2, 4 … s); other failures say what to do. */
async function request(authorization: string | undefined, method: string, a: { apiUrl: string; zone: string }, path: string,
    body?: unknown, ok: number[] = []): Promise<{ status: number; json: any }> {
    if (!authorization) {
        throw new Error("Gandi LiveDNS: no credentials: `pulumi config set --secret gandiToken <personal access token>`");
    }
    for (let attempt = 0; ; attempt++) {
        const r = await fetch(`${a.apiUrl.replace(/\/$/, "")}/domains/${encodeURIComponent(a.zone)}${path}`, {
            method,
            headers: { Authorization: authorization, Accept: "application/json", ...(body ? { "Content-Type": "application/json" } : {}) },
            body: body === undefined ? undefined : JSON.stringify(body),
            signal: AbortSignal.timeout(30_000),
        });
        const text = await r.text();
        if (r.status === 429 && attempt < RETRIES) {
            const after = Number(r.headers.get("retry-after"));
            await sleep(after > 0 ? after * 1000 : 1000 * 2 ** attempt);
            continue;
        }
        if (r.ok || ok.includes(r.status)) return { status: r.status, json: text ? JSON.parse(text) : undefined };
        throw new Error(explain(r.status, a.zone, text));
    }
}

export class LiveDnsProvider implements pulumi.dynamic.ResourceProvider {
    private authorization?: string;

    async configure(req: pulumi.dynamic.ConfigureRequest): Promise<void> {
        this.authorization = authorizationFrom(req);
    }

    private call(method: string, a: RrsetArgs, path: string, body?: unknown, ok: number[] = []) {
        return request(this.authorization, method, a, path, body, ok);
    }

    private put(a: RrsetArgs) {
        return this.call("PUT", a, `/records/${segment(a.name)}/${a.type}`, { rrset_ttl: a.ttl, rrset_values: [...a.values] });
    }

    async check(_olds: RrsetArgs, news: RrsetArgs): Promise<pulumi.dynamic.CheckResult<RrsetArgs>> {
        const failures: pulumi.dynamic.CheckFailure[] = [];
        if (!(news.ttl >= TTL.min && news.ttl <= TTL.max)) failures.push({ property: "ttl", reason: `Gandi takes a TTL from ${TTL.min} to ${TTL.max}; got ${news.ttl}` });
        if (!news.values?.length) failures.push({ property: "values", reason: "a record set needs at least one value" });
        return { inputs: news, failures };
    }

    async diff(_id: string, olds: RrsetArgs, news: RrsetArgs): Promise<pulumi.dynamic.DiffResult> {
        const replaces = REPLACED_ON.filter(k => olds[k] !== news[k]);
        const changed = olds.ttl !== news.ttl || !sameValues(news.type, olds.values ?? [], news.values);
        // The same name and type in the same zone: the old set must go before the new one is written.
        return { changes: replaces.length > 0 || changed, replaces, deleteBeforeReplace: true };
    }

    async create(a: RrsetArgs): Promise<pulumi.dynamic.CreateResult<RrsetArgs>> {
        if (a.type !== "CNAME") {
            const here = await this.call("GET", a, `/records/${segment(a.name)}`, undefined, [404]);
            if (here.status === 200 && (here.json as { rrset_type: string }[]).some(r => r.rrset_type === "CNAME")) {
                await this.call("DELETE", a, `/records/${segment(a.name)}/CNAME`, undefined, [404]);
            }
        }
        await this.put(a);
        return { id: `${a.zone}/${a.name}/${a.type}`, outs: a };
    }

    async read(id: string, props: RrsetArgs): Promise<pulumi.dynamic.ReadResult<RrsetArgs>> {
        const r = await this.call("GET", props, `/records/${segment(props.name)}/${props.type}`, undefined, [404]);
        if (r.status === 404) return {};
        return { id, props: { ...props, ttl: r.json.rrset_ttl, values: r.json.rrset_values } };
    }

    async update(_id: string, _olds: RrsetArgs, news: RrsetArgs): Promise<pulumi.dynamic.UpdateResult<RrsetArgs>> {
        await this.put(news);
        return { outs: news };
    }

    async delete(_id: string, props: RrsetArgs): Promise<void> {
        await this.call("DELETE", props, `/records/${segment(props.name)}/${props.type}`, undefined, [404]);
    }
}

/** One record set at Gandi LiveDNS. */
export class LiveDnsRrset extends pulumi.dynamic.Resource {
    constructor(name: string, args: Inputs, opts?: pulumi.CustomResourceOptions) {
        super(new LiveDnsProvider(), name, { ...args }, opts, "gandi", "LiveDnsRrset");
    }
}

export interface SigningArgs {
    readonly apiUrl: string;
    readonly zone: string;
}

/** A LiveDNS DNSSEC key as the API describes it (the fields used here). */
interface DnssecKey { id: string; flags: number; ds: string; deleted?: boolean }

/** Another API or zone is another zone to sign. */
export const SIGNING_REPLACED_ON = ["apiUrl", "zone"] as const;

export interface SigningState extends SigningArgs {
    /** The key-signing key's id at Gandi. */
    readonly keyId: string;
    /** Its DS record, as Gandi gives it: what the registry must hold for validators to trust the zone. */
    readonly ds: string;
}

/**
 * DNSSEC for the zone: LiveDNS signs a zone that has a key-signing key (flags 257). Creating adopts
 * the zone's key if it has one, else asks Gandi for one. Deleting leaves the zone signed: unsigning
 * while the registry still holds its DS would make the domain disappear for every validating
 * resolver, so that takes the owner, in order (the DS first, then Gandi's DNSSEC page, a day later).
 */
export class LiveDnsSigningProvider implements pulumi.dynamic.ResourceProvider {
    private authorization?: string;

    async configure(req: pulumi.dynamic.ConfigureRequest): Promise<void> {
        this.authorization = authorizationFrom(req);
    }

    private async keySigningKey(a: SigningArgs): Promise<DnssecKey | undefined> {
        const keys = (await request(this.authorization, "GET", a, "/keys")).json as DnssecKey[];
        return keys.find(k => k.flags === 257 && !k.deleted);
    }

    async check(_olds: SigningArgs, news: SigningArgs): Promise<pulumi.dynamic.CheckResult<SigningArgs>> {
        return { inputs: news };
    }

    async diff(_id: string, olds: SigningState, news: SigningArgs): Promise<pulumi.dynamic.DiffResult> {
        const replaces = SIGNING_REPLACED_ON.filter(k => olds[k] !== news[k]);
        return { changes: replaces.length > 0, replaces };
    }

    async create(a: SigningArgs): Promise<pulumi.dynamic.CreateResult<SigningState>> {
        let key = await this.keySigningKey(a);
        if (!key) {
            await request(this.authorization, "POST", a, "/keys", { flags: 257 });
            key = await this.keySigningKey(a);
        }
        if (!key) throw new Error(`Gandi LiveDNS, ${a.zone}: a key-signing key was asked for, but the zone lists none`);
        return { id: `${a.zone}/keys/${key.id}`, outs: { apiUrl: a.apiUrl, zone: a.zone, keyId: key.id, ds: key.ds } };
    }

    async read(id: string, props: SigningState): Promise<pulumi.dynamic.ReadResult<SigningState>> {
        const r = await request(this.authorization, "GET", props, `/keys/${encodeURIComponent(props.keyId)}`, undefined, [404]);
        const key = r.json as DnssecKey | undefined;
        // Deleted at Gandi (the zone is no longer signed): gone, so the next `up` signs it again.
        if (r.status === 404 || !key || key.deleted) return {};
        return { id, props: { ...props, ds: key.ds } };
    }

    async delete(): Promise<void> {
        // Left signed on purpose (see the class comment).
    }
}

/** The zone signed by Gandi LiveDNS; `ds` is the record the registry needs. */
export class LiveDnsSigning extends pulumi.dynamic.Resource {
    declare readonly ds: pulumi.Output<string>;

    constructor(name: string, args: { [K in keyof SigningArgs]: pulumi.Input<SigningArgs[K]> }, opts?: pulumi.CustomResourceOptions) {
        super(new LiveDnsSigningProvider(), name, { ...args, keyId: undefined, ds: undefined }, opts, "gandi", "LiveDnsSigning");
    }
}
