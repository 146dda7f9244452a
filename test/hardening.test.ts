import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { runProgram, unsecret, stepFiles } from "./program";
import { baseConfig, settings } from "./fixtures";
import { validate, schema } from "../config";
import { nftRuleset, jails, jailNames, JAIL_CONF } from "../components/hardening";
import { LOOPBACK_CLIENTS } from "../components/mail";


/**
 * nft's own checker, as the step runs it. nft resolves user names
 * when it loads the rules: the server's packages made those users, this machine has none of them.
 */
function nftCheck(ruleset: string): { code: number; out: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nft-"));
    const file = path.join(dir, "rules.nft");
    const users = LOOPBACK_CLIENTS.flatMap(c => c.users).filter(u => typeof u === "string");
    fs.writeFileSync(file, users.reduce((r, u) => r.replaceAll(`, ${u} }`, ", 65534 }"), ruleset));
    // In a network namespace of its own: nft needs no root there, and this machine's rules stay out of it.
    const r = spawnSync("unshare", ["--map-root-user", "--net", "nft", "-c", "-f", file], { encoding: "utf8" });
    fs.rmSync(dir, { recursive: true });
    return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

const acceptedTcp = (ruleset: string, chain: string) => {
    const body = ruleset.split(`chain ${chain} {`)[1].split("}\n\n")[0];
    return [...body.matchAll(/^\s*tcp dport (?:\{ ([\d, ]+) \}|(\d+)) accept$/gm)].flatMap(m => (m[1] ?? m[2]).split(", ").map(Number)).sort((a, b) => a - b);
};

describe("hardening", () => {
    it("opens in nftables exactly the TCP ports of the Hetzner firewall, default-deny in and forward", async () => {
        const run = await runProgram(baseConfig());
        const firewall = run.one("hcloud:index/firewall:Firewall");
        const cloudPorts = firewall.inputs.rules.filter((r: { protocol: string }) => r.protocol === "tcp").map((r: { port: string }) => Number(r.port)).sort((a: number, b: number) => a - b);
        const create: string = unsecret(run.one("command:remote:Command", "hardening").inputs.create);
        const ruleset = nftRuleset(settings());
        assert.ok(create.includes(ruleset.split("\n").slice(8, 14).join("\n")), "the step carries the ruleset");
        assert.deepEqual(acceptedTcp(ruleset, "input"), cloudPorts);
        assert.match(ruleset, /chain input \{\n\s+type filter hook input priority filter; policy drop;/);
        assert.match(ruleset, /chain forward \{\n\s+type filter hook forward priority filter; policy drop;/);
        assert.match(ruleset, /add @ssh_meter4 \{ ip saddr limit rate over 10\/minute burst 20 packets \} drop/);
        assert.match(ruleset, /^table inet selfhost\ndelete table inet selfhost\n/m, "one transaction replaces only our table");
    });

    it("lets only root and each loopback service's own clients connect to it: no local process gets rspamd to sign or learn", () => {
        const rules = nftRuleset(settings()).split("\n").map(l => l.trim());
        for (const [port, users] of [[25, "0"], [11332, "0, postfix"], [11334, "0, 5000"], [6379, "0, _rspamd"]]) {
            const rule = `oif lo tcp dport ${port} meta skuid != { ${users} } reject with tcp reset`;
            assert.ok(rules.indexOf(rule) >= 0 && rules.indexOf(rule) < rules.indexOf("oif lo accept"), rule);
        }
    });

    it("passes nft's own checker in every shape, and a broken ruleset does not", function () {
        if (spawnSync("nft", ["--version"]).status !== 0) this.skip();
        for (const change of [{}, { adminSources: ["203.0.113.7", "2001:db8::/48"] }, { restrictOutbound: false }, { outboundPorts: [8443, 9000] }]) {
            const r = nftCheck(nftRuleset(settings(change)));
            assert.equal(r.code, 0, `${JSON.stringify(change)}: ${r.out}`);
        }
        assert.notEqual(nftCheck(nftRuleset(settings()).replace("policy drop;", "policy dorp;")).code, 0);
    });

    it("with adminSources, lets SSH in only from them, in nftables and the Hetzner firewall, and never bans them", async () => {
        const adminSources = ["203.0.113.7", "2001:db8::/48"];
        const run = await runProgram({ ...baseConfig(), adminSources, sshPort: 2345 });
        const ssh = run.one("hcloud:index/firewall:Firewall").inputs.rules.find((r: { port: string }) => r.port === "2345");
        assert.deepEqual(ssh.sourceIps, ["203.0.113.7/32", "2001:db8::/48"]);
        const ruleset = nftRuleset(settings({ adminSources, sshPort: 2345 }));
        assert.match(ruleset, /ip saddr \{ 203\.0\.113\.7\/32 \} tcp dport 2345 accept/);
        assert.match(ruleset, /ip6 saddr \{ 2001:db8::\/48 \} tcp dport 2345 accept/);
        assert.ok(!acceptedTcp(ruleset, "input").includes(2345), "no open rule for SSH");
        assert.match(jails(settings({ adminSources })), /^ignoreip = 127\.0\.0\.0\/8 ::1 203\.0\.113\.7\/32 2001:db8::\/48$/m);
    });

    it("closes the metadata service (user-data holds the host key) to every process but root's, before any accept rule", () => {
        for (const restrictOutbound of [true, false]) {
            const output = nftRuleset(settings({ restrictOutbound })).split("chain output {")[1];
            const close = output.indexOf("ip daddr 169.254.169.254 meta skuid != 0 reject");
            const firstAccept = output.search(/dport .* accept/);
            assert.ok(close > 0 && (firstAccept < 0 || close < firstAccept), output);
        }
    });

    it("lets the server connect out only where its services need to, the ACME server's port included", () => {
        const ruleset = nftRuleset(settings({ acmeServer: "https://ca.example:14000/dir", caaIssuer: "ca.example", outboundPorts: [8443] }));
        assert.match(ruleset, /type filter hook output priority filter; policy drop;/);
        assert.deepEqual(acceptedTcp(ruleset, "output"), [23, 25, 53, 80, 443, 5269, 8443, 14000]);
        assert.match(ruleset, /udp dport \{ 53, 123, 11335 \} accept/);
        assert.match(nftRuleset(settings({ restrictOutbound: false })), /hook output priority filter; policy accept;/);
    });

    it("gives port forwards and extra sessions to the admin alone, sets kernel-wide keys a container may refuse, and keeps no core dumps", async () => {
        const run = await runProgram({ ...baseConfig(), adminUser: "ops" });
        const files = stepFiles(run, "hardening");
        const sshd = files.get("/etc/ssh/sshd_config.d/10-selfhost-hardening.conf")!.content;
        // Global values first (what the deploy and git users get), then the admin's: a Match block ends with its file.
        assert.match(sshd, /^AllowTcpForwarding no\nMaxSessions 2\n(#.*\n)*Match User ops\n {4}AllowTcpForwarding local\n {4}MaxSessions 10\n$/m);
        assert.ok(sshd.trimEnd().endsWith("MaxSessions 10"), "nothing after the Match block");
        const sysctl = files.get("/etc/sysctl.d/90-selfhost.conf")!.content;
        assert.match(sysctl, /^net\.ipv4\.ip_forward = 0$/m);
        assert.match(sysctl, /^net\.ipv4\.conf\.all\.log_martians = 1$/m);
        // Per network namespace: set on the local target too. Kernel-wide: "-", a container may refuse them.
        const keys = [...sysctl.matchAll(/^(-?)([\w.-]+) = /gm)];
        assert.ok(keys.length > 20);
        for (const [, dash, key] of keys) assert.equal(dash === "-", !key.startsWith("net.") || key.startsWith("net.core."), key);
        assert.match(unsecret<string>(run.one("command:remote:Command", "hardening").inputs.create), /sysctl -q -e -p \/etc\/sysctl\.d\/90-selfhost\.conf/);
        const limits = files.get("/etc/security/limits.d/10-coredump-debian.conf")!.content;
        for (const domain of ["\\*", "root"]) assert.match(limits, new RegExp(`^${domain}\\s+hard\\s+core\\s+0$`, "m"));
        assert.match(files.get("/etc/systemd/coredump.conf.d/selfhost.conf")!.content, /^Storage=none$/m);
        assert.ok(files.has(JAIL_CONF) && files.has("/etc/issue.net"));
        assert.match(files.get("/etc/apt/listchanges.conf.d/selfhost.conf")!.content, /^frontend=mail\nwhich=news\nemail_address=root$/m);
    });

    it("bans on the journal with the configured times, on the configured SSH port", () => {
        const conf = jails(settings({ banTime: 600, recidiveBanTime: 86400, sshPort: 2345 }));
        assert.match(conf, /^backend = systemd$/m);
        assert.match(conf, /^bantime = 600$/m);
        assert.match(conf, /\[recidive\][^[]*bantime = 86400/);
        assert.match(conf, /\[sshd\]\nenabled = true\nport = 2345/);
        for (const jail of ["sshd", "postfix", "postfix-sasl", "dovecot", "prosody", "recidive", "roundcube"]) assert.match(conf, new RegExp(`\\[${jail}\\]\\nenabled = true`));
        // The step waits for exactly these before it reports done.
        assert.deepStrictEqual(jailNames(conf), ["sshd", "postfix", "postfix-sasl", "dovecot", "prosody", "recidive", "roundcube"]);
    });
});
