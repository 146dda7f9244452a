import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import { runProgram, stepFiles, scriptOf, unsecret, SAMPLE_TLSA, DEFAULT_CLOUD } from "./program";
import { tlsaValues } from "../components/tls";
import { baseConfig } from "./fixtures";

const AWAIT_DNS = "/usr/local/sbin/selfhost-await-dns";

/** Runs the TLS step's DNS wait with a stand-in getent that answers `answers` in turn (the last one from then on). */
function awaitDns(script: string, answers: string[], names: string[]): { code: number; stdout: string; stderr: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-await-"));
    try {
        fs.writeFileSync(path.join(dir, "answers"), answers.join("\n") + "\n");
        // DNS only: /etc/hosts gives the host's own name 127.0.1.1 (the local target found it).
        fs.writeFileSync(path.join(dir, "getent"), `#!/bin/sh\n[ "$1 $2" = "-s dns" ] || { echo "127.0.1.1 STREAM $4"; exit 0; }\nline=$(head -1 ${dir}/answers)\n` +
            `[ $(wc -l < ${dir}/answers) -gt 1 ] && sed -i 1d ${dir}/answers\n[ -z "$line" ] || echo "$line STREAM $2"\n`, { mode: 0o755 });
        const r = spawnSync("bash", ["--norc", "-c", script, "await-dns", ...names], {
            stdio: ["ignore", "pipe", "pipe"],
            encoding: "utf8", env: { PATH: `${dir}:/usr/bin:/bin`, AWAIT_DNS_SECONDS: "2", AWAIT_DNS_INTERVAL: "0.1" },
        });
        return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    } finally {
        fs.rmSync(dir, { recursive: true });
    }
}

describe("tls", () => {
    it("waits for public DNS to show the server before certbot asks the CA, and says how to delegate when it does not", async () => {
        const run = await runProgram({ ...baseConfig(), dnsProvider: "hetzner" });
        const script = stepFiles(run, "tls").get(AWAIT_DNS)!.content;
        const steps = scriptOf(unsecret<string>(run.one("command:remote:Command", "tls").inputs.create));
        assert.ok(steps.indexOf(`${AWAIT_DNS} mail.example.org`) < steps.indexOf("certbot certonly"), "the wait comes first");
        const names = ["example.org", "mail.example.org"];

        const ready = awaitDns(script, ["198.51.100.10"], names);
        assert.equal(ready.code, 0, ready.stderr);
        // Not delegated yet, then delegated: it waits, saying for what, and goes on.
        const later = awaitDns(script, ["", "203.0.113.9", "198.51.100.10"], names);
        assert.equal(later.code, 0, later.stderr);
        assert.match(later.stdout, /^waiting for example\.org to resolve to 198\.51\.100\.10 \(now: nothing\)$/m);
        // Never: it gives up in time, with the exact next step.
        const never = awaitDns(script, ["203.0.113.9"], names);
        assert.equal(never.code, 1);
        assert.equal(never.stderr.trim(), "example.org resolves to 203.0.113.9, not 198.51.100.10, in public DNS: delegate example.org to " +
            "hydrogen.ns.hetzner.com. oxygen.ns.hetzner.com. at your registrar (pulumi stack output nameservers); then run pulumi up again");

        const byHand = stepFiles(await runProgram({ ...baseConfig(), dnsProvider: "none" }), "tls").get(AWAIT_DNS)!.content;
        const gandi = stepFiles(await runProgram({ ...baseConfig(), dnsProvider: "gandi", gandiToken: "t" }), "tls").get(AWAIT_DNS)!.content;
        assert.match(awaitDns(gandi, [""], names).stderr, /^example\.org resolves to nothing, .*: make Gandi LiveDNS example\.org's nameservers \(Gandi's domain page, Nameservers\); then run pulumi up again\n$/);
        assert.match(awaitDns(byHand, [""], names).stderr, /^example\.org resolves to nothing, .*: publish the records of the zoneFile output \(pulumi stack output zoneFile\) at your DNS host; then run pulumi up again\n$/);
    });
});

