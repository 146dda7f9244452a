import { strict as assert } from "assert";
import { runProgram, isSecret, unsecret } from "./program";
import { baseConfig } from "./fixtures";

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
});
