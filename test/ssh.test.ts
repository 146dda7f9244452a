/**
 * sshPort moves in place: the ports each `up` opens and connects on, from what the live project holds
 * (the server's boot-port label, the "ssh" firewall written after a whole `up`), and what that does
 * under the providers' rules (test/providers.ts).
 */
import { strict as assert } from "assert";
import { sshPorts } from "../components/ssh";
import { runProgram, liveAfter, unsecret, stepFiles, ProgramRun, DEFAULT_CLOUD, LiveCloud } from "./program";
import { baseConfig } from "./fixtures";
import { plan } from "./providers";

const SERVER = "hcloud:index/server:Server";
const run = (change: Record<string, unknown>, live?: LiveCloud) => runProgram({ ...baseConfig(), ...change }, { cloud: { ...DEFAULT_CLOUD, live } });
/** The port each step connects on, by step name. */
const portsOf = (r: ProgramRun) => Object.fromEntries(r.all("command:remote:Command").filter(c => c.inputs.create !== undefined)
    .map(c => [c.name, unsecret(c.inputs.connection).port]));
const sshFirewall = (r: ProgramRun) => r.all("hcloud:index/firewall:Firewall").find(f => f.inputs.labels.role === "ssh")!;
const mainFirewall = (r: ProgramRun) => r.all("hcloud:index/firewall:Firewall").find(f => !f.inputs.labels.role)!;
const sshRulePorts = (r: ProgramRun) => mainFirewall(r).inputs.rules.filter((x: any) => /^SSH/.test(x.description)).map((x: any) => Number(x.port)).sort();
const file = (r: ProgramRun, step: string, path: string) => stepFiles(r, step).get(path)?.content ?? "";

describe("sshPort in place", () => {
    it("picks the ports from the live project", () => {
        const s = { sshPort: 2222, image: "debian-13", location: "fsn1" as const };
        const server = { image: "debian-13", location: "fsn1", labels: { "ssh-boot-port": "22" } };
        assert.deepEqual(sshPorts(s, {}), { boot: 2222, current: 2222, open: [2222] }, "a first up boots on sshPort");
        assert.deepEqual(sshPorts(s, { server, provenPort: 22 }), { boot: 22, current: 22, open: [2222, 22] }, "a move keeps the proven port");
        assert.deepEqual(sshPorts(s, { server, provenPort: 2222 }), { boot: 22, current: 2222, open: [2222] }, "proven: the old port closes");
        assert.deepEqual(sshPorts(s, { server }), { boot: 22, current: 22, open: [2222, 22] }, "no record yet: the boot port");
        assert.deepEqual(sshPorts(s, { server: { ...server, image: "debian-12" }, provenPort: 22 }), { boot: 2222, current: 2222, open: [2222] },
            "a new image is a new server, booting on sshPort");
        assert.deepEqual(sshPorts(s, { server: { ...server, image: "" }, provenPort: 2222 }).boot, 22, "an image the API no longer names is no change");
    });

    it("a second up of the same config reads the project and changes nothing (the first preview after up is empty)", async () => {
        const first = await run({});
        const second = await run({}, liveAfter(first));
        assert.deepEqual([...plan(first, second).actions], []);
    });

    it("a move opens the new port beside the proven one, moves sshd from there, proves the new port with every later step", async () => {
        const first = await run({});
        const moving = await run({ sshPort: 2200 }, liveAfter(first));
        const p = plan(first, moving);
        assert.equal(p.actions.get(moving.one(SERVER).urn), undefined, "the server is not touched: its user-data keeps the boot port");
        assert.equal(p.handover, false);
        assert.deepEqual(sshRulePorts(moving), [2200, 2222]);
        assert.deepEqual(portsOf(moving), { base: 2222, backup: 2222, hardening: 2222, resolver: 2200, tls: 2200, web: 2200, mail: 2200, webmail: 2200, xmpp: 2200, status: 2200 });
        assert.match(file(moving, "base", "/etc/ssh/sshd_config.d/00-selfhost.conf"), /^Port 2200\nPort 2222\n/);
        assert.match(file(moving, "hardening", "/etc/nftables.conf"), /tcp dport \{ 2200, 2222 \} ct state new add @ssh_meter4/);
        assert.deepEqual(sshFirewall(moving).inputs.rules.map((x: any) => x.port), ["2200"], "recorded once the whole up went through");
        assert.ok(sshFirewall(moving).dependencies.includes(moving.all("command:remote:Command").find(c => c.name === "status")!.urn));

        // An up cut off before the end left the record at 2222: the next one does the same again.
        const interrupted = { ...liveAfter(moving), firewalls: liveAfter(first).firewalls };
        assert.deepEqual(portsOf(await run({ sshPort: 2200 }, interrupted)), portsOf(moving));

        const settled = await run({ sshPort: 2200 }, liveAfter(moving));
        assert.deepEqual(sshRulePorts(settled), [2200], "the old port closes");
        assert.ok(Object.values(portsOf(settled)).every(port => port === 2200));
        assert.match(file(settled, "base", "/etc/ssh/sshd_config.d/00-selfhost.conf"), /^Port 2200\nAuthorizedKeysFile /);
        assert.equal(plan(first, settled).actions.get(settled.one(SERVER).urn), undefined, "still the same server");
        const again = await run({ sshPort: 2200 }, liveAfter(settled));
        assert.deepEqual([...plan(settled, again).actions], [], "and then nothing is left to do");
    });

    it("a new hostname after a move renames the server in place; it does not read as a new server", async () => {
        const settled = await run({ sshPort: 2200 }, liveAfter(await run({ sshPort: 2200 }, liveAfter(await run({})))));
        const renamed = await run({ sshPort: 2200, hostname: "mx.example.org" }, liveAfter(settled));
        assert.equal(plan(settled, renamed).actions.get(renamed.one(SERVER).urn), "update");
        assert.equal(renamed.one(SERVER).inputs.labels["ssh-boot-port"], "2222", "still the port it booted on");
    });

    it("a server made after a move boots on the moved port", async () => {
        const settled = await run({ sshPort: 2200 }, liveAfter(await run({ sshPort: 2200 }, liveAfter(await run({})))));
        const replaced = await run({ sshPort: 2200, image: "debian-14" }, liveAfter(settled));
        assert.equal(plan(settled, replaced).actions.get(replaced.one(SERVER).urn), "replace");
        assert.match(unsecret(replaced.one(SERVER).inputs.userData), /Port 2200\n/);
        assert.equal(replaced.one(SERVER).inputs.labels["ssh-boot-port"], "2200");
        assert.ok(Object.values(portsOf(replaced)).every(port => port === 2200));
    });
});
