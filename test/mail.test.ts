import { strict as assert } from "assert";
import { runProgram, isSecret, unsecret } from "./program";
import { baseConfig } from "./fixtures";
import { validate, schema } from "../config";
import { postfixMaps } from "../components/mail";

/** Settings from the base config, defaults applied, as the program sees them. */
function settings(change: Record<string, unknown> = {}) {
    const raw = Object.fromEntries(Object.entries(schema()).map(([k, d]) => [k, d.default]));
    return validate({ ...raw, ...baseConfig(), ...change });
}

describe("mail", () => {
    it("derives Postfix's tables from users: mailboxes, aliases, postmaster/abuse, catch-all, senders", () => {
        const maps = postfixMaps(settings({
            users: [{ name: "alice", aliases: ["info"], forwards: ["alice@elsewhere.example"] }, { name: "bob", catchAll: true }],
        }));
        assert.equal(maps.mailboxes, "alice@example.org OK\nbob@example.org OK\n");
        assert.equal(maps.aliases, [
            "postmaster@example.org hostmaster@example.net",
            "abuse@example.org hostmaster@example.net",
            "alice@example.org alice@example.org, alice@elsewhere.example",
            "bob@example.org bob@example.org",
            "info@example.org alice@example.org",
            "@example.org bob@example.org",
            "",
        ].join("\n"));
        assert.equal(maps.senders, "alice@example.org alice@example.org\ninfo@example.org alice@example.org\nbob@example.org bob@example.org\n");
        assert.match(maps["own-domains"], /^example\.org REJECT /);
    });

    it("makes a password per user, exported only as a secret, and sent to the server on stdin only", async () => {
        const run = await runProgram(baseConfig());
        const passwords = run.all("random:index/randomPassword:RandomPassword");
        assert.deepEqual(passwords.map(p => [p.name, p.inputs.length, p.inputs.special]), [["password-alice", 24, false], ["password-bob", 24, false]]);
        const exported = run.outputs.mailPasswords;
        assert.deepEqual(Object.keys(exported), ["alice", "bob"]);
        const step = run.one("command:remote:Command", "mail");
        const create: string = unsecret(step.inputs.create);
        const dkimKey = run.one("tls:index/privateKey:PrivateKey", "dkim-selfhost").state.privateKeyPem as string;
        for (const secret of [exported.alice, exported.bob, dkimKey.split("\n")[1]]) assert.ok(!create.includes(secret));
        assert.ok(isSecret(step.inputs.stdin));
        const stdin: string = unsecret(step.inputs.stdin);
        const lines = Object.fromEntries(stdin.trim().split("\n").map(l => l.split(" ")).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));
        assert.equal(lines.passwords, `alice@example.org ${exported.alice}\nbob@example.org ${exported.bob}\n`);
        assert.equal(lines.s0, dkimKey);
    });

    it("renders main.cf from the settings: the host's IPs, the DNS blocklists, the rDNS rule", async () => {
        const run = await runProgram({ ...baseConfig(), dnsbls: ["zen.spamhaus.org", "bl.example.net"], unknownRdns: "reject" });
        const create: string = unsecret(run.one("command:remote:Command", "mail").inputs.create);
        const mainCf = create.split("put '\\''/etc/postfix/main.cf'\\''")[1].split("SELFHOST_")[1];
        assert.match(mainCf, /smtp_bind_address = 198\.51\.100\.10\n/);
        assert.match(mainCf, /smtp_bind_address6 = 2001:db8:10::1\n/);
        assert.match(mainCf, /reject_rbl_client zen\.spamhaus\.org=127\.0\.0\.\[2\.\.11\],\n    reject_rbl_client bl\.example\.net=127\.0\.0\.\[2\.\.11\]/);
        assert.match(mainCf, /smtpd_client_restrictions = permit_mynetworks, reject_unknown_reverse_client_hostname\n/);
        assert.match(mainCf, /myhostname = mail\.example\.org\n/);
    });

    it("rejects an invalid blocklist or rDNS mode before declaring anything", () => {
        assert.throws(() => settings({ dnsbls: ["not a zone"] }), /selfhost:dnsbls\[0\] "not a zone" is not a DNS zone/);
        assert.throws(() => settings({ unknownRdns: "drop" }), /selfhost:unknownRdns must be one of score, reject/);
    });
});
