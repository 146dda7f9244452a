import { strict as assert } from "assert";
import * as crypto from "crypto";
import { runProgram } from "./program";
import { baseConfig, ALICE_KEY } from "./fixtures";
import * as fs from "fs";
import * as path from "path";
import { ConfigError, schema, validate } from "../config";

/** Runs the program with the base config changed (undefined removes a key); returns the error it fails with. */
async function failure(change: Record<string, unknown>): Promise<{ message: string; declared: number }> {
    const config = { ...baseConfig(), ...change };
    for (const [k, v] of Object.entries(config)) if (v === undefined) delete config[k];
    let declared = 0;
    try {
        const run = await runProgram(config);
        declared = run.resources.length;
    } catch (e) {
        // The program loads its own copy of the config module, so compare by name, not class.
        assert.equal((e as Error).name, ConfigError.name, `expected a ConfigError, got ${e}`);
        return { message: (e as Error).message, declared };
    }
    assert.fail(`config ${JSON.stringify(change)} was accepted (${declared} resources declared)`);
}

/** An OpenSSH public key line for an RSA key of the given size. */
function rsaKey(bits: number): string {
    const { publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: bits });
    const jwk = publicKey.export({ format: "jwk" });
    const field = (b: Buffer) => { const len = Buffer.alloc(4); len.writeUInt32BE(b.length); return Buffer.concat([len, b]); };
    const mpint = (b64: string) => { const b = Buffer.from(b64, "base64url"); return field(b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b); };
    return `ssh-rsa ${Buffer.concat([field(Buffer.from("ssh-rsa")), mpint(jwk.e!), mpint(jwk.n!)]).toString("base64")} test`;
}