const TLS_KEY = "/usr/local/sbin/selfhost-tls-key";

/**
 * A certbot lineage in a temporary directory, the key script rendered for it, and a stand-in certbot
 * whose renewal does what certbot's `renew --reuse-key` does: a new certificate for the lineage's own key.
 */
function keyWorld(script: string) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-tls-key-"));
    const at = (p: string) => path.join(dir, p);
    for (const d of ["archive", "live", "bin", "data"]) fs.mkdirSync(at(d));
    const sh = (cmd: string, env: Record<string, string> = {}) => {
        const r = spawnSync("bash", ["-c", cmd], { encoding: "utf8", env: { PATH: `${at("bin")}:/usr/bin:/bin`, ...env } });
        return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
    const issue = [
        "n=$(( $(ls ARCHIVE | grep -c '^cert') + 1 ))",
        "cp \"$(readlink -f LIVE/privkey.pem)\" ARCHIVE/privkey$n.pem",
        "openssl req -x509 -key ARCHIVE/privkey$n.pem -subj /CN=mail.example.org -days 1 -out ARCHIVE/cert$n.pem 2>/dev/null",
        "ln -sfn ARCHIVE/privkey$n.pem LIVE/privkey.pem && ln -sfn ARCHIVE/cert$n.pem LIVE/fullchain.pem",
    ].join("\n").replace(/ARCHIVE/g, at("archive")).replace(/LIVE/g, at("live"));
    fs.writeFileSync(at("bin/certbot"), `#!/bin/bash\n[ -z "\${CERTBOT_FAILS:-}" ] || exit 1\n${issue}\n`, { mode: 0o755 });
    fs.writeFileSync(at("bin/deployed"), `#!/bin/sh\necho "$(readlink ${at("cert")})" >> ${at("deployed.log")}\n`, { mode: 0o755 });
    // The first issuance: a fresh key, as certbot certonly makes it; services read the lineage.
    sh(`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${at("archive/privkey0.pem")} && ln -s ${at("archive/privkey0.pem")} ${at("live/privkey.pem")} && ${issue} && ln -s ${at("live")} ${at("cert")}`);
    const rendered = script.replace(/\/etc\/letsencrypt\/live\/selfhost/g, at("live")).replace(/\/etc\/selfhost\/tls/g, at("cert"))
        .replace(/\/srv\/tls/g, at("data")).replace(/\/usr\/local\/sbin\/selfhost-tls-deployed/g, at("bin/deployed"));
    fs.writeFileSync(at("bin/selfhost-tls-key"), rendered, { mode: 0o755 });
    const spki = (key: string) => sh(`openssl pkey -in ${key} -pubout -outform DER | sha256sum | cut -d' ' -f1`).stdout.trim();
    return { dir, at, sh, served: () => `3 1 1 ${spki(at("cert/privkey.pem"))}`, deployed: () => fs.existsSync(at("deployed.log")) ? fs.readFileSync(at("deployed.log"), "utf8") : "" };
}

