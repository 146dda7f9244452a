import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { execFileSync } from "child_process";
import { targetOf } from "../check";
import { runProgram, stepFiles, unsecret, SECONDARY_TLSA } from "./program";
import { declaredSteps, stepsThatChanged } from "./e2e/steps";
import { baseConfig } from "./fixtures";
import { validate, schema } from "../config";

const withSecondary = (change: Record<string, unknown> = {}) => ({ ...baseConfig(), secondaryMxLocation: "hel1", ...change });
const raw = (change: Record<string, unknown>) =>
    ({ ...Object.fromEntries(Object.entries(schema()).map(([k, d]) => [k, d.default])), ...baseConfig(), ...change });
const problems = (change: Record<string, unknown>) => {
    try { validate(raw(change)); return ""; } catch (e) { return String(e); }
};

describe("secondary MX", () => {
    it("is off by default, and its options are refused before anything is declared: its own location, a bad type, a short queue", () => {
        assert.equal(validate(raw({})).secondaryMx, undefined);
        assert.match(problems({ secondaryMxLocation: "fsn1" }), /secondaryMxLocation is the server's own location fsn1/);
        assert.match(problems({ secondaryMxLocation: "mars" }), /secondaryMxLocation must be one of/);
        assert.match(problems({ secondaryMxLocation: "hel1", secondaryMxServerType: "big one" }), /secondaryMxServerType "big one" is not a Hetzner server type/);
        assert.match(problems({ secondaryMxLocation: "hel1", secondaryMxQueueDays: 3 }), /secondaryMxQueueDays must be a whole number from 7 to 30/);
        assert.match(problems({ secondaryMxLocation: "hel1", hostname: "mx2.example.org" }), /hostname "mx2.example.org" is the secondary MX's name/);
        assert.deepEqual(validate(raw({ secondaryMxLocation: "hel1" })).secondaryMx,
            { hostname: "mx2.example.org", location: "hel1", serverType: "cx23", queueDays: 7 });
    });

    it("is a second server in its location with its own IPs, PTRs, host key and firewall (SSH, SMTP, HTTP), and the server's deploy key", async () => {
        const run = await runProgram(withSecondary());
        const servers = run.all("hcloud:index/server:Server").sort((a, b) => a.inputs.name.localeCompare(b.inputs.name));
        assert.deepEqual(servers.map(s => [s.inputs.name, s.inputs.location]), [["mail.example.org", "fsn1"], ["mx2.example.org", "hel1"]]);
        const [primary, mx2] = servers;
        assert.deepEqual(mx2.inputs.sshKeys, primary.inputs.sshKeys, "one deploy key in the project: Hetzner refuses a second with its fingerprint");
        assert.equal(run.all("hcloud:index/sshKey:SshKey").length, 1);
        assert.equal(run.all("hcloud:index/volume:Volume").length, 1, "the secondary keeps no data");
        const hostKeys = run.all("tls:index/privateKey:PrivateKey").filter(k => /host-key/.test(k.name));
        assert.equal(hostKeys.length, 2);
        assert.ok(!/mounts:|scsi-0HC_Volume/.test(unsecret<string>(mx2.inputs.userData)), "nothing to mount");
        const ips = run.all("hcloud:index/primaryIp:PrimaryIp").map(ip => `${ip.inputs.name}`);
        assert.deepEqual(ips.sort(), ["mail.example.org ipv4 fsn1", "mail.example.org ipv6 fsn1", "mx2.example.org ipv4 hel1", "mx2.example.org ipv6 hel1"]);
        const ptrs = run.all("hcloud:index/rdns:Rdns").map(r => `${r.inputs.ipAddress} ${r.inputs.dnsPtr}`);
        assert.ok(ptrs.includes("198.51.100.11 mx2.example.org") && ptrs.includes("2001:db8:11::1 mx2.example.org"), ptrs.join(", "));
        const firewall = run.all("hcloud:index/firewall:Firewall").find(f => f.inputs.name === "mx2.example.org")!;
        assert.deepEqual(firewall.inputs.rules.filter((r: any) => r.protocol === "tcp").map((r: any) => r.port).sort(), ["2222", "25", "80"]);
    });

    it("is MX 20 behind the server, in SPF, MTA-STS and DANE, with its own A/AAAA and HELO record", async () => {
        const run = await runProgram(withSecondary());
        const records = run.outputs.records as { name: string; type: string; values: string[] }[];
        const find = (name: string, type: string) => records.find(r => r.name === name && r.type === type)?.values;
        assert.deepEqual(find("@", "MX"), ["10 mail.example.org.", "20 mx2.example.org."]);
        assert.deepEqual(find("mx2", "A"), ["198.51.100.11"]);
        assert.deepEqual(find("mx2", "AAAA"), ["2001:db8:11::1"]);
        assert.deepEqual(find("mx2", "TXT"), ['"v=spf1 a -all"']);
        assert.deepEqual(find("@", "TXT"), ['"v=spf1 ip4:198.51.100.10 ip6:2001:db8:10::1 ip4:198.51.100.11 ip6:2001:db8:11::1 -all"']);
        assert.deepEqual(find("_25._tcp.mx2", "TLSA"), SECONDARY_TLSA, "the secondary's port 25: its own key, as its tls step printed it");
        const policy = [...stepFiles(run, "web")].find(([file]) => file.endsWith("/mta-sts.txt"))?.[1].content ?? "";
        assert.match(policy, /mx: mail\.example\.org\r\nmx: mx2\.example\.org\r\n/);
        // Without the secondary: one MX, and the policy names the server alone.
        const single = (await runProgram(baseConfig())).outputs.records as { name: string; type: string; values: string[] }[];
        assert.deepEqual(single.find(r => r.name === "@" && r.type === "MX")!.values, ["10 mail.example.org."]);
    });

    it("relays only to the server, over verified TLS, only for the server's recipients (aliases, postmaster, catch-all), and keeps mail for queueDays", async () => {
        const run = await runProgram(withSecondary({
            secondaryMxQueueDays: 10, users: [{ name: "alice", aliases: ["info"] }, { name: "bob", catchAll: true }],
        }));
        const files = stepFiles(run, "mx2-relay");
        const main = files.get("/etc/postfix/main.cf")!.content;
        assert.match(main, /^relay_domains = example\.org$/m);
        assert.match(main, /^relay_recipient_maps = texthash:\/etc\/postfix\/selfhost\/recipients$/m);
        assert.match(main, /^transport_maps = inline:\{ \{example\.org = relay:\[mail\.example\.org\]:25\} \}$/m);
        assert.match(main, /^smtp_tls_policy_maps = inline:\{ \{\[mail\.example\.org\]:25 = secure match=mail\.example\.org\} \}$/m);
        assert.match(main, /^maximal_queue_lifetime = 10d$/m);
        assert.match(main, /^smtpd_etrn_restrictions = permit_mynetworks, check_client_access inline:\{ \{198\.51\.100\.10 = OK\}, \{2001:db8:10::1 = OK\} \}, reject$/m);
        assert.match(main, /^smtp_bind_address = 198\.51\.100\.11$/m);
        assert.ok(!/virtual_|lmtp|dovecot|sasl_auth_enable = yes/.test(main), "delivers nothing here and takes no logins");
        assert.equal(files.get("/etc/postfix/selfhost/recipients")!.content, [
            "postmaster@example.org OK", "abuse@example.org OK", "alice@example.org OK", "bob@example.org OK", "info@example.org OK", "@example.org OK", "",
        ].join("\n"));
        // Port 25's policy is the server's, word for word, but for the server's last rule (a full mailbox).
        const primary = stepFiles(run, "mail").get("/etc/postfix/main.cf")!.content.replace(",\n    check_policy_service unix:private/quota-status", "");
        const inbound = main.slice(main.indexOf("# TLS inbound: the host's own certificate."));
        assert.ok(primary.includes(inbound.trimEnd()), "the secondary's port 25 is the server's");
        // No key of the server's: nothing signs.
        assert.match(files.get("/etc/rspamd/local.d/dkim_signing.conf")!.content, /^enabled = false;$/m);
        assert.match(files.get("/etc/rspamd/local.d/arc.conf")!.content, /^enabled = false;$/m);
        assert.ok(![...files.keys()].some(f => /dkim\.key|\.secret/.test(f)));
    });

    it("makes the server judge relayed mail by who handed it to the secondary, and ask for it (ETRN) at boot and when its mail step runs", async () => {
        const run = await runProgram(withSecondary());
        const files = stepFiles(run, "mail");
        const relay = files.get("/etc/rspamd/local.d/external_relay.conf")!.content;
        assert.match(relay, /^enabled = true;$/m);
        assert.match(relay, /ip_map = \["198\.51\.100\.11", "2001:db8:11::1"\];/);
        const etrn = files.get("/usr/local/sbin/selfhost-etrn")!;
        assert.match(etrn.content, /\/dev\/tcp\/mx2\.example\.org\/25/);
        assert.match(etrn.content, /ETRN example\.org\\r\\n/);
        assert.match(files.get("/etc/systemd/system/selfhost-etrn.service")!.content, /^After=.*postfix\.service.*rspamd\.service/m);
        assert.match(unsecret<string>(run.one("command:remote:Command", "mail").inputs.create), /^systemctl start --no-block selfhost-etrn$/m);
        // Turned off: the server's mail step removes what asked the secondary.
        const single = await runProgram(baseConfig());
        assert.match(stepFiles(single, "mail").get("/etc/rspamd/local.d/external_relay.conf")!.content, /^enabled = false;$/m);
        assert.ok(!stepFiles(single, "mail").has("/usr/local/sbin/selfhost-etrn"));
        assert.match(unsecret<string>(single.one("command:remote:Command", "mail").inputs.create), /systemctl disable --quiet selfhost-etrn; rm -f/);
    });

    it("has its own steps, each on the secondary and pinned to its host key: base without a volume, hardening with its ports, resolver, its certificate, the relay, its report", async () => {
        const run = await runProgram(withSecondary());
        const steps = declaredSteps(run).filter(s => s.name.startsWith("mx2-"));
        assert.deepEqual(steps.map(s => s.name), ["mx2-base", "mx2-hardening", "mx2-resolver", "mx2-tls", "mx2-relay", "mx2-status"]);
        const hostKeys = run.all("tls:index/privateKey:PrivateKey").filter(k => /host-key/.test(k.name));
        const mx2Key = hostKeys.find(k => k.name === "mx2-host-key")!.state.publicKeyOpenssh.trim();
        for (const s of steps) assert.deepEqual([s.connection.host, s.connection.hostKey], ["198.51.100.11", mx2Key], s.name);
        const base = steps[0];
        assert.ok(!/mountpoint|resize2fs/.test(base.create), "no volume to mount or grow");
        assert.match(stepFiles(run, "mx2-base").get("/etc/ssh/sshd_config.d/00-selfhost.conf")!.content, /^AllowUsers selfhost admin$/m);
        assert.match(base.delete!, /postqueue -f/);
        assert.match(base.delete!, /master_service_disable=inet/);
        const nft = stepFiles(run, "mx2-hardening").get("/etc/nftables.conf")!.content;
        assert.match(nft, /^ {8}tcp dport \{ 2222, 25, 80 \} accept$/m);
        const inbound = nft.slice(nft.indexOf("chain input"), nft.indexOf("chain output"));
        assert.ok(!/\b(443|993|5222)\b/.test(inbound), "no IMAP, web or XMPP there");
        assert.match(steps.find(s => s.name === "mx2-tls")!.create, /certbot certonly .* -d mx2\.example\.org$/m);
        assert.ok(!/-d mail\.example\.org/.test(steps.find(s => s.name === "mx2-tls")!.create));
        // The stack's SSH record for each machine: its own name and role, read back by each on the next up.
        const records = run.all("hcloud:index/firewall:Firewall").filter(f => / ssh$/.test(f.inputs.name)).map(f => [f.inputs.name, f.inputs.labels.role]);
        assert.deepEqual(records.sort(), [["mail.example.org ssh", "ssh"], ["mx2.example.org ssh", "mx2-ssh"]]);
    });

    it("turned on, changes on the server only the mail step (ETRN, external relay) and the web step (the MTA-STS policy); the server is not replaced", async () => {
        const [before, after] = [await runProgram(baseConfig()), await runProgram(withSecondary())];
        const changed = stepsThatChanged(before, after).map(s => s.name).filter(n => !n.startsWith("mx2-"));
        assert.deepEqual(changed.sort(), ["mail", "web"]);
        const server = (r: typeof before) => r.all("hcloud:index/server:Server").find(s => s.inputs.name === "mail.example.org")!.inputs;
        assert.deepEqual(server(after), server(before));
    });

    it("has its own report (its units, its name's TLSA, the mail waiting for the server), and npm run check covers it from the stack's outputs", async () => {
        const run = await runProgram(withSecondary());
        const report = stepFiles(run, "mx2-status").get("/usr/local/sbin/selfhost-status")!.content;
        assert.match(report, /for unit in ssh nftables fail2ban unattended-upgrades unbound postfix rspamd redis-server nginx; do/);
        assert.match(report, /_25\._tcp\.mx2\.example\.org/);
        assert.match(report, /^report\(\) \{ .*; dane; relay_queue; \}$/m);
        // The server's report has no queue of the secondary's to count.
        assert.match(stepFiles(run, "status").get("/usr/local/sbin/selfhost-status")!.content, /^report\(\) \{ .*; dane; \}$/m);
        // postqueue -j's lines as the relay_queue finding reads them.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-relay-queue-"));
        try {
            fs.writeFileSync(path.join(dir, "postqueue"), '#!/bin/sh\nprintf "%s" "$QUEUE"\n', { mode: 0o755 });
            const functions = report.slice(0, report.indexOf("\nreport() {"));
            const finding = (queue: string) => execFileSync("bash", ["-c", `${functions}\nrelay_queue`], { encoding: "utf8", env: { PATH: `${dir}:/usr/bin:/bin`, QUEUE: queue, TZ: "UTC" } }).trim().split("\t");
            assert.deepEqual(finding(""), ["ok", "mail", "waiting for mail.example.org", "no message"]);
            const waiting = finding('{"queue_name": "deferred", "arrival_time": 1764720000}\n{"queue_name": "deferred", "arrival_time": 1764723600}\n');
            assert.deepEqual(waiting.slice(0, 4), ["warn", "mail", "waiting for mail.example.org", "2 message(s), the oldest since 2025-12-03 00:00"]);
            assert.match(waiting[4], /as soon as mail\.example\.org takes mail/);
        } finally { fs.rmSync(dir, { recursive: true, force: true }); }
        const target = targetOf(run.outputs);
        assert.deepEqual([target.secondary?.hostname, target.secondary?.ipv4, target.secondary?.sshPort], ["mx2.example.org", "198.51.100.11", 2222]);
        assert.match(target.secondary!.knownHosts!, /^\[198\.51\.100\.11\]:2222,\[mx2\.example\.org\]:2222 ssh-ed25519 /);
        assert.equal(targetOf((await runProgram(baseConfig())).outputs).secondary, undefined);
    });

    it("requires tlsMode acme: it verifies the server by the public CAs", () => {
        assert.match(problems({ secondaryMxLocation: "hel1", tlsMode: "private-ca" }), /secondaryMxLocation needs tlsMode acme/);
    });
});
