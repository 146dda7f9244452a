import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import { runProgram, unsecret, stepFiles, scriptOf } from "./program";
import { baseConfig, settings } from "./fixtures";
import { nginxSite } from "../components/web";
import { servedNames } from "../components/dns/records";
import { jails, jailNames } from "../components/hardening";
import { FAIL2BAN_FILTER } from "../components/webmail";

const stepNames = (run: Awaited<ReturnType<typeof runProgram>>) =>
    run.all("command:remote:Command").filter(c => c.inputs.create !== undefined).map(c => c.name);

describe("webmail", () => {
    it("is Roundcube at webmail.<domain>, a name of its own with its record and certificate name, on by default", async () => {
        assert.ok(servedNames(settings()).includes("webmail.example.org"));
        const run = await runProgram(baseConfig());
        assert.ok(stepNames(run).includes("webmail"));
        const base = scriptOf(unsecret(run.one("command:remote:Command", "base").inputs.create));
        // Debian's package would make its database at install, on the root disk.
        const preseed = base.indexOf("echo 'roundcube-core roundcube/dbconfig-install boolean false' | debconf-set-selections");
        assert.ok(preseed > 0 && preseed < base.indexOf("\nensure_packages "), "the answer comes before the install");
        assert.match(base, /^ensure_packages .*\bphp-fpm php-zip roundcube-core roundcube-sqlite3 roundcube-plugins sqlite3\b/m);
        const autoconfig = stepFiles(run, "web").get("/etc/nginx/selfhost/config-v1.1.xml")!.content;
        assert.match(autoconfig, /<webMail>\n\s*<loginPage url="https:\/\/webmail\.example\.org\/"\/>\n\s*<\/webMail>/);
        assert.equal(run.outputs.mailSettings.webmail, "https://webmail.example.org/");
    });

    it("off: no name, no record, no server block, no jail, no package, no PHP", async () => {
        const off = settings({ webmail: false });
        assert.ok(!servedNames(off).includes("webmail.example.org"));
        assert.ok(!/webmail/.test(nginxSite(off)));
        assert.ok(!jailNames(jails(off)).includes("roundcube"));
        const run = await runProgram({ ...baseConfig(), webmail: false });
        assert.ok(!stepNames(run).includes("webmail"));
        assert.ok(!/roundcube|php-fpm/.test(unsecret<string>(run.one("command:remote:Command", "base").inputs.create)));
        assert.ok(!(run.outputs.records as { name: string }[]).some(r => r.name === "webmail"));
        assert.equal(run.outputs.mailSettings.webmail, undefined);
    });

    it("runs PHP for the entry point only, under a strict CSP, and serves static files of the skin and plugins alone", () => {
        const conf = nginxSite(settings());
        const server = conf.slice(conf.indexOf("server_name webmail.example.org;"));
        const block = server.slice(0, server.indexOf("\n}\n"));
        assert.equal((block.match(/fastcgi_pass/g) ?? []).length, 1);
        assert.match(block, /location = \/index\.php \{\n\s*include fastcgi\.conf;\n\s*fastcgi_pass unix:\/run\/selfhost-webmail\.sock;/);
        assert.match(block, /location \/ \{\n\s*return 404;/);
        const csp = /add_header Content-Security-Policy "([^"]+)" always;/.exec(block)![1];
        for (const rule of ["default-src 'none'", "img-src 'self' data: blob:", "frame-ancestors 'self'", "form-action 'self'", "object-src 'none'", "base-uri 'none'"]) {
            assert.ok(csp.includes(rule), `CSP has ${rule}`);
        }
        assert.ok(!/https?:/.test(csp), "nothing from another origin");
        assert.match(block, /include snippets\/selfhost-headers\.conf;/);
        // The static location names no PHP, config or template type.
        const statics = /location ~ \^\/\(skins\|plugins\|program\)\/\.\+\\\.\(([^)]+)\)\$/.exec(block)![1].split("|");
        assert.ok(!statics.some(t => /php|inc|html|sql|sh|json/.test(t)), statics.join(" "));
    });

    it("verifies our own IMAP, SMTP and ManageSieve against the hostname, with the CA that signed it", async () => {
        for (const [tlsMode, ca] of [["acme", "/etc/ssl/certs/ca-certificates.crt"], ["private-ca", "/etc/selfhost/private-ca.pem"]]) {
            const run = await runProgram({ ...baseConfig(), tlsMode });
            const files = stepFiles(run, "webmail");
            const config = files.get("/etc/roundcube/config.inc.php")!;
            const sieve = files.get("/etc/roundcube/plugins/managesieve/config.inc.php")!.content;
            assert.equal(config.mode, "0640");
            assert.equal(config.owner, "root:roundcube");
            const options = `['ssl' => ['verify_peer' => true, 'verify_peer_name' => true, 'peer_name' => 'mail.example.org', 'cafile' => '${ca}', 'allow_self_signed' => false]]`;
            assert.ok(config.content.includes(`$tls = ${options};`));
            assert.match(config.content, /\$config\['imap_host'\] = 'ssl:\/\/127\.0\.0\.1:993';\n\$config\['imap_conn_options'\] = \$tls;/);
            assert.match(config.content, /\$config\['smtp_host'\] = 'ssl:\/\/127\.0\.0\.1:465';\n\$config\['smtp_conn_options'\] = \$tls;/);
            assert.match(sieve, /managesieve_host'\] = 'tls:\/\/127\.0\.0\.1:4190';/);
            assert.ok(sieve.includes(`$config['managesieve_conn_options'] = ${options};`));
            for (const text of [config.content, sieve]) assert.ok(!/=> false/.test(text.replace("'allow_self_signed' => false", "")), "no verification turned off");
            if (tlsMode === "private-ca") assert.ok(stepFiles(run, "tls").has(ca), "the tls step installs the CA it verifies with");
            // …where its confined PHP may read it: not under a path its unit hides.
            const hidden = /^InaccessiblePaths=(.*)$/m.exec(files.get("/etc/systemd/system/roundcube.service")!.content)![1].split(" ").map(p => p.replace(/^-/, ""));
            assert.ok(!hidden.some(p => ca.startsWith(`${p}/`)), `${ca} is hidden from the webmail`);
        }
    });

    it("keeps sessions on HTTPS with strict cookies, logs logins to the journal, and has no installer", async () => {
        const config = stepFiles(await runProgram(baseConfig()), "webmail").get("/etc/roundcube/config.inc.php")!.content;
        for (const line of ["$config['use_https'] = true;", "$config['session_samesite'] = 'Strict';", "$config['enable_installer'] = false;",
            "$config['log_driver'] = 'syslog';", "$config['log_logins'] = true;", "$config['db_dsnw'] = 'sqlite:////srv/webmail/roundcube.db?mode=0640';"]) {
            assert.ok(config.includes(line), line);
        }
    });

    it("runs PHP only while used (nginx's socket starts it), as its own user, confined, and keeps Debian's PHP-FPM off", async () => {
        const run = await runProgram(baseConfig());
        const files = stepFiles(run, "webmail");
        const pool = files.get("/etc/selfhost/webmail/php-fpm.conf")!.content;
        for (const line of ["user = roundcube", "pm = ondemand", "pm.max_children = 4", "listen.owner = www-data", "listen.mode = 0600",
            "php_admin_value[upload_max_filesize] = 37M", "php_admin_value[post_max_size] = 38M"]) assert.ok(pool.includes(line), line);
        const unit = files.get("/etc/systemd/system/roundcube.service")!.content;
        assert.match(unit, /^ProtectSystem=strict$/m);
        assert.match(unit, /^CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_KILL$/m);
        assert.match(unit, /^ReadWritePaths=\/srv\/webmail \/var\/lib\/roundcube\/temp$/m);
        assert.match(unit, /^InaccessiblePaths=-\/srv\/mail -\/srv\/prosody -\/srv\/tls -\/srv\/home -\/etc\/selfhost\/backup$/m);
        const script = scriptOf(unsecret(run.one("command:remote:Command", "webmail").inputs.create));
        // nginx's socket is systemd's (nginx's user alone may use it); its proxy starts PHP-FPM and passes requests to PHP-FPM's own socket.
        const socket = files.get("/etc/systemd/system/selfhost-webmail.socket")!.content;
        assert.match(socket, /^ListenStream=\/run\/selfhost-webmail\.sock\nSocketUser=www-data\nSocketGroup=www-data\nSocketMode=0600$/m);
        const proxy = files.get("/etc/systemd/system/selfhost-webmail.service")!.content;
        assert.match(proxy, /^Requires=roundcube\.service\nAfter=roundcube\.service$/m);
        assert.equal(proxy.match(/^ExecStart=\S+systemd-socket-proxyd --exit-idle-time=\S+ (\S+)$/m)?.[1], pool.match(/^listen = (\S+)$/m)?.[1]);
        assert.match(unit, /^Type=notify$/m);
        assert.ok(!/^\[Install\]/m.test(unit), "PHP-FPM does not start at boot");
        assert.match(files.get("/etc/systemd/system/roundcube.service.d/selfhost-on-demand.conf")!.content, /^StopWhenUnneeded=yes$/m);
        assert.match(script, /^systemctl disable --quiet roundcube\nsystemctl enable --quiet selfhost-webmail\.socket /m);
        assert.match(script, /list-unit-files --no-legend 'php\*-fpm\.service'.*systemctl disable --quiet --now/);
        assert.match(script, /check \/usr\/local\/sbin\/roundcube-php-fpm -t -y \/etc\/selfhost\/webmail\/php-fpm\.conf/);
        assert.equal(spawnSync("bash", ["-n"], { input: script }).status, 0, "the step parses");
        for (const timer of ["roundcube-gc", "roundcube-cleandb"]) {
            assert.match(files.get(`/etc/systemd/system/${timer}.service.d/selfhost.conf`)!.content, /^User=roundcube$/m);
        }
        // Its PHP is a data unit: it waits for the volume, and stops before a handover.
        assert.ok(stepFiles(run, "base").has("/etc/systemd/system/roundcube.service.d/selfhost-data.conf"));
    });

    it("hands a scheduled snapshot a consistent copy of its database, and puts the copy back if a restored file is torn", async () => {
        const run = await runProgram(baseConfig());
        const hook = stepFiles(run, "webmail").get("/etc/selfhost/before-backup.d/roundcube")!;
        assert.equal(hook.mode, "0755");
        assert.match(hook.content, /runuser -u roundcube -- sqlite3 \/srv\/webmail\/roundcube\.db "\.timeout 30000" "\.backup \/srv\/webmail\/roundcube\.db\.snapshot\.part"/);
        assert.match(stepFiles(run, "backup").get("/etc/systemd/system/selfhost-backup.service")!.content,
            /^ExecStartPre=\+\/bin\/run-parts \/etc\/selfhost\/before-backup\.d$/m);
        const script = scriptOf(unsecret(run.one("command:remote:Command", "webmail").inputs.create));
        assert.match(script, /\[ "\$\(sqlite3 -readonly \/srv\/webmail\/roundcube\.db 'PRAGMA integrity_check' 2>&1\)" != ok \]; then\n\s*install -o roundcube -g roundcube -m 0640 \/srv\/webmail\/roundcube\.db\.snapshot \/srv\/webmail\/roundcube\.db/);
    });

    it("feeds failed logins to fail2ban by the address they came from, whatever the login name says", () => {
        assert.ok(jailNames(jails(settings())).includes("roundcube"));
        assert.match(jails(settings()), /\[roundcube\]\nenabled = true\nfilter = selfhost-roundcube-auth\nport = 80,443/);
        const regex = /^failregex = (.*)$/m.exec(FAIL2BAN_FILTER.content)![1]
            .replace("%(__prefix_line)s", "").replace("<HOST>", "(?<host>\\S+)").replace(/^\^/, "^");
        const host = (line: string) => new RegExp(regex).exec(line)?.groups?.host;
        assert.equal(host("<k3j2h1g0> Failed login for alice@example.org from 203.0.113.9 in session k3j2h1g0abcdef12 (error: 0)"), "203.0.113.9");
        assert.equal(host("Failed login for x from 10.0.0.1 in session abc (error: 0) from 198.51.100.7 in session k3j2h1g0abcdef12 (error: 0)"), "198.51.100.7");
        assert.equal(host("Successful login for alice@example.org (ID: 1) from 203.0.113.9 in session k3j2h1g0"), undefined);
    });
});
