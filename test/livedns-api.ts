/**
 * A Gandi LiveDNS v5 API for tests, written from Gandi's published API reference: the routes the
 * provider uses and their answers — `Authorization` checked (Bearer for a personal access token,
 * Apikey for a legacy key; 401 for an unknown or expired one, 403 for a token without rights on the
 * domain), 404 for a domain not on LiveDNS, 409 on POSTing a set that exists or adding data beside a
 * CNAME, PUT creating or replacing a set, 429 when told to throttle. A domain starts with the records
 * Gandi puts in every new LiveDNS zone, unsigned; POSTing a key to `/keys` signs it (DNSSEC) and the
 * key's `ds` is its DS record.
 *
 * Run as a program (`node -r ts-node/register/transpile-only test/livedns-api.ts CONFIG.json`) it
 * serves HTTPS and writes each change of a zone to a zone file, then runs a reload command: the
 * local target's authoritative DNS then serves what the provider wrote.
 */
import * as fs from "fs";
import * as http from "http";
import * as https from "https";
import { spawnSync } from "child_process";

export interface Rrset { rrset_name: string; rrset_type: string; rrset_ttl: number; rrset_values: string[] }

/** What Gandi puts in a new LiveDNS zone: parking and Gandi Mail. */
export const gandiDefaultZone = (): Rrset[] => [
    ["@", "A", ["217.70.184.38"]],
    ["@", "MX", ["10 spool.mail.gandi.net.", "50 fb.mail.gandi.net."]],
    ["@", "TXT", ["\"v=spf1 include:_mailcust.gandi.net ?all\""]],
    ["_imap._tcp", "SRV", ["0 0 0 ."]],
    ["_imaps._tcp", "SRV", ["0 1 993 mail.gandi.net."]],
    ["_pop3._tcp", "SRV", ["0 0 0 ."]],
    ["_pop3s._tcp", "SRV", ["10 1 995 mail.gandi.net."]],
    ["_submission._tcp", "SRV", ["0 1 465 mail.gandi.net."]],
    ["gm1._domainkey", "CNAME", ["gm1.gandimail.net."]],
    ["gm2._domainkey", "CNAME", ["gm2.gandimail.net."]],
    ["gm3._domainkey", "CNAME", ["gm3.gandimail.net."]],
    ["webmail", "CNAME", ["webmail.gandi.net."]],
    ["www", "CNAME", ["webredir.vip.gandi.net."]],
].map(([n, t, v]) => ({ rrset_name: n as string, rrset_type: t as string, rrset_ttl: 10800, rrset_values: v as string[] }));

export interface LiveDnsOptions {
    /** Zones on LiveDNS: name → record sets. */
    readonly zones: Record<string, Rrset[]>;
    /** Accepted credentials, as the whole Authorization header → the zones it may change. */
    readonly credentials: Record<string, readonly string[]>;
    /** Credentials that were valid once: 401 like an unknown one. */
    readonly expired?: readonly string[];
    /** Called after each change of a zone. */
    readonly onChange?: (zone: string, rrsets: Rrset[]) => void;
    /** Signs a zone (its first key-signing key); returns the DS record's data. */
    readonly sign: (zone: string) => string;
}

/** A DNSSEC key, with the fields Gandi's reference lists. */
export interface DnssecKey { id: string; fqdn: string; flags: number; algorithm: number; algorithm_name: string; ds: string; status: string; deleted: boolean }

export interface LiveDnsApi {
    readonly handler: http.RequestListener;
    readonly zones: Record<string, Rrset[]>;
    /** Each zone's DNSSEC keys. */
    readonly keys: Record<string, DnssecKey[]>;
    /** Answer the next `n` requests with 429. */
    throttle(n: number): void;
    /** Every request, as "METHOD path → status". */
    readonly log: string[];
}

const ERRORS: Record<number, [string, string]> = {
    401: ["HTTPUnauthorized", "The server could not verify that you are authorized to access the URL requested."],
    403: ["HTTPForbidden", "Access was denied to this resource."],
    404: ["HTTPNotFound", "The resource could not be found."],
    409: ["HTTPConflict", "This record already exists"],
    429: ["HTTPTooManyRequests", "Too many requests"],
};

