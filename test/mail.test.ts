import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { renderTemplate } from "../services/template";
import { runProgram, isSecret, unsecret, stepFiles } from "./program";
import { baseConfig, settings } from "./fixtures";
import { validate, schema } from "../config";
import YAML from "yaml";
import { postfixMaps } from "../components/mail";

/** Settings from the base config, defaults applied, as the program sees them. */

describe("mail", () => {
    it("refuses our own users' spam at submission (reject at the score that files inbound spam into Junk), never content from outside", async () => {
        const run = await runProgram(baseConfig());
        const files = stepFiles(run, "mail");
        const junk = /^add_header = (\d+);$/m.exec(files.get("/etc/rspamd/local.d/actions.conf")!.content)![1];
        // Out of reach for inbound mail (GTUBE scores 100), yet an action the outbound settings can lower.
        assert.match(files.get("/etc/rspamd/local.d/actions.conf")!.content, /^reject = 10000;$/m);
        const outbound = files.get("/etc/rspamd/local.d/settings.conf")!.content;
        assert.match(outbound, /authenticated = true;[\s\S]*apply \{\s*actions \{\s*reject = (\d+);/);
        assert.equal(/reject = (\d+);/.exec(outbound)![1], junk);
        // Each authenticated user's sending rate, from the config.
        const limited = stepFiles(await runProgram({ ...baseConfig(), sendLimitPerHour: 40 }), "mail").get("/etc/rspamd/local.d/ratelimit.conf")!.content;
        assert.match(limited, /user = \{\s*bucket = \{\s*burst = 40;\s*rate = "40 \/ 1h";/);
    });

    it("turns off the rspamd modules a one-person server gains nothing from, on the server and on the secondary MX", async () => {
        const run = await runProgram({ ...baseConfig(), tlsMode: "acme", secondaryMxLocation: "hel1" });
        for (const step of ["mail", "mx2-relay"]) {
            const files = stepFiles(run, step);
            for (const module of ["neural", "history_redis", "asn"]) assert.match(files.get(`/etc/rspamd/local.d/${module}.conf`)?.content ?? "", /^enabled = false;$/m, `${step}: ${module}`);
        }
    });

    it("derives Postfix's tables from users: mailboxes, aliases, postmaster/abuse, catch-all, senders", () => {
        const maps = postfixMaps(settings({
            users: [{ name: "alice", aliases: ["info"], forwards: ["alice@elsewhere.example"] }, { name: "bob", catchAll: true }],
        }));
        assert.equal(maps.mailboxes, "alice@example.org OK\nbob@example.org OK\n");
        assert.equal(maps.aliases, [
            "postmaster@example.org hostmaster@example.net",
            "abuse@example.org hostmaster@example.net",
            "alice@example.org alice@example.org",
            "bob@example.org bob@example.org",
            "info@example.org alice@example.org",
            "@example.org bob@example.org",
            "",
        ].join("\n"));
        assert.equal(maps.senders, "alice@example.org alice@example.org\ninfo@example.org alice@example.org\nbob@example.org bob@example.org\n");
        assert.match(maps["own-domains"], /^example\.org REJECT /);
    });

    it("forwards with Sieve after the spam rule, and gives only locally submitted mail (the forwarded copies) an SRS sender", async () => {
        const users = [{ name: "alice", forwards: ["a@elsewhere.example", "b@elsewhere.example"] }, { name: "bob" }];
        const files = stepFiles(await runProgram({ ...baseConfig(), users }), "mail");
        const sieve = files.get("/etc/dovecot/selfhost/sieve/delivery.sieve")!.content;
        assert.ok(sieve.indexOf("fileinto :create \"Junk\";\n  stop;") < sieve.indexOf("redirect"), "spam stops before any forward");
        assert.match(sieve, /if envelope :user :is "to" "alice" \{\n  redirect :copy "a@elsewhere\.example";\n  redirect :copy "b@elsewhere\.example";\n\}/);
        assert.ok(!/bob/.test(sieve));
        const [mainCf, masterCf] = [files.get("/etc/postfix/main.cf")!.content, files.get("/etc/postfix/master.cf")!.content];
        assert.ok(!/sender_canonical_maps/.test(mainCf), "mail arriving on 25 keeps its sender");
        assert.match(mainCf, /^recipient_canonical_maps = tcp:127\.0\.0\.1:10002$/m);
        assert.match(masterCf, /^pickup .*pickup\n  -o cleanup_service_name=forward-cleanup\n/m);
        assert.match(masterCf, /^forward-cleanup unix .*cleanup\n  -o sender_canonical_maps=tcp:127\.0\.0\.1:10001\n/m);
        // Without forwards, no SRS at all.
        const plain = stepFiles(await runProgram(baseConfig()), "mail");
        assert.ok(!/forward-cleanup|canonical/.test(plain.get("/etc/postfix/master.cf")!.content + plain.get("/etc/postfix/main.cf")!.content));
    });

    it("makes a password per user, exported only as a secret, and sent to the server on stdin only, with the mailbox's limit", async () => {
        const users = baseConfig().users as object[];
        const run = await runProgram({ ...baseConfig(), mailboxQuotaMb: 2048, users: [{ ...users[0], quotaMb: 100 }, users[1]] });
        const passwords = run.all("random:index/randomPassword:RandomPassword").filter(p => p.name.startsWith("password-"));
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
        // A user's quotaMb, else mailboxQuotaMb: the prepare loop writes it into the login's userdb fields.
        assert.equal(lines.passwords, `alice@example.org ${exported.alice} 100\nbob@example.org ${exported.bob} 2048\n`);
        assert.match(create, /userdb_quota_storage_size=%sM/);
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
        // The hostname takes mail for its aliases only, never for a Unix account (an outsider could fill the disk).
        assert.match(mainCf, /\nlocal_recipient_maps = \$alias_maps\n/);
        assert.match(mainCf, /alias_maps = inline:\{ \{root = [^}]+\}, \{postmaster = [^}]+\}, \{abuse = [^}]+\} \}/);
    });

    it("restarts rspamd on new settings (a reloaded one keeps its old heap) and ends only once its milter listens again", async () => {
        const run = await runProgram(baseConfig());
        const script = unsecret<string>(run.one("command:remote:Command", "mail").inputs.create);
        const milter = stepFiles(run, "mail").get("/etc/postfix/main.cf")!.content.match(/^smtpd_milters = inet:127\.0\.0\.1:(\d+)$/m)?.[1];
        assert.match(script, new RegExp(`^changed_in /etc/rspamd && systemctl restart rspamd\nlistening ${milter} rspamd$`, "m"));
        assert.ok(!/reload\S* rspamd/.test(script));
    });

    it("verifies outbound TLS by DANE where published, else asks the MTA-STS resolver, started on demand (its cache on disk)", async () => {
        const run = await runProgram(baseConfig());
        const create: string = unsecret(run.one("command:remote:Command", "mail").inputs.create);
        const file = (p: string) => create.split(`put '\\''${p}'\\''`)[1].split("SELFHOST_")[1].replace(/^[^\n]*\n/, "");
        const daemon = YAML.parse(file("/etc/mta-sts-daemon.yml"));
        const policyMaps = file("/etc/postfix/main.cf").match(/^smtp_tls_policy_maps = socketmap:inet:(\S+:\d+):postfix$/m);
        // Postfix asks systemd's socket; its proxy starts the resolver, waits for it and passes the lookup to where it listens.
        assert.equal(file("/etc/systemd/system/selfhost-mta-sts.socket").match(/^ListenStream=(\S+)$/m)?.[1], policyMaps?.[1]);
        const proxy = file("/etc/systemd/system/selfhost-mta-sts.service");
        assert.match(proxy, /^Requires=postfix-mta-sts-resolver\.service\nAfter=postfix-mta-sts-resolver\.service$/m);
        assert.equal(proxy.match(/^ExecStart=\S+systemd-socket-proxyd --exit-idle-time=\S+ (\S+)$/m)?.[1], daemon.path);
        assert.match(proxy, /^User=_mta-sts$/m);
        assert.match(file("/etc/systemd/system/postfix-mta-sts-resolver.service.d/selfhost-on-demand.conf"), /^StopWhenUnneeded=yes$/m);
        assert.match(create, /^systemctl disable --quiet postfix-mta-sts-resolver\nsystemctl enable --quiet .*\bselfhost-mta-sts\.socket\b/m);
        assert.equal(daemon.cache.type, "sqlite");
        // DANE needs validated DNS answers: the resolver step gives the server a validating resolver and trust-ad.
        assert.match(file("/etc/postfix/main.cf"), /^smtp_dns_support_level = dnssec\nsmtp_tls_security_level = dane$/m);
        assert.match(unsecret<string>(run.one("command:remote:Command", "base").inputs.create), /^ensure_packages .*\bpostfix-mta-sts-resolver\b/m);
    });

    it("rejects an invalid blocklist or rDNS mode before declaring anything", () => {
        assert.throws(() => settings({ dnsbls: ["not a zone"] }), /selfhost:dnsbls\[0\] "not a zone" is not a DNS zone/);
        assert.throws(() => settings({ unknownRdns: "drop" }), /selfhost:unknownRdns must be one of score, reject/);
    });
});

describe("OpenPGP encryption at delivery", () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-gpg-"));
    let key = "";
    before(function () {
        this.timeout(30_000);
        const gen = spawnSync("gpg", ["--batch", "--homedir", home, "--passphrase", "", "--quick-gen-key", "dave <dave@example.org>", "future-default", "default", "never"]);
        if (gen.status !== 0) this.skip();
        key = spawnSync("gpg", ["--homedir", home, "--armor", "--export", "dave@example.org"], { encoding: "utf8" }).stdout;
    });
    after(() => { spawnSync("gpgconf", ["--homedir", home, "--kill", "all"]); fs.rmSync(home, { recursive: true, force: true }); });

    it("installs gpg, the key and a check that encrypts with it, only for users who have a key", async () => {
        const plain = await runProgram(baseConfig());
        assert.ok(!unsecret<string>(plain.one("command:remote:Command", "base").inputs.create).includes(" gpg"));
        const run = await runProgram({ ...baseConfig(), users: [{ name: "alice" }, { name: "dave", openpgpKey: key }] });
        const create: string = unsecret(run.one("command:remote:Command", "mail").inputs.create);
        assert.match(unsecret<string>(run.one("command:remote:Command", "base").inputs.create), /^ensure_packages .* gpg\b/m);
        assert.ok(create.includes("put '\\''/etc/dovecot/selfhost/openpgp/dave@example.org.asc'\\''"));
        assert.ok(!create.includes("alice@example.org.asc"));
        assert.match(create, /check sh -c "printf .* USER=dave@example\.org \/etc\/dovecot\/selfhost\/sieve\/openpgp-encrypt/);
        // Only dave's mail (dave+tag@ too) starts the filter; with no key at all, nobody's does.
        assert.ok(create.includes('if envelope :user :is "to" ["dave"] {'));
        assert.ok(unsecret<string>(plain.one("command:remote:Command", "mail").inputs.create).includes("if false {"));
        assert.match(create, /^check sievec -d \/etc\/dovecot\/selfhost\/sieve\/encrypt\.sieve$/m);
    });

    it("moves the Content headers and body into PGP/MIME, keeps routing headers outside, leaves encrypted mail alone", function () {
        this.timeout(30_000);
        const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-keys-"));
        fs.writeFileSync(path.join(keyDir, "dave@example.org.asc"), key);
        const script = renderTemplate("dovecot/sieve/openpgp-encrypt", { keyDir });
        const filter = (user: string, message: string) =>
            spawnSync("bash", ["-c", script], { input: message, encoding: "utf8", env: { ...process.env, USER: user } });
        const message = "From: carol@example.net\nTo: dave@example.org\nSubject: plans\nMIME-Version: 1.0\n" +
            "Content-Type: text/plain;\n charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nmeet at the orchard\n";
        const out = filter("dave@example.org", message);
        assert.equal(out.status, 0, out.stderr);
        const [head] = out.stdout.split("\n\n");
        assert.match(head, /^From: carol@example\.net\nTo: dave@example\.org\nSubject: plans\nMIME-Version: 1\.0\nContent-Type: multipart\/encrypted; protocol="application\/pgp-encrypted"; boundary="selfhost-[0-9a-f]{24}"$/);
        assert.ok(!out.stdout.includes("orchard") && !out.stdout.includes("charset=utf-8"));
        const armored = out.stdout.match(/-----BEGIN PGP MESSAGE-----[\s\S]*?-----END PGP MESSAGE-----/)![0];
        const inner = spawnSync("gpg", ["--batch", "--homedir", home, "--decrypt"], { input: armored, encoding: "utf8" }).stdout;
        assert.equal(inner, "Content-Type: text/plain;\n charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nmeet at the orchard\n");
        const untyped = spawnSync("gpg", ["--batch", "--homedir", home, "--decrypt"], {
            input: filter("dave@example.org", "Subject: x\n\nbody\n").stdout.match(/-----BEGIN PGP MESSAGE-----[\s\S]*?-----END PGP MESSAGE-----/)![0], encoding: "utf8",
        }).stdout;
        assert.equal(untyped, "Content-Type: text/plain; charset=us-ascii\n\nbody\n", "a message without Content-Type gets the RFC 2045 default");
        const crlf = filter("dave@example.org", message.replace(/\n/g, "\r\n"));
        assert.match(crlf.stdout, /^Subject: plans\nMIME-Version: 1\.0\nContent-Type: multipart\/encrypted/m, "Dovecot's CRLF input is understood");
        assert.equal(filter("dave@example.org", out.stdout).status, 1, "already encrypted: declined, stored as it came");
        const declined = filter("alice@example.org", message + "x".repeat(1 << 20));
        assert.ok(!declined.error && declined.status === 1, "no key: declined, after reading the message (no broken pipe for Dovecot)");
        fs.rmSync(keyDir, { recursive: true, force: true });
    });
});
