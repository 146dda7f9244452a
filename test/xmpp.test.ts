import { strict as assert } from "assert";
import { runProgram, isSecret, unsecret, stepFiles, DEFAULT_CLOUD } from "./program";
import { baseConfig, settings } from "./fixtures";
import { nftRuleset } from "../components/hardening";
import { servedNames } from "../components/dns/records";
import { turnConfig } from "../components/xmpp";

describe("xmpp", () => {
    it("configures Prosody for the mail domain: TLS required, closed registration, no version, ports from the catalog", async () => {
        const run = await runProgram({ ...baseConfig(), xmppUploadLimitMb: 20, xmppUploadExpiresDays: 3, xmppUploadQuotaMb: 500 });
        const create: string = unsecret(run.one("command:remote:Command", "xmpp").inputs.create);
        for (const line of ['VirtualHost "example.org"', 'Component "conference.example.org" "muc"', 'Component "upload.example.org" "http_file_share"',
            "allow_registration = false", "c2s_require_encryption = true", "s2s_secure_auth = true", "c2s_ports = { 5222 }",
            "c2s_direct_tls_ports = { 5223 }", "s2s_ports = { 5269 }", 'http_interfaces = { "127.0.0.1", "::1" }',
            `http_file_share_size_limit = ${20 * 1024 * 1024}`, `http_file_share_expires_after = ${3 * 86400}`,
            `http_file_share_global_quota = ${500 * 1024 * 1024}`, 'modules_disabled = { "version"; "uptime" }']) {
            assert.ok(create.includes(line), line);
        }
        assert.match(create, /check prosodyctl check config/);
        const web: string = unsecret(run.one("command:remote:Command", "web").inputs.create);
        assert.match(web, /server_name upload\.example\.org;[\s\S]*?client_max_body_size 20971520;[\s\S]*?proxy_pass http:\/\/127\.0\.0\.1:5280;/);
    });

    it("uses the mail passwords, on stdin only, after the mail step", async () => {
        const run = await runProgram(baseConfig());
        const step = run.one("command:remote:Command", "xmpp");
        const passwords = run.outputs.mailPasswords;
        assert.ok(isSecret(step.inputs.stdin));
        const create: string = unsecret(step.inputs.create);
        for (const p of Object.values(passwords) as string[]) assert.ok(!create.includes(p));
        const stdin = Object.fromEntries(unsecret<string>(step.inputs.stdin).trim().split("\n").map(l => l.split(" ")).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));
        assert.equal(stdin.passwords, `alice@example.org ${passwords.alice}\nbob@example.org ${passwords.bob}\n`);
        assert.ok(step.dependencies.some(d => d.endsWith("Command::mail")));
    });

    it("offers calls: coturn with the shared secret only in its database and Prosody's file, relay ports from the catalog", async () => {
        const run = await runProgram(baseConfig());
        const step = run.one("command:remote:Command", "xmpp");
        const files = stepFiles(run, "xmpp");
        const turn = files.get("/etc/turnserver.conf")!;
        const secret: string = run.one("random:index/randomPassword:RandomPassword", "turn-secret").state.result;
        // The secret: on stdin, into a file root and Prosody read, from there into coturn's database; never in a config or command.
        assert.ok(!unsecret<string>(step.inputs.create).includes(secret));
        assert.ok(Buffer.from(unsecret<string>(step.inputs.stdin), "utf8").toString().split("\n").some(l => Buffer.from(l.split(" ")[1] ?? "", "base64").toString() === secret));
        assert.equal(turn.owner, "root:turnserver");
        for (const line of ["use-auth-secret", "userdb=/var/lib/turn/turndb", "realm=example.org", "listening-port=3478", "tls-listening-port=5349",
            "min-port=50000", "max-port=50199", "no-tcp-relay", "no-cli", "no-software-attribute", "no-multicast-peers", "no-tlsv1", "no-tlsv1_1",
            "cert=/etc/coturn/certs/selfhost.crt", `denied-peer-ip=${DEFAULT_CLOUD.ipv4}`, "denied-peer-ip=2001:db8:10::1",
            // Listening on the wildcard (an address not yet usable must not stop it), relaying from the server's own.
            "listening-ip=0.0.0.0", "listening-ip=::", `relay-ip=${DEFAULT_CLOUD.ipv4}`, "relay-ip=2001:db8:10::1"]) {
            assert.ok(turn.content.split("\n").includes(line), line);
        }
        assert.ok(!/static-auth-secret/.test(turn.content));
        const prosody = files.get("/etc/prosody/prosody.cfg.lua")!.content;
        for (const line of ['"turn_external";', '"cloud_notify";', 'turn_external_host = "mail.example.org"', "turn_external_port = 3478",
            "turn_external_tls_port = 5349", "turn_external_ttl = 86400", 'turn_external_secret = FileLine("/etc/prosody/turn-secret")',
            "push_notification_with_body = false", "push_notification_with_sender = false", 'Component "proxy.example.org" "proxy65"',
            'proxy65_acl = { "example.org" }', "proxy65_ports = { 5000 }"]) {
            assert.ok(prosody.includes(line), line);
        }
        // The deploy hook gives coturn its copy of the certificate, and reloads it.
        const hook = stepFiles(run, "tls").get("/usr/local/sbin/selfhost-tls-deployed")!.content;
        assert.match(hook, /for copy in prosody:\/etc\/prosody\/certs turnserver:\/etc\/coturn\/certs; do/);
        assert.match(hook, /for unit in .*\bcoturn\b/);
        assert.match(files.get("/etc/systemd/system/coturn.service.d/selfhost.conf")!.content, /ExecReload=\/bin\/kill -USR2 \$MAINPID[\s\S]*ProtectSystem=strict/);
    });

    it("never relays into private, loopback, link-local or IPv4-embedding ranges, nor to the server itself", () => {
        const conf = turnConfig(settings(), "203.0.113.9", "2001:db8:9::1");
        const denied = [...conf.matchAll(/^denied-peer-ip=(.*)$/gm)].map(m => m[1]);
        for (const range of ["10.0.0.0-10.255.255.255", "127.0.0.0-127.255.255.255", "169.254.0.0-169.254.255.255", "172.16.0.0-172.31.255.255",
            "192.168.0.0-192.168.255.255", "100.64.0.0-100.127.255.255", "::1", "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:0.0.0.0-::ffff:255.255.255.255", "2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "203.0.113.9", "2001:db8:9::1"]) {
            assert.ok(denied.includes(range), range);
        }
    });

    it("keeps coturn from starting with Debian's defaults (no authentication) until the xmpp step configured it", async () => {
        const run = await runProgram(baseConfig());
        const base: string = unsecret(run.one("command:remote:Command", "base").inputs.create);
        const xmpp: string = unsecret(run.one("command:remote:Command", "xmpp").inputs.create);
        const mask = base.indexOf("systemctl mask --quiet coturn.service");
        assert.ok(mask > 0 && mask < base.indexOf("\nensure_packages "), "masked before the packages are installed");
        assert.ok(/ensure_packages .*\bcoturn\b/.test(base));
        assert.ok(xmpp.indexOf("systemctl unmask --quiet coturn") > xmpp.indexOf("\ncommit\n"), "unmasked only once its config passed");
    });

    it("opens TURN (UDP 3478, TLS 5349), the relay range (UDP) and the file proxy (5000), and lets relayed media out", () => {
        const rules = nftRuleset(settings({ restrictOutbound: true })).split("\n").map(l => l.trim());
        assert.ok(rules.some(r => /^udp dport \{ .*3478.*50000-50199.* \} accept$/.test(r)), "UDP in");
        assert.ok(rules.some(r => /^tcp dport \{ .*5000.*5349.* \} accept$/.test(r)), "TCP in");
        assert.ok(rules.includes("udp sport 50000-50199 accept"), "relayed media out");
        assert.ok(servedNames(settings()).includes("proxy.example.org"));
    });
});