export function liveDnsApi(o: LiveDnsOptions): LiveDnsApi {
    const zones = o.zones;
    const keys: Record<string, DnssecKey[]> = {};
    let throttled = 0;
    const log: string[] = [];
    const handler: http.RequestListener = (req, res) => {
        let body = "";
        req.on("data", c => { body += c; });
        req.on("end", () => {
            const answer = (status: number, json?: unknown, headers: Record<string, string> = {}) => {
                log.push(`${req.method} ${req.url} → ${status}`);
                const [object, message] = ERRORS[status] ?? [];
                const payload = json ?? (object ? { code: status, message, object, cause: object.replace("HTTP", "") } : undefined);
                res.writeHead(status, { ...(payload ? { "Content-Type": "application/json" } : {}), ...headers });
                res.end(payload ? JSON.stringify(payload) : undefined);
            };
            if (throttled > 0) { throttled--; return answer(429, undefined, { "Retry-After": "1" }); }
            const auth = req.headers.authorization ?? "";
            const allowed = o.credentials[auth];
            if (!allowed || o.expired?.includes(auth)) return answer(401);
            const path = (req.url ?? "").split("?")[0];
            const k = /^\/v5\/livedns\/domains\/([^/]+)\/keys(?:\/([^/]+))?$/.exec(path);
            if (k) {
                const [zone, id] = [k[1], k[2] && decodeURIComponent(k[2])];
                if (!zones[zone]) return answer(404);
                if (req.method !== "GET" && !allowed.includes(zone)) return answer(403);
                const zoneKeys = keys[zone] ??= [];
                if (id) {
                    const key = zoneKeys.find(x => x.id === id);
                    if (!key) return answer(404);
                    if (req.method === "GET") return answer(200, key);
                    if (req.method === "DELETE") { key.deleted = true; return answer(204); }
                    return answer(405);
                }
                if (req.method === "GET") return answer(200, zoneKeys);
                if (req.method !== "POST") return answer(405);
                const flags = Number(JSON.parse(body || "{}").flags);
                if (![256, 257].includes(flags)) return answer(400);
                const key: DnssecKey = { id: `key-${zoneKeys.length + 1}`, fqdn: zone, flags, algorithm: 13, algorithm_name: "ECDSAP256SHA256",
                    ds: o.sign(zone), status: "active", deleted: false };
                zoneKeys.push(key);
                return answer(201, { message: "Domain key created" }, { Location: `/v5/livedns/domains/${zone}/keys/${key.id}` });
            }
            const m = /^\/v5\/livedns\/domains\/([^/]+)(?:\/records(?:\/([^/]+)(?:\/([A-Z]+))?)?)?$/.exec(path);
            if (!m) return answer(404);
            const [zone, name, type] = [m[1], m[2] && decodeURIComponent(m[2]), m[3]];
            const sets = zones[zone];
            if (!sets) return answer(404);
            if (req.method !== "GET" && !allowed.includes(zone)) return answer(403);
            const at = (n: string, t?: string) => sets.filter(r => r.rrset_name === n && (!t || r.rrset_type === t));
            const changed = () => o.onChange?.(zone, sets);
            const write = (rrset: Rrset) => {
                const i = sets.findIndex(r => r.rrset_name === rrset.rrset_name && r.rrset_type === rrset.rrset_type);
                if (i >= 0) sets[i] = rrset; else sets.push(rrset);
                changed();
            };
            const input = () => JSON.parse(body || "{}") as Partial<Rrset>;
            if (!m[0].includes("/records")) return req.method === "GET" ? answer(200, { fqdn: zone, automatic_snapshots: true }) : answer(405);
            if (!name) return req.method === "GET" ? answer(200, sets) : answer(405);
            if (!type) {
                if (req.method === "GET") return at(name).length ? answer(200, at(name)) : answer(404);
                if (req.method !== "POST") return answer(405);
                const i = input();
                if (!i.rrset_type || !i.rrset_values?.length) return answer(400);
                if (at(name, i.rrset_type).length) return answer(409);
                if (at(name).some(r => (r.rrset_type === "CNAME") !== (i.rrset_type === "CNAME"))) return answer(409, { code: 409, message: "A CNAME cannot coexist with other records", object: "HTTPConflict" });
                write({ rrset_name: name, rrset_type: i.rrset_type, rrset_ttl: i.rrset_ttl ?? 10800, rrset_values: i.rrset_values });
                return answer(201, { message: "DNS Record Created" });
            }
            if (req.method === "GET") return at(name, type).length ? answer(200, at(name, type)[0]) : answer(404);
            if (req.method === "DELETE") {
                if (!at(name, type).length) return answer(404);
                sets.splice(sets.indexOf(at(name, type)[0]), 1);
                changed();
                return answer(204);
            }
            if (req.method === "PUT") {
                const i = input();
                if (!i.rrset_values?.length) return answer(400);
                if (at(name).some(r => r.rrset_type !== type && (r.rrset_type === "CNAME" || type === "CNAME"))) {
                    return answer(409, { code: 409, message: "A CNAME cannot coexist with other records", object: "HTTPConflict" });
                }
                write({ rrset_name: name, rrset_type: type, rrset_ttl: i.rrset_ttl ?? 10800, rrset_values: i.rrset_values });
                return answer(201, { message: "DNS Record Created" });
            }
            return answer(405);
        });
    };
    return { handler, zones, keys, log, throttle: n => { throttled = n; } };
}

/** A zone's record sets as zone-file lines. */
export const zoneLines = (rrsets: Rrset[]) =>
    rrsets.flatMap(r => r.rrset_values.map(v => `${r.rrset_name} ${r.rrset_ttl} IN ${r.rrset_type} ${v}`));

/**
 * The program: serve HTTPS; on each change write `header` + the zone to `zoneFile`, then run `reload`;
 * to sign the zone run `sign`, which prints the DS record's data.
 */
interface ServeConfig {
    listen: { host: string; port: number }; cert: string; key: string;
    zone: string; zoneFile: string; header: string; reload: string; sign: string;
    credentials: Record<string, string[]>; expired?: string[];
}

if (require.main === module) {
    const c: ServeConfig = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    const publish = (rrsets: Rrset[]) => {
        fs.writeFileSync(c.zoneFile, [c.header, ...zoneLines(rrsets), ""].join("\n"));
        const r = spawnSync("sh", ["-c", c.reload], { encoding: "utf8" });
        if (r.status !== 0) console.error(`reload failed: ${r.stderr}`);
    };
    const api = liveDnsApi({
        zones: { [c.zone]: gandiDefaultZone() }, credentials: c.credentials, expired: c.expired,
        onChange: (_zone, rrsets) => publish(rrsets),
        sign: () => {
            const r = spawnSync("sh", ["-c", c.sign], { encoding: "utf8" });
            if (r.status !== 0) throw new Error(`signing failed: ${r.stderr}`);
            return r.stdout.trim();
        },
    });
    publish(api.zones[c.zone]);
    https.createServer({ cert: fs.readFileSync(c.cert), key: fs.readFileSync(c.key) }, (req, res) => {
        api.handler(req, res);
        res.on("finish", () => console.log(api.log[api.log.length - 1]));
    }).listen(c.listen.port, c.listen.host, () => console.log(`LiveDNS API on ${c.listen.host}:${c.listen.port}`));
}
