/**
 * The Gandi LiveDNS provider's create/read/diff/update/delete against an API that answers as Gandi's
 * does (test/livedns-api.ts): adoption of Gandi's default zone, credentials, errors, rate limiting.
 */
import * as assert from "assert";
import * as http from "http";
import { AddressInfo } from "net";
import { LiveDnsProvider, LiveDnsSigningProvider, RrsetArgs, SigningState, sameValues } from "../components/dns/livedns";
import { liveDnsApi, gandiDefaultZone, LiveDnsApi } from "./livedns-api";
import { runProgram } from "./program";
import { baseConfig } from "./fixtures";

const PAT = "pat-0123456789abcdef";
const ZONE = "example.org";

describe("Gandi LiveDNS provider", () => {
    let server: http.Server;
    let api: LiveDnsApi;
    let apiUrl: string;

    beforeEach(async () => {
        api = liveDnsApi({
            zones: { [ZONE]: gandiDefaultZone(), "other.org": [] },
            credentials: { [`Bearer ${PAT}`]: [ZONE], "Apikey legacy-key": [ZONE], "Bearer read-only": [], "Bearer old": [ZONE] },
            expired: ["Bearer old"],
            sign: zone => `${zone.length} 13 2 ${"ab".repeat(32)}`,
        });
        server = http.createServer(api.handler);
        await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
        apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v5/livedns`;
    });
    afterEach(() => new Promise(resolve => server.close(resolve)));

    /** A provider as Pulumi starts it: configured from the stack's config. */
    async function provider(config: Record<string, string> = { "selfhost:gandiToken": PAT }): Promise<LiveDnsProvider> {
        const p = new LiveDnsProvider();
        await p.configure({ config: { get: k => config[k], require: k => config[k] } });
        return p;
    }
    const rrset = (name: string, type: string, ...values: string[]): RrsetArgs => ({ apiUrl, zone: ZONE, name, type, ttl: 300, values });
    const live = (name: string, type: string) => api.zones[ZONE].find(r => r.rrset_name === name && r.rrset_type === type);

    it("adopts Gandi's default zone: replaces a set of the same name and type, removes a CNAME where it writes, touches nothing else", async () => {
        const p = await provider();
        await p.create(rrset("@", "MX", "10 mail.example.org."));
        await p.create(rrset("www", "A", "198.51.100.10"));
        assert.deepEqual(live("@", "MX")!.rrset_values, ["10 mail.example.org."]);
        assert.deepEqual(live("www", "A")!.rrset_values, ["198.51.100.10"]);
        assert.equal(live("www", "CNAME"), undefined, "Gandi's www CNAME cannot sit beside an A");
        for (const kept of ["webmail", "gm1._domainkey"]) assert.ok(live(kept, "CNAME"), `${kept} is not the stack's and stays`);
        assert.ok(live("@", "A"), "a set the stack does not declare stays");
        assert.ok(api.log.every(l => !/^POST/.test(l)), "PUT, never POST: POST answers 409 on an existing set");
    });

    it("reads back what it wrote; a diff against the program is empty however Gandi quotes and dots the values", async () => {
        const p = await provider();
        const dkim = rrset("s._domainkey", "TXT", `"${"a".repeat(255)}" "bcd"`);
        const { id } = await p.create(dkim);
        const read = await p.read(id, dkim);
        assert.equal(read.id, id);
        assert.equal((await p.diff(id, read.props!, dkim)).changes, false);
        // What another API's canonical form would be: one joined string, a name without its dot, upper case.
        assert.ok(sameValues("TXT", [`"${"a".repeat(255)}bcd"`], dkim.values));
        assert.ok(sameValues("MX", ["10 MAIL.example.org"], ["10 mail.example.org."]));
        assert.ok(!sameValues("TXT", ['"v=spf1 -all"'], ['"v=spf1 ~all"']));
        const d = await p.diff(id, dkim, { ...dkim, zone: "other.org" });
        assert.deepEqual([d.replaces, d.deleteBeforeReplace], [["zone"], true]);
    });

    it("updates in place, deletes, and takes a set already gone as deleted", async () => {
        const p = await provider();
        const a = rrset("mail", "A", "198.51.100.10");
        const { id } = await p.create(a);
        await p.update(id, a, { ...a, values: ["198.51.100.11"], ttl: 600 });
        assert.deepEqual([live("mail", "A")!.rrset_values, live("mail", "A")!.rrset_ttl], [["198.51.100.11"], 600]);
        await p.delete(id, a);
        assert.equal(live("mail", "A"), undefined);
        await p.delete(id, a);
        assert.deepEqual(await p.read(id, a), {}, "a set deleted at Gandi reads as gone");
    });

    it("authenticates with a personal access token as Bearer, or a legacy API key as Apikey", async () => {
        await (await provider({ "selfhost:gandiApiKey": "legacy-key" })).create(rrset("legacy", "A", "198.51.100.10"));
        assert.ok(live("legacy", "A"));
    });

    it("says what to do on an expired token, a token without rights, a domain not on LiveDNS, or no credentials, and changes nothing", async () => {
        const before = JSON.stringify(api.zones);
        await assert.rejects((await provider({ "selfhost:gandiToken": "old" })).create(rrset("x", "A", "198.51.100.10")),
            /HTTP 401.*personal access token expires.*pulumi config set --secret gandiToken/);
        await assert.rejects((await provider({ "selfhost:gandiToken": "read-only" })).create(rrset("x", "A", "198.51.100.10")),
            /HTTP 403.*Manage domain name technical configurations/);
        await assert.rejects((await provider()).create({ ...rrset("x", "A", "198.51.100.10"), zone: "elsewhere.org" }),
            /elsewhere\.org: HTTP 404.*not on Gandi LiveDNS/);
        await assert.rejects((await provider({})).create(rrset("x", "A", "198.51.100.10")), /no credentials.*gandiToken/);
        assert.equal(JSON.stringify(api.zones), before);
    });

    it("waits out a 429 as Gandi's Retry-After says, then succeeds", async () => {
        api.throttle(2);
        const started = Date.now();
        await (await provider()).create(rrset("@", "AAAA", "2001:db8:10::1"));
        assert.ok(live("@", "AAAA"));
        assert.ok(Date.now() - started >= 2000, "two 1-second waits");
    });

    it("signs the zone with one key-signing key, adopts one that exists, and leaves the zone signed when the resource goes", async () => {
        const signer = new LiveDnsSigningProvider();
        await signer.configure({ config: { get: k => ({ "selfhost:gandiToken": PAT } as Record<string, string>)[k], require: () => PAT } });
        const made = await signer.create({ apiUrl, zone: ZONE });
        assert.deepEqual(api.keys[ZONE].map(k => k.flags), [257]);
        assert.equal(made.outs!.ds, `11 13 2 ${"ab".repeat(32)}`);
        // A second stack (or a zone signed by hand before) takes the key that is there.
        const adopted = await signer.create({ apiUrl, zone: ZONE });
        assert.equal(adopted.id, made.id);
        assert.equal(api.keys[ZONE].length, 1);
        const read = await signer.read(made.id, made.outs as SigningState);
        assert.deepEqual(read.props, made.outs);
        assert.equal((await signer.diff(made.id, made.outs as SigningState, { apiUrl, zone: ZONE })).changes, false);
        await signer.delete();
        assert.equal(api.keys[ZONE][0].deleted, false, "never unsigned by the stack");
        // Unsigned at Gandi by hand: gone, so the next up signs it again.
        api.keys[ZONE][0].deleted = true;
        assert.deepEqual(await signer.read(made.id, made.outs as SigningState), {});
        // A token without rights on the domain cannot sign it, and says which permission it lacks.
        await assert.rejects((await (async () => { const p = new LiveDnsSigningProvider(); await p.configure({ config: { get: () => "read-only", require: () => "" } }); return p; })())
            .create({ apiUrl, zone: ZONE }), /HTTP 403 .*Manage domain name technical configurations/);
    });

    it("checks a TTL against Gandi's range and refuses an empty set before any call", async () => {
        const { failures } = await (await provider()).check(rrset("a", "A"), { ...rrset("a", "A"), ttl: 60 });
        assert.deepEqual(failures!.map(f => f.property), ["ttl", "values"]);
        assert.equal(api.log.length, 0);
    });
});

