import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import { runProgram, unsecret, scriptOf, stepFiles } from "./program";
import { baseConfig } from "./fixtures";

describe("resolver", () => {
    it("is unbound on loopback, recursing from Debian's root data itself (no forwarder), with dns-root-data installed explicitly", async () => {
        const run = await runProgram(baseConfig());
        const base = scriptOf(unsecret<string>(run.one("command:remote:Command", "base").inputs.create));
        // Only Recommended by unbound: an install without Recommends would have neither root hints nor trust anchor.
        assert.match(base, /^ensure_packages [^\n]*\bunbound\b[^\n]*\bdns-root-data\b/m);
        const conf = stepFiles(run, "resolver").get("/etc/unbound/unbound.conf.d/selfhost.conf")!.content;
        assert.deepEqual([...conf.matchAll(/^\s*interface: (\S+)$/gm)].map(m => m[1]), ["127.0.0.1", "::1"]);
        assert.match(conf, /^\s*root-hints: "\/usr\/share\/dns\/root\.hints"$/m);
        assert.doesNotMatch(conf, /forward-zone|forward-addr|access-control/, "asks the zones' own servers; Debian's access (localhost only) stays");
    });

    it("takes over resolv.conf only after it answered with validated data, and then with trust-ad for Postfix's DANE", async () => {
        const run = await runProgram(baseConfig());
        const script = scriptOf(unsecret<string>(run.one("command:remote:Command", "resolver").inputs.create));
        const staged = stepFiles(run, "resolver").get("/etc/selfhost/resolv.conf")!.content;
        assert.match(staged, /^nameserver 127\.0\.0\.1\noptions edns0 trust-ad\n$/m);
        const [validated, refused, swapped] = ["validates && break", "validates || {", "mv -f /etc/resolv.conf.selfhost /etc/resolv.conf"].map(s => script.indexOf(s));
        assert.ok(validated > 0 && validated < refused && refused < swapped, "validate, give up with resolv.conf untouched, and only then swap");
        assert.equal(spawnSync("bash", ["--norc", "-n"], { input: script, stdio: ["pipe", "ignore", "ignore"] }).status, 0);
    });
});
