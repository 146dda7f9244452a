import { strict as assert } from "assert";
import * as net from "net";
import * as fs from "fs";
import * as path from "path";
import * as os from "os";
import { execFileSync } from "child_process";
import { runProgram, unsecret, scriptOf, stepFiles } from "./program";
import { STATUS_COMMAND } from "../components/status";
import { baseConfig, settings } from "./fixtures";
import { targetOf } from "../check";
import { render, finding } from "../check/findings";
import { relayFindings, port25Blame, stunBinding, Target } from "../check/probes";
import * as dgram from "dgram";
import { preflight, adoption, fromStackFile } from "../check/preflight";
import { costFinding, CloudPricing } from "../check/costs";
import { recordShapes } from "../components/dns/records";
import { gandiDefaultZone } from "./livedns-api";

/** A stack config as `pulumi config --json` prints it. */
const stackConfig = (config: Record<string, unknown>, extra: Record<string, string> = {}) => ({
    ...Object.fromEntries(Object.entries(config).map(([k, v]) => [`selfhost:${k}`, { value: typeof v === "string" ? v : JSON.stringify(v) }])),
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, { value: v, secret: true }])),
});

/** A one-connection SMTP server on a free loopback port (no root needed) that answers RCPT with `rcptReply`. */
function fakeSmtp(rcptReply: string): Promise<net.Server> {
    const server = net.createServer(socket => {
        socket.write("220 fake ESMTP\r\n");
        socket.on("data", d => {
            const line = d.toString();
            if (/^EHLO/i.test(line)) socket.write("250-fake\r\n250 8BITMIME\r\n");
            else if (/^MAIL/i.test(line)) socket.write("250 2.1.0 Ok\r\n");
            else if (/^RCPT/i.test(line)) socket.write(`${rcptReply}\r\n`);
            else if (/^QUIT/i.test(line)) { socket.write("221 Bye\r\n"); socket.end(); }
        });
    });
    return new Promise(resolve => server.listen(0, "127.0.0.1", () => resolve(server)));
}