describe("Gandi in the program", () => {
    const gandi = { ...baseConfig(), dnsProvider: "gandi", gandiToken: PAT };

    it("declares one record set per (name, type), with no credential among the inputs or in the provider's serialized code", async () => {
        const run = await runProgram(gandi);
        const sets = run.all("pulumi-nodejs:dynamic/gandi:LiveDnsRrset");
        assert.ok(sets.length > 20);
        assert.equal(new Set(sets.map(s => `${s.inputs.name}/${s.inputs.type}`)).size, sets.length);
        assert.ok(sets.every(s => s.inputs.apiUrl === "https://api.gandi.net/v5/livedns" && s.inputs.zone === "example.org"));
        assert.ok(!JSON.stringify(sets.map(s => s.inputs)).includes(PAT), "the token stays in the stack's config");
        assert.ok(sets.every(s => s.options.deleteBeforeReplace));
        const signing = run.one("pulumi-nodejs:dynamic/gandi:LiveDnsSigning");
        assert.equal(signing.inputs.zone, "example.org");
        assert.ok(!JSON.stringify(signing.inputs).includes(PAT));
    });

    it("refuses gandi without a credential, naming the key, the permission, and where gandi:key went", async () => {
        await assert.rejects(runProgram({ ...gandi, gandiToken: "", "gandi:key": "k" }),
            /selfhost:gandiToken is required with dnsProvider gandi.*Manage domain name technical configurations.*gandi:key is no longer read/);
        await assert.rejects(runProgram({ ...gandi, gandiApiKey: "k" }), /selfhost:gandiApiKey and gandiToken are both set/);
        await assert.rejects(runProgram({ ...gandi, gandiApiUrl: "http://api.gandi.net/v5/livedns" }), /selfhost:gandiApiUrl .* must be the https:\/\//);
    });
});
