import { strict as assert } from "assert";
import { runProgram, DEFAULT_CLOUD, stepFiles, scriptOf, unsecret } from "./program";
import { baseConfig, ALICE_KEY, BOB_KEY } from "./fixtures";
import { publicPorts, portSpec } from "../services/catalog";

describe("host", () => {
    it("declares the server on its primary IPs, with firewall, keys and user-data", async () => {
        const run = await runProgram(baseConfig());
        const server = run.one("hcloud:index/server:Server");
        const [ip4, ip6] = ["ipv4", "ipv6"].map(t => run.one("hcloud:index/primaryIp:PrimaryIp", t));
        assert.deepEqual(server.inputs.publicNets, [{ ipv4Enabled: true, ipv4: Number(ip4.id), ipv6Enabled: true, ipv6: Number(ip6.id) }]);
        assert.match(unsecret(server.inputs.userData), /^#cloud-config\n/);
        // One stack-owned key at Hetzner: a user's key may already be in the project (uniqueness_error).
        const deployKey = run.one("tls:index/privateKey:PrivateKey", "deploy-key").state.publicKeyOpenssh.trim();
        assert.deepEqual(run.all("hcloud:index/sshKey:SshKey").map(k => k.inputs.publicKey), [deployKey]);
        assert.match(run.one("hcloud:index/sshKey:SshKey").inputs.name, /^selfhost deploy [0-9a-f]{16}$/);
        assert.equal(server.inputs.sshKeys.length, 1);
        assert.ok(!JSON.stringify(run.all("hcloud:index/sshKey:SshKey")).includes(ALICE_KEY.split(" ")[1]));
        assert.equal(server.inputs.firewallIds.length, 1);
        assert.equal(server.inputs.deleteProtection, false, "a protected server could not be replaced to migrate");
    });

    it("keeps identity apart from the server: primary IPs not auto-deleted, volume in the same location", async () => {
        const run = await runProgram({ ...baseConfig(), location: "hel1" });
        for (const ip of run.all("hcloud:index/primaryIp:PrimaryIp")) {
            assert.equal(ip.inputs.autoDelete, false);
            assert.equal(ip.inputs.location, "hel1");
            assert.equal(ip.inputs.deleteProtection, true);
            assert.equal(ip.inputs.assigneeType, undefined, "without an assigneeId the provider warns on every run: the server names its IPs");
        }
        const volume = run.one("hcloud:index/volume:Volume");
        assert.equal(volume.inputs.location, "hel1");
        assert.equal(volume.inputs.format, "ext4");
        assert.equal(volume.inputs.size, 10);
        assert.equal(volume.inputs.deleteProtection, true);
        const attachment = run.one("hcloud:index/volumeAttachment:VolumeAttachment");
        assert.equal(typeof attachment.inputs.serverId, "number");
        assert.equal(typeof attachment.inputs.volumeId, "number");
    });

    it("sets forward-confirmed reverse DNS on both primary IPs", async () => {
        const run = await runProgram(baseConfig());
        const ptrs = run.all("hcloud:index/rdns:Rdns");
        assert.deepEqual(ptrs.map(p => [p.inputs.ipAddress, p.inputs.dnsPtr]).sort(), [
            ["198.51.100.10", "mail.example.org"],
            ["2001:db8:10::1", "mail.example.org"],
        ]);
        for (const p of ptrs) assert.equal(typeof p.inputs.primaryIpId, "number");
        const forward = run.outputs.records.filter((r: any) => r.name === "mail" && r.type !== "TXT").map((r: any) => r.values[0]).sort();
        assert.deepEqual(forward, [DEFAULT_CLOUD.ipv4, "2001:db8:10::1"]);
    });

    it("opens exactly the exported port list (plus ICMP) in the Hetzner firewall", async () => {
        const run = await runProgram({ ...baseConfig(), sshPort: 2200 });
        const rules = run.one("hcloud:index/firewall:Firewall").inputs.rules;
        for (const protocol of ["tcp", "udp"]) {
            const opened = rules.filter((r: any) => r.protocol === protocol).map((r: any) => r.port).sort();
            assert.deepEqual(opened, publicPorts(2200).filter(p => p.protocol === protocol).map(portSpec).sort());
        }
        const tcp = rules.filter((r: any) => r.protocol === "tcp").map((r: any) => r.port);
        assert.ok(tcp.includes("2200") && !tcp.includes("22"));
        // TURN's relay ports, as one rule: "80-85" is the provider's range syntax (terraform-provider-hcloud docs/resources/firewall.md).
        assert.ok(rules.some((r: any) => r.protocol === "udp" && r.port === "50000-50199"));
        assert.ok(rules.some((r: any) => r.protocol === "icmp"));
        for (const r of rules) assert.deepEqual(r.sourceIps, ["0.0.0.0/0", "::/0"]);
    });

    it("makes ED25519 deploy, host and backup keys and a 2048-bit RSA DKIM key", async () => {
        const run = await runProgram(baseConfig());
        const keys = run.all("tls:index/privateKey:PrivateKey").map(k => [k.name, k.inputs.algorithm, k.inputs.rsaBits]);
        assert.deepEqual(keys.sort(), [["backup-key", "ED25519", undefined], ["deploy-key", "ED25519", undefined], ["dkim-selfhost", "RSA", 2048], ["host-key", "ED25519", undefined]]);
    });

    it("follows protectData and protectServer", async () => {
        const run = await runProgram({ ...baseConfig(), protectData: false, protectServer: true });
        assert.equal(run.one("hcloud:index/volume:Volume").inputs.deleteProtection, false);
        const server = run.one("hcloud:index/server:Server");
        assert.equal(server.inputs.deleteProtection, true);
        assert.equal(server.inputs.rebuildProtection, true);
        // Hetzner's flag refuses only once the handover ran; Pulumi's refuses before anything runs.
        assert.equal(server.options.protect, true);
        const open = await runProgram(baseConfig());
        assert.equal(open.one("hcloud:index/server:Server").options.protect, false);
        assert.equal(open.one("hcloud:index/volume:Volume").options.protect, true);
    });

    it("installs the admin, the user's keys, sudo and the hostname in the base step, checked by sshd and visudo", async () => {
        const run = await runProgram({ ...baseConfig(), adminUser: "carol", sshPublicKeys: [ALICE_KEY, BOB_KEY], sshPort: 2345 });
        const files = stepFiles(run, "base");
        // The stack's keys in /etc (root's), not in the home, which is the user's and lives on the volume.
        assert.equal(files.get("/etc/ssh/authorized_keys/carol")?.content, `${ALICE_KEY}\n${BOB_KEY}\n`);
        assert.ok(![...files.keys()].some(f => f.startsWith("/home/")), [...files.keys()].join(" "));
        assert.equal(files.get("/etc/sudoers.d/selfhost-admin")?.content, "carol ALL=(ALL) NOPASSWD:ALL\n");
        assert.equal(files.get("/etc/sudoers.d/selfhost-admin")?.mode, "0440");
        const sshd = files.get("/etc/ssh/sshd_config.d/00-selfhost.conf")!.content.split("\n");
        assert.ok(sshd.includes("AllowUsers selfhost carol git") && sshd.includes("Port 2345"), sshd.join("\n"));
        assert.ok(sshd.includes("AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys"), sshd.join("\n"));
        const script = scriptOf(unsecret(run.one("command:remote:Command", "base").inputs.create));
        // Named before any package is installed (postfix reads the name then).
        assert.ok(script.indexOf("echo mail > /etc/hostname") < script.search(/^ensure_packages /m), "hostname after the packages");
        assert.match(script, /echo '127\.0\.1\.1 mail\.example\.org mail' >> \/etc\/hosts/);
        assert.match(script, /^check sshd -t$/m);
        assert.match(script, /^check visudo -c -q -f \/etc\/sudoers.d\/selfhost-admin$/m);
        assert.match(script, /useradd --create-home --shell \/bin\/bash --comment "selfhost administrator" carol/);
        // Every step logs in as the stack's deploy user, whatever the admin is called.
        for (const c of run.all("command:remote:Command")) assert.equal(unsecret(c.inputs.connection).user, "selfhost");
    });

    it("is deterministic: a second run declares identical inputs", async () => {
        const first = await runProgram(baseConfig());
        const second = await runProgram(baseConfig());
        const inputs = (r: typeof first) => Object.fromEntries(r.resources.map(x => [`${x.type}::${x.name}`, x.inputs]));
        assert.deepEqual(inputs(second), inputs(first));
        assert.deepEqual(second.outputs, first.outputs);
    });
});
