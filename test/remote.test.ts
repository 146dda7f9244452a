import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import { runProgram, ProgramRun, isSecret, unsecret, scriptOf } from "./program";
import { baseConfig } from "./fixtures";
import { stepScript } from "../components/remote/step";

/** The steps: commands that run something when created (the server-type hook only acts when it goes). */
const commands = (run: ProgramRun) => run.all("command:remote:Command").filter(c => c.inputs.create !== undefined);
const create = (run: ProgramRun, name: string): string => unsecret(run.one("command:remote:Command", name).inputs.create);

/**
 * Runs a step script as root, the way sudo runs it on the server — in a user and mount namespace of its
 * own (so also for a user who is not root), with a fresh /run and /var/lib: this machine's stay untouched.
 */
function runLocally(script: string, stdin = ""): { code: number; out: string } {
    const r = spawnSync("unshare", ["--map-root-user", "--mount", "bash", "-c",
        `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib || exit 99\n${script}`, "selfhost-step", "test"], { input: stdin, encoding: "utf8" });
    return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

describe("remote steps", () => {
    // A step's URN is its identity in state: a new one makes Pulumi delete the old Command at the end of
    // `up`, and a Command's delete is the handover (mail stopped, volume unmounted) on the live server.
    // Rename a step only with `aliases: [{ name: "<old>" }]`; then add the new URN here.
    const STEP_URNS = [
        ...["base", "backup", "hardening", "resolver", "tls", "web", "mail", "webmail", "xmpp", "status"]
            .map(name => `urn:pulumi:test::selfhost::selfhost:index:RemoteStep$command:remote:Command::${name}`),
        "urn:pulumi:test::selfhost::selfhost:index:Host$command:remote:Command::before-server-type-change",
    ];
    it("stop mail and flush disks before Hetzner powers the server off for a new type, and only then", async () => {
        const run = await runProgram(baseConfig());
        const hook = run.one("command:remote:Command", "before-server-type-change");
        assert.equal(hook.inputs.create, undefined, "no create: the provider does nothing (not even connect) until it goes");
        assert.deepEqual(hook.inputs.triggers, ["cx23"], "replaced, so its delete runs, exactly when the type changes");
        assert.equal(hook.options.deleteBeforeReplace, true);
        const script = scriptOf(unsecret<string>(hook.inputs.delete).replace("selfhost-before-power-off", "selfhost-step x"));
        assert.match(script, /^systemctl stop nginx postfix dovecot redis-server prosody roundcube \|\| true\nsync$/m);
        assert.ok(run.one("hcloud:index/server:Server").dependencies.includes(hook.urn), "the server's update waits for it");
        assert.equal(run.one("hcloud:index/server:Server").inputs.keepDisk, true, "a type change keeps the disk, so the server can shrink again");
    });

    it("keep their URNs, or name the old one in an alias", async () => {
        const run = await runProgram(baseConfig());
        const commands = run.all("command:remote:Command");
        const known = new Set([...commands.map(c => c.urn), ...commands.flatMap(c => c.options.aliases.map(a =>
            a.startsWith("urn:") ? a : c.urn.replace(/::[^:]+$/, `::${a}`)))]);
        for (const urn of STEP_URNS) assert.ok(known.has(urn), `no step has the URN ${urn} or an alias to it`);
        for (const c of commands) assert.ok(STEP_URNS.includes(c.urn), `a new step ${c.urn}: add it to STEP_URNS`);
    });

    it("connect as the stack's deploy user on sshPort with the deploy key, after the volume is attached, in order", async () => {
        const run = await runProgram({ ...baseConfig(), adminUser: "carol", sshPort: 2345 });
        assert.deepEqual(commands(run).map(c => c.name), ["base", "backup", "hardening", "resolver", "tls", "web", "mail", "webmail", "xmpp", "status"]);
        const deployKey = run.one("tls:index/privateKey:PrivateKey", "deploy-key").state.privateKeyOpenssh;
        for (const c of commands(run)) {
            assert.ok(isSecret(c.inputs.connection), "the connection (with its private key) is secret");
            const conn = unsecret(c.inputs.connection);
            assert.deepEqual([conn.host, conn.port, conn.user, conn.privateKey], ["198.51.100.10", 2345, "selfhost", deployKey]);
            assert.equal(c.inputs.addPreviousOutputInEnv, false, "Debian's sshd refuses PULUMI_COMMAND_STDOUT: a warning on every update");
            assert.match(unsecret<string>(c.inputs.create), /^sudo -n bash -c '/);
            assert.deepEqual(c.inputs.triggers, [run.one("hcloud:index/server:Server").id], "a new server re-runs the step");
        }
        const deps = (name: string) => run.one("command:remote:Command", name).dependencies;
        assert.ok(deps("base").some(d => d.endsWith("VolumeAttachment::data")));
        assert.ok(deps("backup").some(d => d.endsWith("Command::base")));
        assert.ok(deps("hardening").some(d => d.endsWith("Command::backup")), "an empty volume is restored before any service is configured");
        assert.ok(deps("resolver").some(d => d.endsWith("Command::hardening")), "no service before the firewall");
        assert.ok(deps("tls").some(d => d.endsWith("Command::resolver")));
        assert.ok(deps("tls").some(d => d.includes("zoneRrset:ZoneRrset::A-@")), "certificates wait for the DNS records");
        assert.ok(deps("web").some(d => d.endsWith("Command::tls")));
    });

    it("generate scripts that bash accepts", async () => {
        for (const mode of ["acme", "private-ca"]) {
            const run = await runProgram({ ...baseConfig(), tlsMode: mode });
            for (const c of commands(run)) {
                const r = spawnSync("bash", ["-n", "-c", scriptOf(unsecret(c.inputs.create))], { encoding: "utf8" });
                assert.equal(r.status, 0, `${mode}/${c.name}: ${r.stderr}`);
            }
        }
    });

    it("send secrets on stdin only: the private-CA key is never in a command line", async () => {
        const run = await runProgram({ ...baseConfig(), tlsMode: "private-ca" });
        const tlsStep = run.one("command:remote:Command", "tls");
        const key = run.one("tls:index/privateKey:PrivateKey", "server-key").state.privateKeyPem as string;
        const body = key.split("\n")[1];
        for (const c of commands(run)) assert.ok(!unsecret<string>(c.inputs.create).includes(body));
        assert.ok(isSecret(tlsStep.inputs.stdin));
        const [name, value] = unsecret<string>(tlsStep.inputs.stdin).trim().split(" ");
        assert.equal(name, "s0");
        assert.equal(Buffer.from(value, "base64").toString(), key);
        assert.match(scriptOf(create(run, "tls")), /put_secret s0 '\/srv\/tls\/private-ca\/privkey.pem' 0600/);
        assert.ok(run.outputs.caCertificate.startsWith("-----BEGIN CERTIFICATE-----"));
        for (const c of commands(run).filter(c => !["tls", "mail", "xmpp", "backup"].includes(c.name))) assert.equal(c.inputs.stdin, undefined);
    });

    it("change only when their own content changes", async () => {
        const base = await runProgram(baseConfig());
        const changed = await runProgram({ ...baseConfig(), acmeServer: "https://acme-staging-v02.api.letsencrypt.org/directory", dmarcPolicy: "reject" });
        const diff = commands(base).filter(c => create(changed, c.name) !== create(base, c.name)).map(c => c.name);
        assert.deepEqual(diff, ["tls"]);
    });

    describe("runner (run locally)", () => {
        let dir: string;
        beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-runner-")); });
        afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
        const file = (name: string) => path.join(dir, name);

        it("installs files, then changes nothing on a second run", () => {
            const script = stepScript("t", { files: [{ path: file("a.conf"), content: "a = 1\n", mode: "0640" }], run: "changed && echo RELOAD" });
            const first = runLocally(script);
            assert.equal(first.code, 0, first.out);
            assert.match(first.out, /RELOAD/);
            assert.match(first.out, /1 file\(s\) changed/);
            assert.equal(fs.readFileSync(file("a.conf"), "utf8"), "a = 1\n");
            assert.equal((fs.statSync(file("a.conf")).mode & 0o777).toString(8), "640");
            const second = runLocally(script);
            assert.equal(second.code, 0, second.out);
            assert.doesNotMatch(second.out, /RELOAD/);
            assert.match(second.out, /0 file\(s\) changed, 0 package\(s\) installed/);
        });

        it("restores the previous files and stops before reloading when the check fails", () => {
            fs.writeFileSync(file("good.conf"), "good\n");
            const script = stepScript("t", {
                files: [{ path: file("good.conf"), content: "broken\n" }, { path: file("new.conf"), content: "new\n" }],
                check: `check grep -q good ${file("good.conf")}`,
                run: "echo RELOAD",
            });
            const r = runLocally(script);
            assert.notEqual(r.code, 0);
            assert.match(r.out, /check failed: grep -q good/);
            assert.match(r.out, /previous configuration restored/);
            assert.doesNotMatch(r.out, /RELOAD/);
            assert.equal(fs.readFileSync(file("good.conf"), "utf8"), "good\n");
            assert.ok(!fs.existsSync(file("new.conf")), "a file the failed step created is removed again");
        });

        it("installs secrets from stdin with their own mode, without echoing them", () => {
            const script = stepScript("t", { secretFiles: [{ path: file("key.pem"), content: "unused" }] });
            const secret = "-----BEGIN TEST-----\nsecret'\"$x\n";
            const r = runLocally(script, `s0 ${Buffer.from(secret).toString("base64")}\n`);
            assert.equal(r.code, 0, r.out);
            assert.equal(fs.readFileSync(file("key.pem"), "utf8"), secret);
            assert.equal((fs.statSync(file("key.pem")).mode & 0o777).toString(8), "600");
            assert.ok(!r.out.includes("secret'"));
        });

        it("keeps content that looks like shell or heredoc syntax verbatim", () => {
            const tricky = "EOF\n$HOME `id` 'q' \"d\" \\n\nSELFHOST_X\n";
            const r = runLocally(stepScript("t", { files: [{ path: file("t"), content: tricky }] }));
            assert.equal(r.code, 0, r.out);
            assert.equal(fs.readFileSync(file("t"), "utf8"), tricky);
        });
    });
});