describe("configuration", () => {
    it("accepts the example configuration and derives the hostname", async () => {
        const run = await runProgram(baseConfig());
        assert.equal(run.outputs.hostname, "mail.example.org");
    });

    it("applies the defaults declared in Pulumi.yaml", async () => {
        const run = await runProgram(baseConfig());
        const server = run.one("hcloud:index/server:Server");
        assert.equal(server.inputs.serverType, "cx23");
        assert.equal(server.inputs.location, "fsn1");
        assert.equal(server.inputs.image, "debian-13");
        assert.match(run.outputs.sshCommand, /^ssh -p 2222 admin@/);
    });

    it("accepts a 4096-bit RSA key", async () => {
        await runProgram({ ...baseConfig(), sshPublicKeys: [ALICE_KEY, rsaKey(4096)] });
    });

    const cases: [string, Record<string, unknown>, RegExp][] = [
        ["a missing domain", { domain: undefined }, /selfhost:domain is required/],
        ["an upper-case domain", { domain: "Example.org" }, /selfhost:domain "Example.org" is not a domain name/],
        ["a domain with a trailing dot", { domain: "example.org." }, /selfhost:domain .*without a trailing dot/],
        ["a single-label domain", { domain: "localhost" }, /selfhost:domain/],
        ["a hostname outside the domain", { hostname: "mail.example.net" }, /selfhost:hostname .*inside the domain example.org/],
        ["a hostname taken by a service name", { hostname: "www.example.org" }, /selfhost:hostname .*taken by a service name/],
        ["a malformed SSH key", { sshPublicKeys: ["ssh-ed25519 not-base64!"] }, /selfhost:sshPublicKeys\[0\] has a key body that is not base64/],
        ["a key whose body does not match its type", { sshPublicKeys: [ALICE_KEY.replace("ssh-ed25519", "ssh-rsa")] }, /sshPublicKeys\[0\] is truncated or its body is not a ssh-rsa key/],
        ["a DSA key", { sshPublicKeys: ["ssh-dss AAAAB3NzaC1kc3M="] }, /sshPublicKeys\[0\] has type "ssh-dss"/],
        ["a weak RSA key", { sshPublicKeys: [rsaKey(1024)] }, /sshPublicKeys\[0\] is an RSA key of 1024 bits/],
        ["no SSH key", { sshPublicKeys: [] }, /selfhost:sshPublicKeys needs at least one/],
        ["an SSH port out of range", { sshPort: 70000 }, /selfhost:sshPort must be a whole number from 1 to 65535; got 70000/],
        ["an SSH port that is not a number", { sshPort: "two" }, /selfhost:sshPort must be a whole number, got "two"/],
        ["an SSH port clashing with SMTP", { sshPort: 25 }, /selfhost:sshPort 25 is the smtp port; choose a free port/],
        ["an SSH port clashing with HTTPS", { sshPort: 443 }, /selfhost:sshPort 443 is the https port/],
        ["an unknown DNS provider", { dnsProvider: "route53" }, /selfhost:dnsProvider must be one of gandi, hetzner, none; got "route53"/],
        ["an unknown location", { location: "us-east-1" }, /selfhost:location must be one of fsn1, nbg1, hel1, ash, hil, sin/],
        ["an unknown TLS mode", { tlsMode: "self-signed" }, /selfhost:tlsMode must be one of acme, private-ca/],
        ["an old image", { image: "debian-12" }, /selfhost:image "debian-12" is not supported/],
        ["a TTL below Gandi's minimum", { dnsTtl: 60 }, /selfhost:dnsTtl must be a whole number from 300 to 86400/],
        ["a tiny volume", { volumeSizeGb: 5 }, /selfhost:volumeSizeGb/],
        ["an invalid admin e-mail", { adminEmail: "root" }, /selfhost:adminEmail "root" is not an email address/],
        ["root as admin user", { adminUser: "root" }, /selfhost:adminUser "root" is a system account/],
        ["an invalid admin user", { adminUser: "Admin User" }, /selfhost:adminUser "Admin User" is not a valid login/],
        ["a plain-http ACME server", { acmeServer: "http://ca.example/dir" }, /selfhost:acmeServer .*https:\/\//],
        ["an ACME server with no known CAA issuer", { acmeServer: "https://ca.example/dir" }, /selfhost:caaIssuer cannot be derived from acmeServer host ca.example/],
        ["an invalid user name", { users: [{ name: "Alice Smith" }] }, /selfhost:users\[0\].name "Alice Smith" is not a valid local part/],
        ["a plus in a user name", { users: [{ name: "a+b" }] }, /users\[0\].name "a\+b".*user\+tag/],
        ["a duplicate user", { users: [{ name: "alice" }, { name: "alice" }] }, /users\[1\].name "alice@example.org" already belongs to users\[0\]/],
        ["an alias that is another user", { users: [{ name: "alice" }, { name: "bob", aliases: ["alice"] }] }, /users\[1\].aliases "alice@example.org" already belongs to users\[0\]/],
        ["a user claiming postmaster", { users: [{ name: "postmaster" }] }, /users\[0\].name "postmaster@example.org" already belongs to adminEmail/],
        ["an alias claiming abuse", { users: [{ name: "alice", aliases: ["abuse@example.org"] }] }, /users\[0\].aliases "abuse@example.org" already belongs to adminEmail/],
        ["an invalid forward", { users: [{ name: "alice", forwards: ["nowhere"] }] }, /users\[0\].forwards "nowhere" is not an email address/],
        ["an unknown user setting", { users: [{ name: "alice", password: "x" }] }, /users\[0\].password is not a user setting/],
        ["more forwards than Sieve redirects", { users: [{ name: "alice", forwards: ["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"] }] }, /users\[0\].forwards has 5 addresses; at most 4/],
        ["a mailbox quota larger than the volume", { mailboxQuotaMb: 20480 }, /selfhost:mailboxQuotaMb must be a whole number from 0 to 10240; got 20480/],
        ["a user's quota that is no size", { users: [{ name: "alice", quotaMb: "1G" }] }, /users\[0\].quotaMb must be a whole number of MB from 0 \(no limit\) to 10240 \(the volume's size\); got "1G"/],
        ["a password version that is no version", { users: [{ name: "alice", passwordVersion: "new" }] }, /users\[0\].passwordVersion must be a whole number from 1 up; raise it by one to give alice a new password/],
        ["a sending limit of nothing", { sendLimitPerHour: 0 }, /selfhost:sendLimitPerHour must be a whole number from 1 to 100000; got 0/],
        ["two catch-all users", { users: [{ name: "a1", catchAll: true }, { name: "b1", catchAll: true }] }, /selfhost:users has more than one catchAll/],
        ["users that are not a list", { users: "alice" }, /selfhost:users must be a list/],
        ["an admin source that is no address", { adminSources: ["my-laptop"] }, /selfhost:adminSources\[0\] "my-laptop" is not an IP address or CIDR network/],
        ["an admin network with a bad prefix", { adminSources: ["203.0.113.0/33"] }, /selfhost:adminSources\[0\] "203.0.113.0\/33"/],
        // Hetzner's firewall refuses a CIDR with host bits at `up`; the message names both readings.
        ["an admin network with host bits", { adminSources: ["203.0.113.7/24"] }, /selfhost:adminSources\[0\] "203.0.113.7\/24" has host bits set.*network 203\.0\.113\.0\/24, or the one address 203\.0\.113\.7/],
        ["an IPv6 admin network with host bits", { adminSources: ["2001:DB8::1/48"] }, /selfhost:adminSources\[0\] .*network 2001:db8::\/48/],
        ["a ban time of seconds", { banTime: 5 }, /selfhost:banTime must be a whole number from 60 to 31536000; got 5/],
        ["an outbound port out of range", { outboundPorts: [0] }, /selfhost:outboundPorts\[0\] must be a TCP port from 1 to 65535; got 0/],
        ["a backup target that is no sftp repository", { backup: "s3:bucket" }, /selfhost:backup "s3:bucket" must be storagebox, off, or a restic sftp repository/],
        ["an sftp URL without a path", { backup: "sftp://me@nas.example.net:23" }, /selfhost:backup .* must be storagebox, off/],
        ["a Storage Box type that is not one", { backupStorageBoxType: "big" }, /selfhost:backupStorageBoxType "big" is not a Storage Box type, e.g. bx11/],
        ["a backup schedule that cannot be a calendar", { backupSchedule: "daily; rm -rf /" }, /selfhost:backupSchedule .* is not a systemd calendar expression/],
        ["a retention that keeps nothing", { backupKeepDaily: 0, backupKeepWeekly: 0, backupKeepMonthly: 0 }, /selfhost:backupKeepDaily and backupKeepWeekly and backupKeepMonthly are all 0/],
        ["a reboot time that is no time", { rebootTime: "4am" }, /selfhost:rebootTime "4am" must be a time of day as HH:MM/],
        ["an OpenPGP key that is a private key", { users: [{ name: "alice", openpgpKey: "-----BEGIN PGP PRIVATE KEY BLOCK-----\nx\n-----END PGP PRIVATE KEY BLOCK-----" }] }, /users\[0\].openpgpKey must be an ASCII-armoured OpenPGP public key/],
        ["an admin address in the domain that nobody has", { adminEmail: "owner@example.org" }, /selfhost:adminEmail "owner@example.org" is in this domain but no user has it/],
        ["a bad DKIM selector", { dkimSelector: "my selector" }, /selfhost:dkimSelector "my selector" must be one DNS label/],
    ];
    for (const [what, change, message] of cases) {
        it(`rejects ${what} before declaring any resource`, async () => {
            const { message: got, declared } = await failure(change);
            assert.match(got, message);
            assert.equal(declared, 0);
        });
    }

    it("is documented: the README's reference has a row per schema key with its default", () => {
        const readme = fs.readFileSync(path.join(__dirname, "..", "README.md"), "utf8");
        for (const [key, decl] of Object.entries(schema())) {
            const row = readme.split("\n").find(l => l.startsWith(`| \`${key}\` |`));
            assert.ok(row, `README has no row for ${key}`);
            const scalar = decl.default;
            if (scalar !== undefined && scalar !== "" && !Array.isArray(scalar) && !String(scalar).startsWith("https://")) {
                assert.ok(row.includes(`\`${scalar}\``), `README row for ${key} does not show its default ${scalar}`);
            }
        }
    });

    // Config values reach root shells, Lua, Postfix maps, nginx and DNS on the server. Every string is
    // held to what it really is; a value with anything a shell or a config language would read is
    // refused, naming the key. siteBuild alone is a shell command by design (it runs as the site's builder).
    describe("hostile values are refused before any resource, naming the key", () => {
        const VALID: Record<string, unknown> = {
            domain: "example.org", hostname: "mail.example.org", adminUser: "admin", adminEmail: "you@example.net", rebootTime: "04:30",
            serverType: "cx23", location: "fsn1", image: "debian-13", dnsProvider: "hetzner", gandiToken: "pat0123456789abcdef",
            gandiApiKey: "key0123456789", gandiApiUrl: "https://api.sandbox.gandi.net/v5/livedns", dkimSelector: "s1", dmarcPolicy: "reject",
            mtaStsMode: "enforce", tlsMode: "acme", acmeServer: "https://acme-v02.api.letsencrypt.org/directory", caaIssuer: "letsencrypt.org",
            unknownRdns: "reject", siteDir: "public", backup: "sftp://u1@backup.example.net:23/selfhost", backupStorageBoxType: "bx11",
            backupSchedule: "daily", checkSmtpHost: "smtp.example.net", secondaryMxLocation: "hel1", secondaryMxServerType: "cx23",
        };
        const HOSTILE = ["'$(touch /tmp/pwned)'", "`id`", ";reboot", "\nx", "{x}", "\"x", "$HOME", "\\x", "${IFS}", "'", "&x", "|x", "<x", "ａ"];
        const raw = () => ({ ...Object.fromEntries(Object.entries(schema()).map(([k, d]) => [k, d.default])), ...baseConfig() });
        const refused = (key: string, change: Record<string, unknown>) => {
            try { validate({ ...raw(), ...change }); } catch (e) { return String(e).includes(`selfhost:${key}`); }
            return false;
        };
        it("covers every string key of the schema", () => {
            const strings = Object.entries(schema()).filter(([, d]) => d.type === "string").map(([k]) => k);
            assert.deepEqual(strings.filter(k => k !== "siteBuild" && !(k in VALID)), []);
        });
        it("for each string key, before, inside and after a valid value", () => {
            const accepted = Object.entries(VALID).flatMap(([key, valid]) => HOSTILE.flatMap(h => {
                const v = String(valid);
                return [h + v, v + h, v.slice(0, 3) + h + v.slice(3)].filter(x => !refused(key, { [key]: x })).map(x => `${key}=${JSON.stringify(x)}`);
            }));
            assert.deepEqual(accepted, []);
        });
        it("in lists: users, aliases, forwards, SSH keys, admin sources, apps", () => {
            const cases: [string, (h: string) => Record<string, unknown>][] = [
                ["users[0].name", h => ({ users: [{ name: `al${h}ice` }] })],
                ["users[0].aliases", h => ({ users: [{ name: "alice", aliases: [`in${h}fo`] }] })],
                ["users[0].forwards", h => ({ users: [{ name: "alice", forwards: [`carol${h}@example.net`] }] })],
                ["sshPublicKeys[0]", h => ({ sshPublicKeys: [`${ALICE_KEY}${h === "\nx" ? "\nssh-ed25519 AAAA x" : ""}`] })],
                ["adminSources[0]", h => ({ adminSources: [`203.0.113.7${h}`] })],
                ["apps[0].name", h => ({ apps: [{ name: `bl${h}og`, port: 8080, path: "/blog" }] })],
                ["apps[0].path", h => ({ apps: [{ name: "blog", port: 8080, path: `/bl${h}og` }] })],
            ];
            const accepted = cases.flatMap(([key, make]) => HOSTILE.filter(h => key !== "sshPublicKeys[0]" || h === "\nx")
                .filter(h => !refused(key, make(h))).map(h => `${key} with ${JSON.stringify(h)}`));
            assert.deepEqual(accepted, []);
        });
        it("and the program declares nothing", async () => {
            const { message, declared } = await failure({ adminEmail: "you@example.net$(touch${IFS}/tmp/pwned)" });
            assert.match(message, /selfhost:adminEmail/);
            assert.equal(declared, 0);
        });
    });

    it("reports every problem at once", async () => {
        const { message } = await failure({ domain: "bad_domain", sshPort: 25, dnsProvider: "x" });
        assert.match(message, /selfhost:domain/);
        assert.match(message, /selfhost:sshPort/);
        assert.match(message, /selfhost:dnsProvider/);
    });
});
