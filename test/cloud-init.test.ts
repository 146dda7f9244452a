import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { execFileSync } from "child_process";
import * as YAML from "yaml";
import { runProgram, ProgramRun, isSecret, unsecret } from "./program";
import { baseConfig, ALICE_KEY, BOB_KEY } from "./fixtures";

const userData = (run: ProgramRun): string => unsecret(run.one("hcloud:index/server:Server").inputs.userData);

describe("cloud-init user-data", () => {
    it("creates the stack's deploy user with the deploy key only, locks sshd down on sshPort, mounts the volume", async () => {
        const run = await runProgram({ ...baseConfig(), adminUser: "carol", sshPort: 2345 });
        const text = userData(run);
        assert.match(text, /^#cloud-config\n/);
        const doc = YAML.parse(text);
        const deployKey = run.one("tls:index/privateKey:PrivateKey", "deploy-key").state.publicKeyOpenssh.trim();
        assert.deepEqual(doc.users, [{
            name: "selfhost", gecos: "selfhost deploy (pulumi up)", shell: "/bin/bash",
            sudo: "ALL=(ALL) NOPASSWD:ALL", lock_passwd: true, ssh_authorized_keys: [deployKey],
        }]);
        assert.ok(!text.includes(ALICE_KEY.split(" ")[1]), "the user's keys are the base step's, not first boot's");
        assert.equal(doc.preserve_hostname, true, "the base step names the host");
        assert.equal(doc.disable_root, true);
        assert.equal(doc.ssh_pwauth, false);
        const sshd = doc.write_files.find((f: any) => f.path.startsWith("/etc/ssh/sshd_config.d/")).content;
        for (const line of ["Port 2345", "PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "AllowUsers selfhost", "ClientAliveInterval 30"]) {
            assert.ok(sshd.split("\n").includes(line), `sshd drop-in lacks "${line}"`);
        }
        const volumeId = run.one("hcloud:index/volume:Volume").id;
        assert.deepEqual(doc.mounts[0].slice(0, 3), [`/dev/disk/by-id/scsi-0HC_Volume_${volumeId}`, "/srv", "ext4"]);
        assert.match(doc.mounts[0][3], /nofail/);
    });

    it("holds no secret but the server's own host key, which every connection pins", async () => {
        const run = await runProgram(baseConfig());
        const server = run.one("hcloud:index/server:Server");
        assert.ok(isSecret(server.inputs.userData), "user-data is a secret in state");
        const text = userData(run);
        const hostKey = run.one("tls:index/privateKey:PrivateKey", "host-key").state;
        const doc = YAML.parse(text);
        assert.deepEqual(doc.ssh_keys, { ed25519_private: hostKey.privateKeyOpenssh, ed25519_public: hostKey.publicKeyOpenssh.trim() });
        assert.equal(doc.ssh_deletekeys, true);
        for (const key of run.all("tls:index/privateKey:PrivateKey").filter(k => k.name !== "host-key")) {
            const secret = key.state.privateKeyOpenssh ?? key.state.privateKeyPem;
            const body = secret.split("\n").filter((l: string) => l && !l.startsWith("-----")).join("");
            // Past the header every OpenSSH key shares: the key material itself.
            assert.ok(!text.includes(body.slice(-60)), `user-data contains ${key.name}'s private key`);
        }
        for (const c of run.all("command:remote:Command")) {
            assert.equal(unsecret(c.inputs.connection).hostKey, hostKey.publicKeyOpenssh.trim(), `${c.name} does not pin the host key`);
        }
        assert.match(run.outputs.sshKnownHosts, /^\[198\.51\.100\.10\]:2222,\[mail\.example\.org\]:2222 ssh-ed25519 /);
    });

    it("is unchanged by every service setting, so tuning a service never replaces the server", async () => {
        const base = userData(await runProgram(baseConfig()));
        const serviceChanges: Record<string, unknown>[] = [
            { dmarcPolicy: "reject" }, { mtaStsMode: "enforce" }, { dnsProvider: "gandi", gandiToken: "pat0123456789" }, { dnsTtl: 300 },
            { tlsMode: "private-ca" }, { dkimSelector: "s2" }, { users: [{ name: "dave" }] }, { adminEmail: "me@example.com" },
            { volumeSizeGb: 40 }, { serverType: "cx33" }, { protectData: false },
            // Access and identity are the base step's: editing them must not replace the server.
            { sshPublicKeys: [ALICE_KEY, BOB_KEY] }, { sshPublicKeys: [BOB_KEY] }, { adminUser: "carol" },
            { adminSources: ["203.0.113.0/24"] }, { hostname: "mx.example.org" },
        ];
        for (const change of serviceChanges) {
            assert.equal(userData(await runProgram({ ...baseConfig(), ...change })), base, `${JSON.stringify(change)} changed the user-data`);
        }
        assert.notEqual(userData(await runProgram({ ...baseConfig(), sshPort: 2200 })), base, "sshPort is first-boot state");
    });

    it("passes cloud-init's own schema check", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-ud-"));
        const file = path.join(dir, "user-data");
        fs.writeFileSync(file, userData(await runProgram(baseConfig())));
        try {
            const out = execFileSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8", stdio: "pipe" });
            assert.match(out, /Valid (cloud-config|schema)/);
        } catch (e: any) {
            assert.fail(`cloud-init schema rejected the user-data:\n${e.stdout ?? ""}${e.stderr ?? e.message}`);
        } finally {
            fs.rmSync(dir, { recursive: true });
        }
    });
});
