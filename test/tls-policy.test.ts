import { strict as assert } from "assert";
import { runProgram, stepFiles } from "./program";
import { baseConfig } from "./fixtures";
import { TLS_POLICY } from "../services/tls-policy";

describe("one TLS standard", () => {
    it("nginx, Dovecot, Prosody and Postfix's submission ports take the policy's protocols and ciphers; no Postfix port offers the never-list", async () => {
        const run = await runProgram(baseConfig());
        const file = (step: string, path: string) => stepFiles(run, step).get(path)!.content;
        const nginx = file("web", "/etc/nginx/snippets/selfhost-tls.conf");
        assert.match(nginx, new RegExp(`^ssl_protocols TLSv1\\.2 TLSv1\\.3;$`, "m"));
        assert.ok(nginx.includes(`ssl_ciphers ${TLS_POLICY.ciphers};`), nginx);
        const dovecot = file("mail", "/etc/dovecot/dovecot.conf");
        assert.ok(dovecot.includes(`ssl_min_protocol = TLSv1.2\nssl_cipher_list = ${TLS_POLICY.ciphers}\n`), dovecot);
        const prosody = file("xmpp", "/etc/prosody/prosody.cfg.lua");
        assert.ok(prosody.includes(`protocol = "tlsv1_2+";\n    ciphers = "${TLS_POLICY.ciphers}";`), prosody);
        const main = file("mail", "/etc/postfix/main.cf");
        assert.match(main, /^smtpd_tls_protocols = >=TLSv1$/m, "port 25 takes old peers");
        assert.match(main, /^smtpd_tls_mandatory_protocols = >=TLSv1\.2$/m);
        assert.match(main, /^smtpd_tls_exclude_ciphers = aNULL, eNULL, EXPORT, DES, RC4, MD5, PSK, SRP, 3DES$/m);
        // Both submission services: mandatory TLS, and the policy's ciphers as their "medium" list.
        const master = file("mail", "/etc/postfix/master.cf");
        for (const service of ["submission", "submissions"]) {
            const block = master.split(/\n(?=\S)/).find(b => b.startsWith(`${service} `))!;
            assert.match(block, /-o smtpd_tls_security_level=encrypt/, service);
            assert.ok(block.includes(`-o smtpd_tls_mandatory_ciphers=medium\n  -o tls_medium_cipherlist=${TLS_POLICY.ciphers}`), block);
        }
    });
});
