import { strict as assert } from "assert";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { execFileSync } from "child_process";
import { runProgram, ProgramRun } from "./program";
import { baseConfig } from "./fixtures";
import { untxt, DnsRecord } from "../components/dns";

type Row = [string, string, number, string[]];
const rows = (records: DnsRecord[]): Row[] =>
    records.map(r => [r.name, r.type, r.ttl, [...r.values].sort()] as Row).sort((a, b) => `${a[0]}/${a[1]}`.localeCompare(`${b[0]}/${b[1]}`));
const record = (run: ProgramRun, name: string, type: string): DnsRecord => {
    const found = (run.outputs.records as DnsRecord[]).find(r => r.name === name && r.type === type);
    assert.ok(found, `no ${type} record ${name}`);
    return found;
};

describe("DNS", () => {
    it("publishes the DKIM key itself: the TXT record decodes to the key's public key", async () => {
        const run = await runProgram(baseConfig());
        const txt = record(run, "selfhost._domainkey", "TXT").values[0];
        for (const chunk of txt.match(/"[^"]*"/g)!) assert.ok(chunk.length - 2 <= 255, "TXT strings are at most 255 characters");
        const text = untxt(txt);
        assert.match(text, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+$/);
        const published = crypto.createPublicKey({ key: Buffer.from(text.split("p=")[1], "base64"), format: "der", type: "spki" });
        const key = run.one("tls:index/privateKey:PrivateKey", "dkim-selfhost");
        assert.equal(published.export({ format: "pem", type: "spki" }), crypto.createPublicKey(key.state.publicKeyPem).export({ format: "pem", type: "spki" }));
        assert.deepEqual(run.outputs.dkimRecord, record(run, "selfhost._domainkey", "TXT"));
    });

    it("publishes the same record set at Gandi and at Hetzner DNS, equal to the model", async () => {
        const hetzner = await runProgram({ ...baseConfig(), dnsProvider: "hetzner" });
        const gandi = await runProgram({ ...baseConfig(), dnsProvider: "gandi", gandiToken: "pat0123456789" });
        const atHetzner = hetzner.all("hcloud:index/zoneRrset:ZoneRrset").map(r =>
            ({ name: r.inputs.name, type: r.inputs.type, ttl: r.inputs.ttl, values: r.inputs.records.map((x: any) => x.value) }));
        const atGandi = gandi.all("pulumi-nodejs:dynamic/gandi:LiveDnsRrset").map(r =>
            ({ name: r.inputs.name, type: r.inputs.type, ttl: r.inputs.ttl, values: r.inputs.values }));
        assert.ok(atHetzner.length > 20);
        assert.deepEqual(rows(atGandi), rows(atHetzner));
        assert.deepEqual(rows(atHetzner), rows(hetzner.outputs.records));
        assert.equal(hetzner.one("hcloud:index/zone:Zone").inputs.name, "example.org");
        assert.deepEqual(hetzner.outputs.nameservers, ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."]);
        assert.equal(gandi.all("hcloud:index/zone:Zone").length, 0);
    });

    it("with dnsProvider none declares no record and exports a zone file that named-checkzone accepts", async () => {
        const run = await runProgram({ ...baseConfig(), dnsProvider: "none" });
        assert.equal(run.all("hcloud:index/zoneRrset:ZoneRrset").length + run.all("pulumi-nodejs:dynamic/gandi:LiveDnsRrset").length, 0);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-zone-"));
        const file = path.join(dir, "example.org.zone");
        fs.writeFileSync(file, [
            "$ORIGIN example.org.",
            "@ 3600 IN SOA ns1.example.net. hostmaster.example.org. 1 7200 3600 1209600 3600",
            "@ 3600 IN NS ns1.example.net.",
            run.outputs.zoneFile,
        ].join("\n"));
        try {
            execFileSync("named-checkzone", ["-k", "fail", "example.org", file], { stdio: "pipe" });
        } catch (e: any) {
            assert.fail(`named-checkzone rejected the zone file:\n${e.stdout}${e.stderr}${e.message}`);
        } finally {
            fs.rmSync(dir, { recursive: true });
        }
        assert.equal(run.outputs.zoneFile.split("\n").filter((l: string) => / IN /.test(l)).length,
            (run.outputs.records as DnsRecord[]).reduce((n, r) => n + r.values.length, 0));
    });

    it("authorises only this server in SPF, for the domain and for the HELO name", async () => {
        const run = await runProgram(baseConfig());
        assert.equal(untxt(record(run, "@", "TXT").values[0]), "v=spf1 ip4:198.51.100.10 ip6:2001:db8:10::1 -all");
        assert.equal(untxt(record(run, "mail", "TXT").values[0]), "v=spf1 a -all");
        assert.deepEqual(record(run, "@", "MX").values, ["10 mail.example.org."]);
    });

    it("publishes DMARC, TLS-RPT and CAA from the settings", async () => {
        const run = await runProgram({ ...baseConfig(), dmarcPolicy: "reject" });
        assert.equal(untxt(record(run, "_dmarc", "TXT").values[0]),
            "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:hostmaster@example.net");
        assert.equal(untxt(record(run, "_smtp._tls", "TXT").values[0]), "v=TLSRPTv1; rua=mailto:hostmaster@example.net");
        assert.deepEqual(record(run, "@", "CAA").values,
            ['0 issue "letsencrypt.org"', '0 issuewild ";"', '0 iodef "mailto:hostmaster@example.net"']);
        const privateCa = await runProgram({ ...baseConfig(), tlsMode: "private-ca" });
        assert.equal(record(privateCa, "@", "CAA").values[0], '0 issue ";"');
    });

    it("changes the MTA-STS id exactly when the policy changes", async () => {
        const id = async (change: Record<string, unknown>) =>
            untxt(record(await runProgram({ ...baseConfig(), ...change }), "_mta-sts", "TXT").values[0]);
        const base = await id({});
        assert.match(base, /^v=STSv1; id=[0-9a-f]{20}$/);
        assert.equal(await id({ dmarcPolicy: "reject", sshPort: 2200 }), base);
        assert.notEqual(await id({ mtaStsMode: "enforce" }), base);
        assert.notEqual(await id({ hostname: "mx.example.org" }), base);
    });

    it("names every service host with A and AAAA, and SRV records with the catalog's ports", async () => {
        const run = await runProgram(baseConfig());
        for (const name of ["@", "mail", "www", "mta-sts", "autoconfig", "autodiscover", "conference", "upload"]) {
            assert.deepEqual(record(run, name, "A").values, ["198.51.100.10"]);
            assert.deepEqual(record(run, name, "AAAA").values, ["2001:db8:10::1"]);
        }
        const srv = (name: string) => record(run, name, "SRV").values[0];
        assert.equal(srv("_submissions._tcp"), "0 1 465 mail.example.org.");
        assert.equal(srv("_submission._tcp"), "0 1 587 mail.example.org.");
        assert.equal(srv("_imaps._tcp"), "0 1 993 mail.example.org.");
        assert.equal(srv("_imap._tcp"), "0 0 0 .");
        assert.equal(srv("_xmpp-client._tcp"), "0 1 5222 mail.example.org.");
        assert.equal(srv("_xmpps-client._tcp"), "0 1 5223 mail.example.org.");
        assert.equal(srv("_xmpp-server._tcp"), "0 1 5269 mail.example.org.");
        for (const r of run.outputs.records as DnsRecord[]) assert.equal(r.ttl, 3600);
    });

    it("uses the apex as hostname without duplicating records", async () => {
        const run = await runProgram({ ...baseConfig(), hostname: "example.org", dnsTtl: 600 });
        const keys = (run.outputs.records as DnsRecord[]).map(r => `${r.name}/${r.type}`);
        assert.equal(new Set(keys).size, keys.length);
        assert.deepEqual(record(run, "@", "MX").values, ["10 example.org."]);
        assert.equal(run.all("hcloud:index/zoneRrset:ZoneRrset")[0].inputs.ttl, 600);
    });
});
