import { strict as assert } from "assert";
import { runProgram, unsecret, stepFiles } from "./program";
import { spawnSync } from "child_process";
import { baseConfig, settings } from "./fixtures";
import { nginxSite } from "../components/web";
import { mtaStsPolicy, servedNames } from "../components/dns/records";

const apps = [{ name: "blog", port: 2368, path: "/blog" }, { name: "chat", port: 8081, subdomain: "chat" }];

describe("web", () => {
    it("serves one canonical host and redirects www and the hostname to it", () => {
        const conf = nginxSite(settings());
        assert.match(conf, /server_name example\.org;\n/);
        assert.match(conf, /server_name mail\.example\.org www\.example\.org;\n[\s\S]*?return 301 https:\/\/example\.org\$request_uri;/);
        assert.match(conf, /server_name mta-sts\.example\.org autoconfig\.example\.org autodiscover\.example\.org;/);
        assert.ok(!/~\(\[a-z_\]/.test(conf), "no user directories unless asked");
    });

    it("never serves dotfiles but /.well-known, ahead of the ~user and app locations", () => {
        const conf = nginxSite(settings({ userDirs: true, apps: [{ name: "blog", port: 8080, path: "/blog" }] }));
        const dotfiles = conf.indexOf("location ~ /\\.(?!well-known/) {");
        assert.ok(dotfiles > 0 && dotfiles < conf.indexOf("location ~ ^/~") && dotfiles < conf.indexOf("location /blog"), conf);
    });

    it("proxies apps by path and by subdomain, and gives a subdomain app its DNS name and certificate", async () => {
        const conf = nginxSite(settings({ apps, userDirs: true }));
        assert.match(conf, /location \/blog\/ \{\n\s+proxy_pass http:\/\/127\.0\.0\.1:2368;\n\s+include snippets\/selfhost-proxy\.conf;/);
        assert.match(conf, /server_name chat\.example\.org;[\s\S]*?proxy_pass http:\/\/127\.0\.0\.1:8081;/);
        assert.match(conf, /alias \/srv\/home\/\$1\/public_html\$2;/);
        assert.ok(servedNames(settings({ apps })).includes("chat.example.org"));
        const run = await runProgram({ ...baseConfig(), apps });
        const records = run.all("hcloud:index/zoneRrset:ZoneRrset").map(r => `${r.inputs.name} ${r.inputs.type}`);
        assert.ok(records.includes("chat A") && records.includes("chat AAAA"));
        assert.match(unsecret<string>(run.one("command:remote:Command", "tls").inputs.create), /chat\.example\.org/);
    });

    it("serves the very MTA-STS policy whose hash is in DNS, and autoconfig with the catalog's ports", async () => {
        const run = await runProgram(baseConfig());
        const create: string = unsecret(run.one("command:remote:Command", "web").inputs.create);
        const policy = mtaStsPolicy(settings());
        assert.ok(create.includes(policy), "the policy file is the DNS model's policy, byte for byte");
        assert.match(create, /<port>993<\/port>[\s\S]*<port>465<\/port>[\s\S]*<port>587<\/port>/);
        assert.match(create, /<hostname>mail\.example\.org<\/hostname>/);
    });

    it("serves the statistics report on loopback only, when asked, from a daily timer", async () => {
        assert.ok(!/listen 127\.0\.0\.1:8089/.test(nginxSite(settings())));
        assert.match(nginxSite(settings({ webStats: true })), /listen 127\.0\.0\.1:8089;/);
        const run = await runProgram({ ...baseConfig(), webStats: true });
        const web: string = unsecret(run.one("command:remote:Command", "web").inputs.create);
        assert.match(web, /systemctl enable --quiet --now selfhost-webstats\.timer/);
        assert.match(web, /goaccess - --log-format=COMBINED --no-global-config --anonymize-ip/);
        assert.match(unsecret<string>(run.one("command:remote:Command", "base").inputs.create), /^ensure_packages .*\bgoaccess\b/m);
    });

    it("runs the site build and the statistics as users of their own, and serves no symlink to what another user owns", async () => {
        const run = await runProgram({ ...baseConfig(), webStats: true });
        const files = stepFiles(run, "web");
        const hook = files.get("/etc/selfhost/git-hooks/pre-receive")!.content;
        // As the builder, with a umask that lets nginx read what it builds (sudo's PAM session would give 027).
        assert.match(hook, /as_builder\(\) \{ sudo -n -H -u selfhost-site \/bin\/sh -c 'umask 022 && exec "\$@"' as_builder "\$@"; \}/);
        assert.match(hook, /as_builder sh -c 'cd "\$1" && sh \/etc\/selfhost\/site-build' build "\$build"/);
        // The push login may become the builder and nobody else.
        assert.equal(files.get("/etc/sudoers.d/selfhost-git")!.content, "git ALL=(selfhost-site) NOPASSWD: ALL\n");
        assert.equal(spawnSync("bash", ["-n"], { input: hook }).status, 0, "the hook parses");
        assert.match(files.get("/etc/systemd/system/selfhost-webstats.service")!.content, /^User=selfhost-stats\nSupplementaryGroups=adm$/m);
        assert.match(nginxSite(settings()), /root \/srv\/www\/site;[\s\S]*disable_symlinks if_not_owner from=\$document_root;/);
    });

    it("lets the admin's keys and siteDeployKeys push through a login that can run git only, each key restricted", async () => {
        const ci = baseConfig().sshPublicKeys as string[];
        const deployKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFM0SDj1cPHpuRuHCE8dlaELYyYcGxsi4bYZctsfUfQn ci@example";
        const run = await runProgram({ ...baseConfig(), siteDeployKeys: [deployKey] });
        const base = stepFiles(run, "base");
        assert.equal(base.get("/etc/ssh/authorized_keys/git")!.content, [...ci, deployKey].map(k => `restrict ${k}`).join("\n") + "\n");
        assert.ok(!base.get("/etc/ssh/authorized_keys/admin")!.content.includes(deployKey), "a deploy key is no admin key");
        assert.match(base.get("/etc/ssh/sshd_config.d/00-selfhost.conf")!.content, /^AllowUsers selfhost admin git$/m);
        assert.match(unsecret<string>(run.one("command:remote:Command", "web").inputs.create), /useradd --system --home-dir \/srv\/git --no-create-home --shell \/usr\/bin\/git-shell git/);
    });

    it("rejects bad apps and site settings, naming the key", () => {
        const cases: [Record<string, unknown>, RegExp][] = [
            [{ apps: [{ name: "x", port: 80, path: "/x" }] }, /selfhost:apps\[0\]\.port must be the app's local port/],
            [{ apps: [{ name: "x", port: 3000 }] }, /selfhost:apps\[0\] needs exactly one of path/],
            [{ apps: [{ name: "x", port: 5280, path: "/x" }] }, /selfhost:apps\[0\]\.port .* not a service port nor 5280 or 8089/],
            [{ apps: [{ name: "x", port: 3000, subdomain: "www" }] }, /selfhost:apps\[0\]\.subdomain "www" must be one free DNS label/],
            [{ apps: [{ name: "x", port: 3000, path: "/.well-known/x" }] }, /selfhost:apps\[0\]\.path/],
            [{ apps: [{ name: "a", port: 3000, path: "/a" }, { name: "b", port: 3001, path: "/a" }] }, /selfhost:apps\[1\] path \/a is used by another app/],
            [{ siteDir: "../etc" }, /selfhost:siteDir "\.\.\/etc" must be a relative directory/],
            [{ sitePackages: ["Hugo Extended"] }, /selfhost:sitePackages\[0\] "Hugo Extended" is not a Debian package name/],
            [{ webLogDays: 0 }, /selfhost:webLogDays must be a whole number from 1 to 365/],
            [{ siteDeployKeys: ["ssh-ed25519 AAAA"] }, /selfhost:siteDeployKeys\[0\] is truncated or its body is not a ssh-ed25519 key/],
            [{ adminUser: "git" }, /selfhost:adminUser "git" is a login the stack makes for itself/],
        ];
        for (const [change, message] of cases) assert.throws(() => settings(change), (e: Error) => e.name === "ConfigError" && message.test(e.message), JSON.stringify(change));
    });
});