describe("tls: the key port 25's TLSA names", () => {
    it("prints the key in use and a next one, moves to the next only when tlsKeyGeneration rises, and keeps the old key when the renewal fails", async () => {
        const run = await runProgram(baseConfig());
        const steps = scriptOf(unsecret<string>(run.one("command:remote:Command", "tls").inputs.create));
        assert.match(steps, /certbot certonly [^\n]*--reuse-key/);
        assert.ok(steps.indexOf(`${TLS_KEY} roll-to 1`) < steps.indexOf(`${TLS_KEY} tlsa --next`), "rolls before it prints");
        const w = keyWorld(stepFiles(run, "tls").get(TLS_KEY)!.content);
        try {
            const first = w.sh("selfhost-tls-key roll-to 1 && selfhost-tls-key tlsa --next");
            assert.equal(first.code, 0, first.stderr);
            const [current, next] = tlsaValues(first.stdout);
            assert.equal(current, w.served());
            assert.notEqual(next, current);
            assert.equal(w.deployed(), "", "generation 1 on a new volume: nothing to roll from");
            // Printing again gives the same pair: the next key is kept, not made anew.
            assert.deepEqual(tlsaValues(w.sh("selfhost-tls-key tlsa --next").stdout), [current, next]);

            // The renewal fails: the services keep the current key (back in the lineage), and the step fails.
            const failed = w.sh("selfhost-tls-key roll-to 2", { CERTBOT_FAILS: "1" });
            assert.equal(failed.code, 1);
            assert.match(failed.stderr, /the current key stays in use/);
            assert.equal(w.served(), current);
            assert.equal(fs.readlinkSync(w.at("cert")), w.at("live"));
            assert.equal(w.sh(`openssl x509 -noout -pubkey -in ${w.at("cert/fullchain.pem")} | openssl pkey -pubin -outform DER | sha256sum`).stdout,
                w.sh(`openssl pkey -in ${w.at("cert/privkey.pem")} -pubout -outform DER | sha256sum`).stdout, "the certificate and key still match");

            const rolled = w.sh("selfhost-tls-key roll-to 2 && selfhost-tls-key tlsa --next");
            assert.equal(rolled.code, 0, rolled.stderr);
            const [now, newNext] = tlsaValues(rolled.stdout);
            assert.equal(now, next, "the key in use now is the one already published as next");
            assert.equal(w.served(), next);
            assert.ok(![current, next].includes(newNext), "a new next key");
            // Services were held on a frozen copy during the renewal, then given the renewed lineage.
            assert.deepEqual(w.deployed().trim().split("\n").slice(-2), [w.at("data/rollover"), w.at("live")]);
            assert.ok(!fs.existsSync(w.at("data/rollover")));
            // Already at 2 (or asked for less): nothing moves.
            assert.deepEqual(tlsaValues(w.sh("selfhost-tls-key roll-to 2 && selfhost-tls-key roll-to 1 && selfhost-tls-key tlsa --next").stdout), [next, newNext]);
            assert.equal(w.sh(`stat -c %a ${w.at("data/next-key.pem")}`).stdout.trim(), "600");
        } finally {
            fs.rmSync(w.dir, { recursive: true });
        }
    });

    it("publishes port 25's TLSA from the tls step's output, after it, and every other record before it", async () => {
        const run = await runProgram({ ...baseConfig(), dnsProvider: "hetzner" });
        const tlsa = run.all("hcloud:index/zoneRrset:ZoneRrset").find(r => r.inputs.type === "TLSA")!;
        assert.equal(tlsa.inputs.name, "_25._tcp.mail");
        assert.deepEqual(tlsa.inputs.records.map((r: { value: string }) => r.value), SAMPLE_TLSA);
        const tlsStep = run.one("command:remote:Command", "tls");
        assert.ok(tlsa.dependencies.includes(tlsStep.urn), "the TLSA waits for the tls step");
        const others = run.all("hcloud:index/zoneRrset:ZoneRrset").filter(r => r.inputs.type !== "TLSA");
        assert.ok(others.every(r => tlsStep.dependencies.includes(r.urn)), "the tls step waits for every other record");
        // A private CA's key is the stack's own: one value, no next key.
        const ca = await runProgram({ ...baseConfig(), dnsProvider: "hetzner", tlsMode: "private-ca" },
            { cloud: { ...DEFAULT_CLOUD, stdout: { tls: `tlsa ${SAMPLE_TLSA[0]}\n` } } });
        assert.deepEqual(ca.all("hcloud:index/zoneRrset:ZoneRrset").find(r => r.inputs.type === "TLSA")!.inputs.records, [{ value: SAMPLE_TLSA[0] }]);
        assert.match(scriptOf(unsecret<string>(ca.one("command:remote:Command", "tls").inputs.create)), new RegExp(`^${TLS_KEY} tlsa$`, "m"));
        assert.throws(() => tlsaValues("0 file(s) changed"), /printed no TLSA data/);
    });
});
