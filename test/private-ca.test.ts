import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { execFileSync, spawnSync } from "child_process";
import { runProgram, unsecret } from "./program";
import { baseConfig } from "./fixtures";
import * as crypto from "crypto";
import { PrivateCaProvider, LIFE_DAYS, RENEW_DAYS, caCertificate, PrivateCaArgs } from "../components/private-ca";
// eslint-disable-next-line @typescript-eslint/no-var-requires
const requireFromString: (code: string) => { handler: () => any } = require("require-from-string");

/** openssl in a directory of its own with these files; stdout and stderr together, and the exit code. */
function openssl(args: string[], files: Record<string, string>): { code: number; out: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-ca-"));
    try {
        for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
        const r = spawnSync("sh", ["-c", args.join(" ")], { cwd: dir, encoding: "utf8" });
        return { code: r.status ?? -1, out: r.stdout + r.stderr };
    } finally {
        fs.rmSync(dir, { recursive: true });
    }
}

describe("private CA", () => {
    it("is name-constrained to the domain: it verifies the server's certificate and no certificate for another name or any IP", async () => {
        const run = await runProgram({ ...baseConfig(), tlsMode: "private-ca" });
        const ca: string = run.outputs.caCertificate;
        const text = openssl(["openssl x509 -noout -text -in ca.pem"], { "ca.pem": ca }).out;
        assert.match(text, /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:example\.org\s+Excluded:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/);
        assert.match(text, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
        assert.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
        // Valid a day before LIFE_DAYS run out, and gone a day after.
        const endsWithin = (days: number) => openssl([`openssl x509 -noout -checkend ${days * 86_400} -in ca.pem`], { "ca.pem": ca }).code !== 0;
        assert.deepEqual([endsWithin(LIFE_DAYS - 1), endsWithin(LIFE_DAYS + 1)], [false, true]);

        const tlsStep: string = unsecret(run.one("command:remote:Command", "tls").inputs.create);
        const leaf = run.one("tls:index/locallySignedCert:LocallySignedCert", "server").state.certPem as string;
        assert.ok(tlsStep.includes(ca.trim()), "the chain the server serves ends in this CA");
        assert.equal(openssl(["openssl verify -CAfile ca.pem leaf.pem"], { "ca.pem": ca, "leaf.pem": leaf }).code, 0);

        // What a stolen CA key could sign: refused by any client that trusts the CA.
        const caKey = run.one("tls:index/privateKey:PrivateKey", "ca-key").state.privateKeyPem as string;
        for (const san of ["DNS:bank.example.net", "DNS:example.org.evil.test", "IP:203.0.113.7"]) {
            const r = openssl([
                `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem -subj /CN=x -addext subjectAltName=${san} -out x.csr 2>/dev/null &&`,
                "openssl x509 -req -in x.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 30 -copy_extensions copy -out x.pem 2>/dev/null &&",
                "openssl verify -CAfile ca.pem x.pem",
            ], { "ca.pem": ca, "ca.key": caKey });
            assert.ok(r.code !== 0 && /subtree violation/.test(r.out), `${san}: ${r.out}`);
        }
    });

    it("writes a serial every parser takes: 1000 certificates in a row all load (1 in 256 once had a needless leading zero)", () => {
        const privateKeyPem = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
        for (let i = 0; i < 1000; i++) {
            const { certPem } = caCertificate({ privateKeyPem, domain: "example.org" } as PrivateCaArgs, new Date());
            assert.doesNotThrow(() => new crypto.X509Certificate(certPem), `certificate ${i}`);
        }
    });

    it("signs from its serialized code, as Pulumi's dynamic-provider host runs it, with the CA key kept secret", async () => {
        const run = await runProgram({ ...baseConfig(), tlsMode: "private-ca" });
        const resource = run.one("pulumi-nodejs:dynamic/selfhost:PrivateCa", "ca");
        assert.ok(resource.options.additionalSecretOutputs.includes("privateKeyPem"));
        const { __provider, ...inputs } = unsecret<Record<string, any>>(resource.inputs);
        const provider = requireFromString(__provider).handler();
        const made = await provider.create(inputs);
        const text = openssl(["openssl x509 -noout -text -in ca.pem"], { "ca.pem": made.outs.certPem }).out;
        assert.match(text, /Permitted:\s+DNS:example\.org/);
        assert.deepEqual(await provider.diff(made.id, made.outs, inputs), { changes: false, replaces: [] });
    });

    it("is renewed, with the same key, by the first up in its last year, and replaced by another key or domain", async () => {
        const provider = new PrivateCaProvider();
        const key = execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout"], { encoding: "utf8" });
        const args = { privateKeyPem: key, domain: "example.org" };
        const made = (await provider.create(args)).outs!;
        const days = (n: number) => new Date(Date.now() + n * 86_400_000).toISOString();
        assert.deepEqual(await provider.diff("ca", made, args), { changes: false, replaces: [] });
        assert.deepEqual(await provider.diff("ca", { ...made, notAfter: days(RENEW_DAYS + 2) }, args), { changes: false, replaces: [] });
        assert.deepEqual(await provider.diff("ca", { ...made, notAfter: days(RENEW_DAYS - 2) }, args), { changes: true, replaces: ["notAfter"] });
        assert.deepEqual(await provider.diff("ca", made, { ...args, domain: "example.net" }), { changes: true, replaces: ["domain"] });
        // The renewed certificate has the old one's key and name: a client with either verifies the same server certificate.
        const renewed = (await provider.create(args)).outs!;
        const pub = (pem: string) => execFileSync("openssl", ["x509", "-noout", "-pubkey"], { input: pem, encoding: "utf8" });
        assert.equal(pub(renewed.certPem), pub(made.certPem));
    });
});
