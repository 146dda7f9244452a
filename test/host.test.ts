import { strict as assert } from "assert";
import { runProgram, DEFAULT_CLOUD } from "./program";
import { baseConfig, ALICE_KEY } from "./fixtures";
import { publicPorts } from "../services/catalog";

describe("host", () => {
    it("declares the server on its primary IPs, with firewall, keys and user-data", async () => {
        const run = await runProgram(baseConfig());
        const server = run.one("hcloud:index/server:Server");
        const [ip4, ip6] = ["ipv4", "ipv6"].map(t => run.one("hcloud:index/primaryIp:PrimaryIp", t));
        assert.deepEqual(server.inputs.publicNets, [{ ipv4Enabled: true, ipv4: Number(ip4.id), ipv6Enabled: true, ipv6: Number(ip6.id) }]);
        assert.match(server.inputs.userData, /^#cloud-config\n/);
        assert.equal(server.inputs.sshKeys.length, 1);
        assert.equal(run.one("hcloud:index/sshKey:SshKey").inputs.publicKey, ALICE_KEY);
        assert.equal(server.inputs.firewallIds.length, 1);
        assert.equal(server.inputs.deleteProtection, false, "a protected server could not be replaced to migrate");
    });

    it("keeps identity apart from the server: primary IPs not auto-deleted, volume in the same location", async () => {
        const run = await runProgram({ ...baseConfig(), location: "hel1" });
        for (const ip of run.all("hcloud:index/primaryIp:PrimaryIp")) {
            assert.equal(ip.inputs.autoDelete, false);
            assert.equal(ip.inputs.location, "hel1");
            assert.equal(ip.inputs.deleteProtection, true);
            assert.equal(ip.inputs.assigneeType, "server");
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
        const tcp = rules.filter((r: any) => r.protocol === "tcp").map((r: any) => Number(r.port)).sort((a: number, b: number) => a - b);
        assert.deepEqual(tcp, publicPorts(2200).map(p => p.port).sort((a, b) => a - b));
        assert.ok(tcp.includes(2200) && !tcp.includes(22));
        assert.ok(rules.some((r: any) => r.protocol === "icmp"));
        for (const r of rules) assert.deepEqual(r.sourceIps, ["0.0.0.0/0", "::/0"]);
    });

    it("makes ED25519 deploy and backup keys and a 2048-bit RSA DKIM key", async () => {
        const run = await runProgram(baseConfig());
        const keys = run.all("tls:index/privateKey:PrivateKey").map(k => [k.name, k.inputs.algorithm, k.inputs.rsaBits]);
        assert.deepEqual(keys.sort(), [["backup-key", "ED25519", undefined], ["deploy-key", "ED25519", undefined], ["dkim-selfhost", "RSA", 2048]]);
    });

    it("follows protectData and protectServer", async () => {
        const run = await runProgram({ ...baseConfig(), protectData: false, protectServer: true });
        assert.equal(run.one("hcloud:index/volume:Volume").inputs.deleteProtection, false);
        const server = run.one("hcloud:index/server:Server");
        assert.equal(server.inputs.deleteProtection, true);
        assert.equal(server.inputs.rebuildProtection, true);
    });

    it("is deterministic: a second run declares identical inputs", async () => {
        const first = await runProgram(baseConfig());
        const second = await runProgram(baseConfig());
        const inputs = (r: typeof first) => Object.fromEntries(r.resources.map(x => [`${x.type}::${x.name}`, x.inputs]));
        assert.deepEqual(inputs(second), inputs(first));
        assert.deepEqual(second.outputs, first.outputs);
    });
});
