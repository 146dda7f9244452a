import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import { runProgram, stepFiles, scriptOf, unsecret } from "./program";
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