describe("check", () => {
    it("takes everything it checks from the stack's outputs", async () => {
        const run = await runProgram({ ...baseConfig(), sshPort: 2345, adminUser: "carol" });
        const t = targetOf(run.outputs);
        assert.deepEqual([t.domain, t.hostname, t.ipv4, t.sshPort, t.adminUser], ["example.org", "mail.example.org", "198.51.100.10", 2345, "carol"]);
        assert.equal(t.records, run.outputs.records);
        assert.match(t.knownHosts!, /^\[198\.51\.100\.10\]:2345,\[mail\.example\.org\]:2345 ssh-ed25519 /, "the server's report is fetched from the pinned host only");
        assert.throws(() => targetOf({ hostname: "x" }), /not this stack's outputs/);
    });

    it("reports by area, with a fix under everything that is not ok", () => {
        const text = render([
            finding("dns", "MX example.org", "ok", "10 mail.example.org.", "never shown"),
            finding("dns", "DKIM s._domainkey.example.org", "error", "missing", "pulumi up"),
            finding("services", "dovecot", "warn", "activating", "journalctl -u dovecot"),
        ]);
        assert.match(text, /^dns\n {2}ok {4}MX example\.org/m);
        assert.match(text, /error DKIM s\._domainkey\.example\.org +missing\n +fix: pulumi up/);
        assert.doesNotMatch(text, /never shown/);
        assert.match(text, /^check: 1 ok, 1 warn, 1 error$/m);
    });

    it("tells port 25 blocked on this network from 25 closed on the server", () => {
        assert.equal(port25Blame(true, "mx.example.net"), undefined, "another server answers: 25 is the server's to fix");
        const blocked = port25Blame(false, "mx.example.net")!;
        assert.equal(blocked.status, "warn");
        assert.match(blocked.detail, /neither the server nor mx\.example\.net answers on 25/);
        assert.match(blocked.hint, /your network blocks outbound port 25/);
    });

    it("calls a server that relays for strangers an open relay, and one that refuses it fine", async () => {
        const t = { ipv4: "127.0.0.1" } as Target;
        for (const [reply, status] of [["554 5.7.1 Relay access denied", "ok"], ["250 2.1.5 Ok", "error"]]) {
            const server = await fakeSmtp(reply);
            try {
                const [f] = await relayFindings(t, (server.address() as net.AddressInfo).port);
                assert.equal(f.status, status, f.detail);
                if (status === "error") assert.match(f.hint, /reject_unauth_destination/);
            } finally {
                await new Promise(r => server.close(r));
            }
        }
    });

    it("installs the server's own report with every unit the stack runs, and a daily timer that mails changes", async () => {
        const run = await runProgram({ ...baseConfig(), checkSmtpHost: "mx.example.net" });
        const step = run.one("command:remote:Command", "status");
        assert.ok(step.dependencies.some(d => d.endsWith("Command::xmpp")), "the report comes last, when everything it checks exists");
        const script = scriptOf(unsecret(step.inputs.create));
        assert.match(script, /for unit in ssh nftables fail2ban unattended-upgrades unbound nginx postfix dovecot redis-server selfhost-mta-sts\.socket rspamd prosody coturn selfhost-webmail\.socket; do/);
        assert.match(script, /exec 3<>\/dev\/tcp\/mx\.example\.net\/25/);
        assert.match(script, /check bash -n \/usr\/local\/sbin\/selfhost-status/);
        assert.match(script, /ExecStart=\/usr\/local\/sbin\/selfhost-status --mail/);
        assert.match(script, /systemctl enable --quiet --now selfhost-status\.timer/);
        assert.equal(run.outputs.domain, "example.org");
    });

    it("the server's report: blocklists answering, DNSSEC's four states and port 25's key against the TLSA, each with its fix", async () => {
        const run = await runProgram({ ...baseConfig(), dnsProvider: "gandi", gandiToken: "pat0123456789", dnsbls: ["zen.spamhaus.org"] });
        const script = stepFiles(run, "status").get(STATUS_COMMAND)!.content;
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-status-"));
        try {
            const at = (f: string) => path.join(dir, f);
            // dig answers from the environment; timeout stands in for the SMTP handshake and prints port 25's certificate.
            fs.writeFileSync(at("dig"), '#!/bin/bash\ncase "$*" in *SOA*) echo "$DIG_SOA";; *DNSKEY*) echo -n "$DIG_DNSKEY";; *TLSA*) echo -n "$DIG_TLSA";; *2.0.0.127*) echo -n "$DIG_BL";; esac\n', { mode: 0o755 });
            fs.writeFileSync(at("timeout"), `#!/bin/sh\ncat ${at("cert.pem")} 2>/dev/null\n`, { mode: 0o755 });
            execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=mail", "-keyout", at("key.pem"), "-out", at("cert.pem")], { stdio: "ignore" });
            const spki = execFileSync("bash", ["-c", `openssl pkey -in ${at("key.pem")} -pubout -outform DER | sha256sum | cut -d' ' -f1`], { encoding: "utf8" }).trim();
            const functions = script.slice(0, script.indexOf("\nreport() {"));
            const finding = (fn: string, env: Record<string, string>) => {
                const out = execFileSync("bash", ["-c", `${functions}\n${fn}`], { encoding: "utf8", env: { PATH: `${dir}:/usr/bin:/bin`, ...env } });
                const [status, area, name, detail, hint] = out.trim().split("\t");
                return { status, area, name, detail, hint };
            };
            const bl = (answer: string) => finding("blocklists", { DIG_BL: answer });
            assert.equal(bl("127.0.0.2\n127.0.0.10\n").status, "ok");
            assert.deepEqual([bl("127.255.255.254").status, bl("127.255.255.254").name], ["error", "zen.spamhaus.org from the server"]);
            assert.match(bl("127.255.255.254").hint, /own resolver/);
            assert.equal(bl("").status, "warn");

            const soa = (flags: string, status = "NOERROR") => `;; ->>HEADER<<- opcode: QUERY, status: ${status}, id: 1\n;; flags: ${flags}; QUERY: 1, ANSWER: 2`;
            const dnssec = (env: Record<string, string>) => finding("dnssec", env);
            assert.equal(dnssec({ DIG_SOA: soa("qr rd ra ad") }).status, "ok");
            const noDs = dnssec({ DIG_SOA: soa("qr rd ra"), DIG_DNSKEY: "257 3 13 abc" });
            assert.deepEqual([noDs.status, noDs.detail], ["warn", "example.org is signed, but has no DS at its registry: validators treat it as unsigned"]);
            assert.match(noDs.hint, /pulumi stack output dnssecDs/, "the fix fits the DNS host (Gandi signs; the DS is the stack's output)");
            assert.match(dnssec({ DIG_SOA: soa("qr rd ra") }).detail, /not signed: port 25's TLSA record protects nothing/);
            assert.equal(dnssec({ DIG_SOA: soa("qr rd ra", "SERVFAIL") }).status, "error");

            const named = finding("dane", { DIG_TLSA: `3 1 1 ${spki.slice(0, 56).toUpperCase()} ${spki.slice(56).toUpperCase()}\n3 1 1 ${"ab".repeat(32)}\n` });
            assert.deepEqual([named.status, named.detail], ["ok", "port 25's key is named by _25._tcp.mail.example.org (2 published)"]);
            assert.equal(finding("dane", { DIG_TLSA: `3 1 1 ${"ab".repeat(32)}\n` }).status, "error");
            assert.equal(finding("dane", { DIG_TLSA: "" }).status, "warn");
            fs.rmSync(at("cert.pem"));
            assert.equal(finding("dane", { DIG_TLSA: "" }).detail, "port 25 serves no certificate");
        } finally {
            fs.rmSync(dir, { recursive: true });
        }
    });

    it("preflight: prices what this configuration creates from Hetzner's price lists, and says which price is missing", () => {
        // The shape of GET /v1/pricing and GET /v1/storage_box_types (numbers invented: the lists are read, never written down).
        const located = (location: string, gross: string) => ({ location, price_monthly: { net: gross, gross } });
        const cloud: CloudPricing = { pricing: {
            currency: "EUR", vat_rate: "19.00",
            primary_ips: [{ type: "ipv4", prices: [located("nbg1", "0.6000"), located("fsn1", "0.6000")] }, { type: "ipv6", prices: [located("fsn1", "0.0000")] }],
            server_types: [{ name: "cx23", prices: [located("fsn1", "4.1000"), located("nbg1", "4.1000")] }],
            volume: { price_per_gb_month: { net: "0.05", gross: "0.0550" } },
        } };
        const boxes = { storage_box_types: [{ name: "bx11", prices: [located("hel1", "4.5000")] }] };
        const found = costFinding(settings({ serverType: "cx23", location: "fsn1", volumeSizeGb: 20 }), cloud, boxes);
        assert.equal(found.status, "ok");
        assert.equal(found.detail, "10.30 EUR incl. 19% VAT: server cx23 in fsn1 4.10 EUR, primary IPv4 0.60 EUR, primary IPv6 0.00 EUR, " +
            "volume 20 GB 1.10 EUR, Storage Box bx11 in hel1 4.50 EUR; traffic within the included volume");
        const unknown = costFinding(settings({ serverType: "cx99", location: "fsn1", backup: "off" }), cloud);
        assert.equal(unknown.status, "warn");
        assert.match(unknown.detail, /without server cx99 in fsn1: server cx99 in fsn1 \?, primary IPv4 0\.60 EUR/);
        // A secondary MX: its server and its IPs, at its own location.
        const withSecondary = costFinding(settings({ serverType: "cx23", location: "fsn1", volumeSizeGb: 20, backup: "off", secondaryMxLocation: "nbg1" }), cloud);
        assert.equal(withSecondary.detail, "10.50 EUR incl. 19% VAT: server cx23 in fsn1 4.10 EUR, primary IPv4 0.60 EUR, primary IPv6 0.00 EUR, " +
            "secondary MX cx23 in nbg1 4.10 EUR, secondary MX primary IPv4 0.60 EUR, secondary MX primary IPv6 0.00 EUR, volume 20 GB 1.10 EUR; traffic within the included volume");
    });

    it("preflight: names every bad key with its fix, and a missing token, before anything is created", async () => {
        const findings = await preflight(stackConfig({ ...baseConfig(), domain: "Example..org", sshPort: 25 }), { offline: true });
        const errors = findings.filter(f => f.status === "error");
        assert.deepEqual(errors.map(f => f.name), ["selfhost:domain", "selfhost:sshPort", "hcloud:token"]);
        assert.match(errors[0].detail, /is not a domain name/);
        assert.equal(errors[0].hint, "pulumi config set domain <value>");
        assert.match(errors[2].hint, /pulumi config set --secret hcloud:token/);
    });

    it("preflight: a good configuration with its token passes, and port 25 is always said", async () => {
        const findings = await preflight(stackConfig({ ...baseConfig(), dnsProvider: "none" }, { "hcloud:token": "t".repeat(64) }), { offline: true });
        assert.deepEqual(findings.filter(f => f.status === "error"), []);
        assert.match(findings.find(f => f.name === "outbound port 25")!.hint, /ask Hetzner support to unblock port 25/);
        const gandi = await preflight(stackConfig({ ...baseConfig(), dnsProvider: "gandi" }, { "hcloud:token": "t" }), { offline: true, resolver: "127.0.0.1:1" });
        assert.equal(gandi.find(f => f.name === "selfhost:gandiToken")!.status, "error");
        const clear = await preflight(stackConfig({ ...baseConfig(), dnsProvider: "gandi", gandiToken: "pat0123456789" }, { "hcloud:token": "t" }), { offline: true, resolver: "127.0.0.1:1" });
        assert.match(clear.find(f => f.name === "selfhost:gandiToken")!.hint, /pulumi config set --secret gandiToken/);
        assert.equal(clear.find(f => f.name === "delegation of example.org")!.status, "warn");
    });

    it("preflight: reads the stack file as it is (YAML, structured values, encrypted tokens known to be set), and the example stack passes", async () => {
        const example = fromStackFile(fs.readFileSync(path.join(__dirname, "..", "Pulumi.prod.yaml"), "utf8"));
        assert.equal(JSON.parse(example["selfhost:users"].value!)[0].name, "you");
        const withTokens = { ...example, ...fromStackFile("config:\n  hcloud:token:\n    secure: v1:AAAA\n  selfhost:gandiToken:\n    secure: v1:BBBB\n  sshPort: 2200\n") };
        assert.equal(withTokens["selfhost:sshPort"].value, "2200", "a key without namespace is the project's");
        const findings = await preflight(withTokens, { offline: true, resolver: "127.0.0.1:1" });
        assert.deepEqual(findings.filter(f => f.status === "error").map(f => `${f.name}: ${f.detail}`), []);
        assert.match(findings.find(f => f.name === "hcloud:token")!.detail, /set, encrypted in the stack file/);
        assert.equal(findings.find(f => f.name === "selfhost:gandiToken")!.detail, "set, encrypted");
        // Until the owner says the backup password and passphrase are kept elsewhere, preflight reminds.
        assert.match(findings.find(f => f.name === "the keys to your backups")!.hint, /--show-secrets backupPassword[\s\S]*pulumi config set keysKeptOffline true/);
        const kept = await preflight({ ...withTokens, "selfhost:keysKeptOffline": { value: "true" } }, { offline: true, resolver: "127.0.0.1:1" });
        assert.equal(kept.find(f => f.name === "the keys to your backups"), undefined);
    });

    it("preflight: lists exactly the Gandi records a first up replaces or removes", () => {
        const zone = gandiDefaultZone();
        const declared = recordShapes(settings({ dnsProvider: "gandi", gandiToken: "pat0123456789" }));
        const taken = adoption(declared, zone).map(t => `${t.fate} ${t.rrset.rrset_name} ${t.rrset.rrset_type}`);
        // Gandi's default zone points webmail at Gandi's own webmail; ours takes the name.
        assert.deepEqual(taken.sort(), ["removed webmail CNAME", "removed www CNAME", "replaced @ A", "replaced @ MX", "replaced @ TXT", "replaced _imap._tcp SRV",
            "replaced _imaps._tcp SRV", "replaced _pop3._tcp SRV", "replaced _pop3s._tcp SRV", "replaced _submission._tcp SRV"]);
    });

    it("asks STUN for this host's address (RFC 5389), and takes only the answer to its own request", async () => {
        // A STUN server as coturn answers: Binding Success, the transaction ID echoed, XOR-MAPPED-ADDRESS.
        const serve = (honest: boolean) => new Promise<dgram.Socket>(resolve => {
            const server = dgram.createSocket("udp4");
            server.on("message", (m, from) => {
                const answer = Buffer.alloc(32);
                answer.writeUInt16BE(0x0101, 0);
                answer.writeUInt16BE(12, 2);
                m.copy(answer, 4, 4, 20);
                if (!honest) answer[19] ^= 1;
                answer.writeUInt16BE(0x0020, 20);
                answer.writeUInt16BE(8, 22);
                answer.writeUInt16BE(0x0001, 24);
                answer.writeUInt16BE(from.port ^ 0x2112, 26);
                const ip = from.address.split(".").reduce((n, b) => n * 256 + Number(b), 0);
                answer.writeUInt32BE((ip ^ 0x2112a442) >>> 0, 28);
                server.send(answer, from.port, from.address);
            });
            server.bind(0, "127.0.0.1", () => resolve(server));
        });
        const honest = await serve(true);
        assert.equal(await stunBinding("127.0.0.1", honest.address().port), "127.0.0.1");
        honest.close();
        const confused = await serve(false);
        assert.equal(await stunBinding("127.0.0.1", confused.address().port), undefined);
        confused.close();
    });
});
