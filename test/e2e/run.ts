/**
 * `npm run e2e`: the local end-to-end target. Runs the program under mocks with the embedded test
 * stack, stands up a simulated internet (DNS, ACME CA, a client), boots a Debian 13 server from the
 * captured user-data, applies the captured remote steps over SSH in dependency order, and checks the
 * result from outside with real clients. `--bench` adds the benchmark baselines.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { runProgram, ProgramRun, unsecret, stepFiles } from "../program";
import { jailNames, JAIL_CONF } from "../../components/hardening";
import { firstAddress } from "../../components/host";
import { sh, must, Cleanup } from "./sh";
import { NET, sweep, network, startDns, startAcme, zoneHeader } from "./world";
import { startGandi, gandiToken, gandiChecks, gandiConfig, publishTlsa, printedTlsa, publish, withdraw } from "./gandi";
import { TestServer, sweepServers } from "./server";
import { startClient, SSH_OPTIONS } from "./client";
import { inPlaceChecks } from "./inplace";
import { declaredSteps, applyStep, deleteStep, Step, stepsThatChanged, changedServerInputs } from "./steps";
import { e2eConfig, changedOption, openSsh, SERVER } from "./config";
import { Checks } from "./checks";
import { benchBaseline, memoryTable, throughput, firstDpkgSeconds } from "./bench";
import { startAptCache } from "./apt-cache";
import { secondaryChecks, MX2 } from "./secondary";
import { startPeer, peerZone, peerCa, peerDkim, peerSigns, daneZones, spkiSha256, PEER_XMPP_PASSWORD } from "./peer";
import { mailChecks } from "./mail";
import { hardeningChecks, attackChecks, runningJails } from "./hardening";
import { webChecks } from "./web";
import { xmppChecks, xmppClient } from "./xmpp";
import { storageBoxOf, startStorageBox, dataChecks } from "./data";
import { statusChecks } from "./status";
import { resolverChecks } from "./resolver";
import { webmailChecks, formLogin } from "./webmail";

const SERVER_IPV6 = firstAddress(SERVER.ipv6Network);
const bench = process.argv.includes("--bench");

function ownerKey(dir: string, name = "owner-key"): { pub: string; file: string } {
    const file = path.join(dir, name);
    must(`ssh-keygen -q -t ed25519 -N '' -C ${name}@laptop -f ${file}`);
    return { pub: fs.readFileSync(`${file}.pub`, "utf8").trim(), file };
}

/** dave's OpenPGP key pair, in a keyring of its own under the work dir; returns the keyring and the public key. */
function openpgpKey(dir: string): { home: string; pub: string } {
    const home = path.join(dir, "gnupg");
    fs.mkdirSync(home, { mode: 0o700 });
    must(`gpg --batch --homedir ${home} --passphrase '' --quick-gen-key 'dave <dave@example.test>' future-default default never`);
    return { home, pub: must(`gpg --homedir ${home} --armor --export dave@example.test`) };
}

/** Applies steps in order; stops at the first failure with its output. Returns seconds per step. */
function applyAll(steps: Step[], work: string, label: string): Map<string, { ms: number; out: string }> {
    const results = new Map<string, { ms: number; out: string }>();
    for (const step of steps) {
        const r = applyStep(step, work);
        const out = r.stdout + r.stderr;
        console.log(`  ${label} step ${step.name}: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s — ${out.trim().split("\n").pop()}`);
        if (r.code !== 0) throw new Error(`step ${step.name} failed:\n${out}`);
        results.set(step.name, { ms: r.ms, out });
    }
    return results;
}

async function main(): Promise<number> {
    const cleanup = new Cleanup();
    const stop = () => { cleanup.run(); process.exit(130); };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    const checks = new Checks();
    const figures: [string, string][] = [];
    try {
        sweepServers();
        sweep();
        const work = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-e2e-"));
        cleanup.add("work dir", () => fs.rmSync(work, { recursive: true, force: true }));
        const owner = ownerKey(work);
        const dave = openpgpKey(work);
        cleanup.add("gpg agent", () => sh(`gpgconf --homedir ${dave.home} --kill all`));
        const token = gandiToken();
        // A CI system's key: it may publish the site and do nothing else.
        const ciKey = ownerKey(work, "ci-deploy-key");
        const config = e2eConfig({ ssh: owner.pub, deploy: ciKey.pub, openpgp: dave.pub, gandiToken: token });

        console.log("program under mocks (the embedded test stack)");
        const program = await runProgram(config, { cloud: SERVER });
        // The same stack with a secondary MX (checked near the end): its addresses get their PTRs with the server's.
        const withSecondary = await runProgram({ ...config, secondaryMxLocation: "hel1" }, { cloud: { ...SERVER, secondary: MX2 } });
        const userData: string = unsecret(program.one("hcloud:index/server:Server").inputs.userData);
        const steps = declaredSteps(program);
        console.log(`  ${program.resources.length} resources, steps in order: ${steps.map(s => s.name).join(" → ")}`);
        const deployKey = path.join(work, "deploy-key");
        fs.writeFileSync(deployKey, steps[0].connection.privateKey, { mode: 0o600 });
        const sshPort = steps[0].connection.port;
        const deployUser = steps[0].connection.user;
        const adminUser = /(\S+)@/.exec(program.outputs.sshCommand)![1];

        console.log("simulated internet");
        network(cleanup);
        const aptCache = await startAptCache(path.join(work, "apt-cache"), cleanup);
        await startClient(work, cleanup);
        const ptrs = {
            ...Object.fromEntries(withSecondary.all("hcloud:index/rdns:Rdns").map(r => [r.inputs.ipAddress, r.inputs.dnsPtr])),
            [NET.peer.ipv4]: NET.peer.domain, [NET.peer.ipv6]: NET.peer.domain,
        };
        const listed = NET.client.listed.split(".").reverse().join(".");
        const box = storageBoxOf(program);
        const dnsDir = path.join(work, "dns");
        const testZone = { domain: "example.test", extra: { acme: NET.inet.ipv4 } };
        // The test domain's own records come from Gandi (below), not from the program's zone file.
        const peerTls = peerCa(path.join(work, "peer-ca"));
        const peerKey = peerDkim(path.join(work, "peer-ca"));
        const dnsRoot = await startDns(dnsDir, {
            ...testZone, zoneFile: "", ptrs,
            zones: {
                [NET.peer.domain]: peerZone(peerKey.publicKey),
                // A stand-in for Spamhaus: lists one client address (and the usual 127.0.0.2 test entry).
                "zen.spamhaus.org": [`${listed} 300 IN A 127.0.0.2`, "2.0.0.127 300 IN A 127.0.0.2"],
                // The Storage Box's name leads to the peer host, which plays it.
                [box.zone]: box.records,
                // Spamhaus's domain list, listing nothing here.
                "dbl.spamhaus.org": [],
                // Signed with a key its DS in the root does not match: what a forged answer looks like.
                "bogus.test": [`@ 300 IN A ${NET.peer.ipv4}`],
                // The peer's DANE domains: its key in a TLSA record, and a key nobody has.
                ...daneZones(spkiSha256(peerTls.cert)),
            },
            blocklists: ["zen.spamhaus.org", "dbl.spamhaus.org"],
            bogus: ["bogus.test"],
        }, cleanup);
        const acme = await startAcme(path.join(work, "acme"), ["acme.example.test"], cleanup);

        console.log("Gandi LiveDNS: preflight, then the program's records through the provider");
        const gandi = await startGandi(path.join(work, "gandi"), {
            domain: testZone.domain, header: zoneHeader(testZone), zoneFile: path.join(dnsDir, "example.test.zone"),
            reload: `knotc -c ${dnsDir}/knot.conf zone-reload example.test`, sign: dnsRoot.signCommand, token,
        }, cleanup);
        let gandiDs = "";
        await gandiChecks({ checks, gandi, program, config, token, delegateSigned: async ds => { gandiDs = ds; await dnsRoot.delegateSigned(ds); } });
        // What the engine does once the tls step ran: port 25's TLSA set gets the data the step printed.
        let tlsa: string[] = [];
        const apply = (s: Step[], label: string) => {
            const results = applyAll(s, work, label);
            const tlsStep = results.get("tls");
            if (tlsStep) tlsa = publishTlsa(gandi, program, gandiConfig(config, token), printedTlsa(tlsStep.out));
            return results;
        };

        console.log("the peer mail server");
        const peer = await startPeer(path.join(work, "peer"), [acme.apiCa], peerTls, dnsRoot, cleanup);
        startStorageBox(peer, box);

        // The benchmark compares first boot with a bare install of the same packages: both from a warm apt
        // cache. A bare install before first boot warms it (and measures the cache as this run found it).
        // The baseline is the warm bare install just before first boot: two installs of one run, half an
        // hour apart, differed by up to a third (82 vs 55 s), one next to first boot shares its conditions.
        const packages = unsecret<string>(steps[0].create).match(/^ensure_packages ([^\n]+)$/m)?.[1] ?? "";
        let warmup: { ms: number; fetchedMb: number } | undefined;
        let bare: { bootMs: number; installMs: number; dpkgMs: number } | undefined;
        if (bench) {
            console.log(`warming the apt cache (${aptCache.warmAtStart ? "warm" : "cold"} at start): a bare install of the stack's packages`);
            const before = aptCache.traffic().fetched;
            const install = async (name: string) => {
                const b = await benchBaseline(path.join(work, name), packages, [acme.apiCa], cleanup);
                const measured = { bootMs: b.bootMs, installMs: b.installMs, dpkgMs: firstDpkgSeconds(b.server) * 1000 };
                b.server.stop();
                return measured;
            };
            const warm = await install("warmup");
            warmup = { ms: warm.bootMs + warm.installMs, fetchedMb: (aptCache.traffic().fetched - before) / 1e6 };
            // A cold cache's install measured the downloads: the baseline is a second one, from the cache it filled.
            bare = aptCache.warmAtStart ? warm : await install("bare");
        }
        const beforeFirstBoot = aptCache.traffic();

        console.log("first boot");
        const started = Date.now();
        const serverSpec = {
            name: "mail", dir: path.join(work, "server"), ipv4: SERVER.ipv4, ipv6: SERVER_IPV6, userData,
            // The simulated internet's CAs: pebble's (for its API) and the peer's own.
            volumeId: program.one("hcloud:index/volume:Volume").id, trust: [acme.apiCa, fs.readFileSync(peerTls.ca, "utf8")], dnsRoot,
        };
        const server = new TestServer(serverSpec, cleanup);
        await server.boot();
        const bootMs = Date.now() - started;
        const first = apply(steps, "apply");
        const firstBootMs = Date.now() - started;
        const firstBootFetchedMb = (aptCache.traffic().fetched - beforeFirstBoot.fetched) / 1e6;
        const root = path.join(work, "acme-root.pem");
        must(`curl -sf --cacert ${path.join(work, "acme", "api-ca.pem")} ${acme.rootUrl} -o ${root}`, { ns: NET.client.ns });
        // The peer trusts the ACME CA's root the way the world trusts Let's Encrypt's.
        fs.copyFileSync(root, path.join(peer.root, "usr/local/share/ca-certificates/acme-root.crt"));
        peer.exec("update-ca-certificates >/dev/null 2>&1 && systemctl restart prosody");
        // So does the server (its webmail verifies our own IMAP and SMTP with the system's CAs), and every later one.
        fs.copyFileSync(root, path.join(server.root, "usr/local/share/ca-certificates/acme-root.crt"));
        server.exec("update-ca-certificates >/dev/null 2>&1");
        serverSpec.trust.push(fs.readFileSync(root, "utf8"));

        console.log("checks from the client host");
        const fromClient = (cmd: string) => sh(cmd, { ns: NET.client.ns, timeoutMs: 60_000 });
        const sshOpts = `${SSH_OPTIONS} -o ConnectTimeout=5`;
        const ssh = (key: string, user: string, extra = "", host = SERVER.ipv4, port = sshPort) =>
            fromClient(`ssh -i ${key} -p ${port} ${sshOpts} ${extra} ${user}@${host} true`);
        const names = (program.outputs.records as { name: string; type: string }[])
            .filter(r => r.type === "A").map(r => r.name === "@" ? "example.test" : `${r.name}.example.test`);
        const tlsCheck = (name: string, port: number, address = SERVER.ipv4): string | undefined => {
            const r = fromClient(`openssl s_client -connect ${address.includes(":") ? `[${address}]` : address}:${port} ` +
                `-servername ${name} -verify_hostname ${name} -CAfile ${root} -verify_return_error </dev/null 2>&1`);
            return r.code === 0 && r.stdout.includes("Verify return code: 0 (ok)") ? undefined : r.stdout.split("\n").slice(-8).join("\n");
        };
        const runAllChecks = () => {
            checks.check("cloud-init finished cleanly", () => {
                const r = server.exec("cloud-init status --long");
                return /status: done/.test(r.stdout) && !/errors:\s*\n\s+-/.test(r.stdout) ? undefined : r.stdout + r.stderr;
            });
            checks.check("hostname is the configured FQDN", () => {
                const h = server.exec("hostname -f").stdout.trim();
                return h === "mail.example.test" ? undefined : `hostname -f says ${h}`;
            });
            // A checker that writes its output somewhere once replaced /dev/null; units with PrivateDevices then fail to start.
            checks.check("/dev/null is still the null device", () => server.exec("test -c /dev/null").code === 0 ? undefined : server.exec("ls -l /dev/null").stdout);
            checks.check("data volume is mounted at /srv", () => server.exec("findmnt -n -o SOURCE /srv").stdout.includes("HC_Volume") ? undefined : "not mounted");
            checks.check(`SSH with the stack's deploy key on port ${sshPort} as ${deployUser} (IPv4 and IPv6)`, () => {
                const r4 = ssh(deployKey, deployUser);
                const r6 = ssh(deployKey, deployUser, "", SERVER_IPV6);
                return r4.code === 0 && r6.code === 0 ? undefined : r4.stderr + r6.stderr;
            });
            checks.check("the server presents exactly the host key the stack made and pins", () => {
                const scanned = fromClient(`ssh-keyscan -T 5 -t ed25519 -p ${sshPort} ${SERVER.ipv4} 2>/dev/null`).stdout
                    .split("\n").find(l => l && !l.startsWith("#"))?.split(" ").slice(1).join(" ");
                return scanned && scanned === steps[0].connection.hostKey.split(" ").slice(0, 2).join(" ") ? undefined : `scanned: ${scanned}`;
            });
            checks.check("a step pinned to another host key is refused before anything is sent (it never runs)", () => {
                const r = applyStep({ ...steps[0], create: "sudo touch /root/reached-by-unverified-step", stdin: "secret on stdin\n",
                    connection: { ...steps[0].connection, hostKey: owner.pub } }, work);
                const reached = server.exec("test -e /root/reached-by-unverified-step").code === 0;
                return r.code !== 0 && /Host key verification failed/.test(r.stderr) && !reached ? undefined : `exit ${r.code}, reached: ${reached}: ${r.stderr}`;
            });
            checks.check("SSH with the owner's key as the admin, whom the base step made", () => { const r = ssh(owner.file, adminUser); return r.code === 0 ? undefined : r.stderr; });
            checks.check("each key logs in only as its own user (deploy key not as the admin, owner's key not as the deploy user)", () => {
                const [a, b] = [ssh(deployKey, adminUser), ssh(owner.file, deployUser)];
                return a.code !== 0 && b.code !== 0 ? undefined : `deploy key as ${adminUser}: exit ${a.code}; owner's key as ${deployUser}: exit ${b.code}`;
            });
            checks.check("port forwarding: the admin reaches the server's loopback through SSH, the deploy user cannot; nobody opens a remote forward", () => {
                const opts = `-p ${sshPort} ${sshOpts}`;
                // sshd's own banner on the loopback, through a stdio forward (a direct-tcpip channel, as -L opens).
                const via = (key: string, user: string) => fromClient(`sleep 2 | timeout 20 ssh -i ${key} ${opts} -W 127.0.0.1:${sshPort} ${user}@${SERVER.ipv4}`);
                const [admin, deploy] = [via(owner.file, adminUser), via(deployKey, deployUser)];
                const remote = fromClient(`timeout 20 ssh -i ${owner.file} ${opts} -o ExitOnForwardFailure=yes -R 0:127.0.0.1:${sshPort} ${adminUser}@${SERVER.ipv4} true`);
                return /^SSH-2\.0-/m.test(admin.stdout) && !/SSH-2\.0-/.test(deploy.stdout) && /administratively prohibited/.test(deploy.stderr) &&
                    remote.code !== 0 && /remote port forwarding failed/i.test(remote.stderr) ? undefined
                    : `admin: ${admin.stdout}${admin.stderr}; deploy: ${deploy.stdout}${deploy.stderr}; remote: exit ${remote.code} ${remote.stderr}`;
            });
            checks.check("a login session may not dump core (hard limit 0, for root under sudo too)", () => {
                const r = fromClient(`ssh -i ${owner.file} -p ${sshPort} ${sshOpts} ${adminUser}@${SERVER.ipv4} 'ulimit -Hc; sudo -n sh -c "ulimit -Hc"'`);
                return r.stdout.trim().split("\n").join(" ") === "0 0" ? undefined : r.stdout + r.stderr;
            });
            checks.check("root login is refused", () => {
                const r = ssh(owner.file, "root");
                return r.code !== 0 && /Permission denied/.test(r.stderr) ? undefined : `exit ${r.code}: ${r.stderr}`;
            });
            checks.check("password authentication is not offered", () => {
                const r = ssh(owner.file, adminUser, "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive");
                return r.code !== 0 && /Permission denied \(publickey\)/.test(r.stderr) ? undefined : `exit ${r.code}: ${r.stderr}`;
            });
            checks.check("port 22 is closed", () => fromClient(`nc -z -w 3 ${SERVER.ipv4} 22`).code !== 0 ? undefined : "port 22 accepted a connection");
            checks.check("sshd -t is clean", () => { const r = server.exec("sshd -t"); return r.code === 0 ? undefined : r.stderr; });
            checks.check("reverse DNS of both IPs is the hostname, forward-confirmed", () => {
                const problems = [SERVER.ipv4, SERVER_IPV6].flatMap(ip => {
                    const ptr = fromClient(`kdig +short @${NET.inet.ipv4} -x ${ip}`).stdout.trim();
                    const back = fromClient(`kdig +short @${NET.inet.ipv4} ${ip.includes(":") ? "AAAA" : "A"} ${ptr}`).stdout.trim();
                    return ptr === "mail.example.test." && back === ip ? [] : [`${ip} → ${ptr} → ${back}`];
                });
                return problems.join("\n") || undefined;
            });
            for (const name of names) checks.check(`HTTPS certificate for ${name} verifies against the ACME CA's root`, () => tlsCheck(name, 443));
            checks.check("HTTPS over IPv6 verifies too", () => tlsCheck("mail.example.test", 443, SERVER_IPV6));
            checks.check("port 80 redirects to HTTPS", () => {
                const r = fromClient(`curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://${SERVER.ipv4}/x -H 'Host: www.example.test'`);
                return r.stdout === "301 https://www.example.test/x" ? undefined : r.stdout;
            });
            checks.check("certificate and ACME account live on the data volume; renewal timer and deploy hook in place", () => {
                const r = server.exec("test -L /etc/letsencrypt && test -f /srv/tls/letsencrypt/live/selfhost/fullchain.pem" +
                    " && systemctl is-enabled certbot.timer && grep -q selfhost-tls-deployed /etc/letsencrypt/renewal/selfhost.conf" +
                    " && test -x /usr/local/sbin/selfhost-tls-deployed");
                return r.code === 0 ? undefined : r.stdout + r.stderr;
            });
            checks.check("nginx -t is clean and no version is disclosed", () => {
                const t = server.exec("nginx -t");
                const head = fromClient(`curl -skI https://${SERVER.ipv4}/`).stdout;
                return t.code === 0 && /^server: nginx\r?$/mi.test(head) ? undefined : t.stderr + head;
            });
        };
        runAllChecks();

        console.log("the server's own resolver");
        resolverChecks(checks, server, NET.client.listed);

        console.log("mail, with real clients and the peer");
        await mailChecks({ checks, server, peer, root, work, serverIp: SERVER.ipv4, serverIpv6: SERVER_IPV6, passwords: program.outputs.mailPasswords, openpgpHome: dave.home,
            sendLimitPerHour: config.sendLimitPerHour as number });

        console.log("web, with curl, openssl and git");
        await webChecks({ checks, server, serverIp: SERVER.ipv4, sshPort, adminUser, root, ownerKey: owner.file, deployKey: ciKey.file, work });

        console.log("webmail, in Chromium");
        await webmailChecks({ checks, server, peer, serverIp: SERVER.ipv4, root, work, passwords: program.outputs.mailPasswords });

        console.log("XMPP, with slixmpp and the peer's Prosody");
        const xmpp = { checks, server, serverIp: SERVER.ipv4, root, passwords: program.outputs.mailPasswords, work,
            peer: { ip: NET.peer.ipv4, ca: peerTls.ca, password: PEER_XMPP_PASSWORD },
            turnSecret: program.one("random:index/randomPassword:RandomPassword", "turn-secret").state.result };
        xmppChecks(xmpp);
        console.log("a mail password changes; XMPP follows when the steps re-run");
        const passwordSteps = steps.filter(s => s.name === "mail" || s.name === "xmpp");
        const newPassword = `changed-${Date.now()}`;
        const withPassword = (step: Step, user: string, password: string): Step => ({
            ...step, stdin: (step.stdin ?? "").split("\n").map(line => {
                const [name, value] = line.split(" ");
                if (name !== "passwords") return line;
                const lines = Buffer.from(value, "base64").toString().split("\n")
                    .map(l => l.startsWith(`${user}@`) ? `${user}@example.test ${password}` : l);
                return `${name} ${Buffer.from(lines.join("\n")).toString("base64")}`;
            }).join("\n"),
        });
        apply(passwordSteps.map(step => withPassword(step, "bob", newPassword)), "new password");
        const bobLogin = (password: string) => xmppClient(xmpp, { ...program.outputs.mailPasswords, bob: password }, ["login", "5222", "bob@example.test"]);
        checks.check("bob's new mail password logs in to XMPP, the old one no longer does", () => {
            const [fresh, old] = [bobLogin(newPassword), bobLogin(program.outputs.mailPasswords.bob)];
            return fresh.code === 0 && old.code !== 0 ? undefined : `new: exit ${fresh.code} ${fresh.stderr}; old: exit ${old.code}`;
        });
        apply(passwordSteps, "password back");

        console.log("hardening: scans and the daemons' checkers");
        const hardening = { checks, server, serverIp: SERVER.ipv4, serverIpv6: SERVER_IPV6, sshPort, root, passwords: program.outputs.mailPasswords,
            jails: jailNames(stepFiles(program, "hardening").get(JAIL_CONF)!.content) };
        hardeningChecks(hardening);

        console.log("idempotency: every step again");
        // Master and worker PIDs: a restart changes the master, a reload replaces the workers.
        const nginxPid = () => server.exec("pgrep -d, nginx | sort").stdout.trim();
        const pidBefore = nginxPid();
        const again = apply(steps, "re-apply");
        for (const step of steps) {
            checks.check(`re-running ${step.name} changes nothing`, () => {
                const out = again.get(step.name)!.out;
                return /0 file\(s\) changed, 0 package\(s\) installed/.test(out) ? undefined : out.split("\n").slice(-3).join("\n");
            });
        }
        checks.check("nginx was neither restarted nor reloaded by the re-run", () => nginxPid() === pidBefore ? undefined : `nginx ${pidBefore} → ${nginxPid()}`);
        checks.check("HTTPS still verifies after the re-run", () => tlsCheck("mail.example.test", 443));

        console.log("a broken config is refused and the working one stays");
        const refuseBroken = (stepName: string, good: string, bad: string, checker: RegExp, state: string, servedStill: () => string | undefined) => {
            const step = steps.find(s => s.name === stepName)!;
            const before = server.exec(state).stdout;
            const refused = applyStep({ ...step, create: step.create.replace(good, bad) }, work);
            const out = refused.stdout + refused.stderr;
            checks.check(`a broken ${stepName} file: the step fails with the checker's own message`, () =>
                refused.code !== 0 && checker.test(out) ? undefined : `exit ${refused.code}: ${out}`);
            checks.check(`a broken ${stepName} file: the previous file is back, nothing was reloaded, the service still works`, () =>
                server.exec(state).stdout === before ? servedStill() : "config or running state changed");
        };
        refuseBroken("web", "ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.2 TLSv1.3", /check failed: nginx -t[\s\S]*\[emerg\]/,
            "sha256sum /etc/nginx/snippets/selfhost-tls.conf; pgrep -d, nginx | sort", () => tlsCheck("www.example.test", 443));
        refuseBroken("hardening", "policy drop;", "policy dorp;", /check failed: nft -c -f[\s\S]*Error/,
            "sha256sum /etc/nftables.conf; nft list chain inet selfhost input; nft list chain inet selfhost output", () => ssh(owner.file, adminUser).code === 0 ? undefined : "SSH fails");

        console.log("change locality: one service option changed");
        const changed = await runProgram({ ...config, ...changedOption }, { cloud: SERVER });
        const rerun = stepsThatChanged(program, changed);
        const replaced = changedServerInputs(program, changed);
        checks.check(`changing ${Object.keys(changedOption).join(", ")} re-runs exactly the tls step`, () =>
            rerun.map(s => s.name).join(",") === "tls" ? undefined : `steps that changed: ${rerun.map(s => s.name).join(", ") || "none"}`);
        checks.check("the user-data and the server are untouched", () => replaced ? `server inputs changed: ${replaced}` : undefined);
        const serial = () => fromClient(`openssl s_client -connect ${SERVER.ipv4}:443 -servername mail.example.test </dev/null 2>/dev/null | openssl x509 -noout -serial`).stdout.trim();
        const serialBefore = serial();
        const changeStarted = Date.now();
        apply(rerun, "apply changed");
        const changeMs = Date.now() - changeStarted;
        checks.check("the new CA issued a new certificate and the deploy hook made nginx serve it", () => {
            const after = serial();
            return after && after !== serialBefore && !tlsCheck("mail.example.test", 443) ? undefined : `serial ${serialBefore} → ${after}`;
        });

        console.log("tlsMode private-ca on the same server, then back to ACME");
        const privateCa = await runProgram({ ...config, tlsMode: "private-ca" }, { cloud: SERVER });
        const caFile = path.join(work, "private-ca.pem");
        fs.writeFileSync(caFile, privateCa.outputs.caCertificate);
        const caSteps = stepsThatChanged(program, privateCa);
        // The webmail verifies our own IMAP and SMTP with the CA that signed them: it follows.
        checks.check("switching tlsMode re-runs only the tls step and the webmail's", () =>
            caSteps.map(s => s.name).join(",") === "tls,webmail" ? undefined : caSteps.map(s => s.name).join(", "));
        apply(caSteps, "apply private-ca");
        for (const name of ["example.test", "mail.example.test", "upload.example.test"]) {
            checks.check(`private-CA certificate for ${name} verifies against the stack's caCertificate output`, () => {
                const r = fromClient(`openssl s_client -connect ${SERVER.ipv4}:443 -servername ${name} -verify_hostname ${name} ` +
                    `-CAfile ${caFile} -verify_return_error </dev/null 2>&1`);
                return r.code === 0 ? undefined : r.stdout.split("\n").slice(-6).join("\n");
            });
        }
        checks.check("the private key reached the server with mode 0600, through stdin only", () => {
            const r = server.exec("stat -c %a /srv/tls/private-ca/privkey.pem");
            const tlsStep = caSteps[0];
            const key = (tlsStep.stdin ?? "").split("\n").find(l => l.startsWith("s0 "));
            return r.stdout.trim() === "600" && key && !tlsStep.create.includes(Buffer.from(key.split(" ")[1], "base64").toString().split("\n")[1])
                ? undefined : `mode ${r.stdout.trim()}`;
        });
        checks.check("in private-CA mode the webmail still logs alice in (it verifies our IMAP with that CA)", () => {
            const to = formLogin({ user: "alice@example.test", password: program.outputs.mailPasswords.alice, ca: caFile, serverIp: SERVER.ipv4 });
            return /_task=mail/.test(to) ? undefined : `redirected to "${to}"`;
        });
        apply(steps.filter(s => caSteps.some(c => c.name === s.name)), "back to acme");
        checks.check("back on ACME, the certificate verifies against the ACME root again", () => tlsCheck("mail.example.test", 443));

        console.log("the TLS key rolls over to the next one, whose TLSA record was published first");
        const hex = (text: string) => text.split("\n").filter(Boolean).map(l => l.split(/\s+/).slice(0, 3).join(" ") + " " + l.split(/\s+/).slice(3).join("").toLowerCase()).sort();
        const publishedTlsa = () => hex(fromClient(`kdig +short @${NET.inet.ipv4} _25._tcp.mail.example.test TLSA`).stdout);
        const servedTlsa = () => "3 1 1 " + fromClient(`openssl s_client -connect ${SERVER.ipv4}:25 -starttls smtp </dev/null 2>/dev/null | ` +
            "openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1").stdout.trim();
        const [tlsaBefore, servedBefore] = [publishedTlsa(), servedTlsa()];
        checks.check("port 25's TLSA set names the key in use and a next one, as the tls step printed them", () =>
            tlsaBefore.length === 2 && tlsaBefore.includes(servedBefore) && JSON.stringify(tlsaBefore) === JSON.stringify([...tlsa].sort())
                ? undefined : `published ${tlsaBefore}; served ${servedBefore}; printed ${tlsa}`);
        const rolled = await runProgram({ ...config, tlsKeyGeneration: 2 }, { cloud: SERVER });
        const rollSteps = stepsThatChanged(program, rolled);
        checks.check("raising tlsKeyGeneration re-runs only the tls step", () =>
            rollSteps.map(s => s.name).join(",") === "tls" ? undefined : rollSteps.map(s => s.name).join(", "));
        apply(rollSteps, "key rollover");
        // knot signs and serves the zone Gandi's API wrote a moment after its reload.
        let tlsaAfter = publishedTlsa();
        for (let i = 0; i < 20 && JSON.stringify(tlsaAfter) === JSON.stringify(tlsaBefore); i++) { sh("sleep 0.5"); tlsaAfter = publishedTlsa(); }
        const servedAfter = servedTlsa();
        checks.check("after the rollover port 25 serves the key that was already the published next one; a new next key is published", () =>
            servedAfter !== servedBefore && tlsaBefore.includes(servedAfter) && tlsaAfter.includes(servedAfter) && tlsaAfter.length === 2 &&
                tlsaAfter.some(t => !tlsaBefore.includes(t)) && !tlsCheck("mail.example.test", 443)
                ? undefined : `before: ${tlsaBefore} serving ${servedBefore}; after: ${tlsaAfter} serving ${servedAfter}`);
        const verified = () => peer.exec(`journalctl -t postfix/smtp --no-pager -o cat | grep -c '^Verified TLS connection established to mail.example.test'`).stdout.trim();
        const verifiedBefore = Number(verified());
        peer.exec("printf 'Subject: e2e after the key rollover\\n\\nhello\\n' | sendmail -f carol@peer.test alice@example.test");
        const afterRoll = server.exec("for i in $(seq 60); do grep -rlqs '^Subject: e2e after the key rollover' /srv/mail/example.test/alice/Maildir && exit 0; sleep 1; done; exit 1");
        checks.check("mail from the peer (which uses DANE) still arrives after the rollover, over TLS verified by the TLSA record", () =>
            afterRoll.code === 0 && Number(verified()) > verifiedBefore ? undefined : `arrived: ${afterRoll.code === 0}; verified sessions ${verifiedBefore} → ${verified()}`);

        console.log("npm run check, from the client: green, then one fault at a time");
        await statusChecks({
            checks, server, outputs: program.outputs, root, ownerKey: owner.file, work,
            zoneFile: path.join(dnsDir, "example.test.zone"), reloadZone: () => must(`knotc -c ${dnsDir}/knot.conf zone-reload example.test`),
            dsAtRegistry: async on => { if (on) await dnsRoot.delegateSigned(gandiDs); else await dnsRoot.withdrawSigned(); },
            publishTlsa: values => { publishTlsa(gandi, program, gandiConfig(config, token), values.length ? values : tlsa); },
        });

        console.log("hardening: SSH open to anyone, then attacked");
        const open = await runProgram({ ...config, ...openSsh }, { cloud: SERVER });
        const openSteps = stepsThatChanged(program, open);
        checks.check("opening SSH to anyone re-runs exactly the hardening step", () =>
            openSteps.map(s => s.name).join(",") === "hardening" ? undefined : openSteps.map(s => s.name).join(", "));
        apply(openSteps, "apply open SSH");
        checks.check("SSH is now reachable from an address outside the old allowlist", () =>
            sh(`nc -s ${NET.client.listed} -z -w 3 ${SERVER.ipv4} ${sshPort}`, { ns: NET.client.ns }).code === 0 ? undefined : "filtered");
        checks.check(`the step returned with fail2ban's ${hardening.jails.length} jails already watching (it restarted fail2ban)`, () => {
            const r = server.exec("fail2ban-client status");
            return runningJails(r.stdout) === [...hardening.jails].sort().join(", ") ? undefined : r.stdout + r.stderr;
        });
        await attackChecks(hardening, config.banTime as number);

        figures.push(
            ["server boot to SSH-ready (cloud-init), s", (bootMs / 1000).toFixed(1)],
            ...[...first].map(([name, r]): [string, string] => [`step ${name}, first run, s`, (r.ms / 1000).toFixed(1)]),
            ["first boot → all steps applied, s", (firstBootMs / 1000).toFixed(1)],
            ["re-run of all steps (nothing to do), s", ([...again.values()].reduce((n, r) => n + r.ms, 0) / 1000).toFixed(1)],
            ["one-option change: steps re-run", String(rerun.length)],
            ["one-option change: server replacements", replaced ? "1" : "0"],
            ["one-option change: seconds", (changeMs / 1000).toFixed(1)],
        );
        if (bench) {
            // The same bare install once more, now: Debian's defaults for the memory table, and how far two installs of one run drift.
            const beforeBaseline = aptCache.traffic().fetched;
            const baseline = await benchBaseline(path.join(work, "baseline"), packages, [acme.apiCa], cleanup);
            const bareMs = bare!.bootMs + bare!.installMs;
            const endMs = baseline.bootMs + baseline.installMs;
            const mb = (n: number) => n.toFixed(1);
            const seconds = (...ms: number[]) => ms.map(t => (t / 1000).toFixed(1)).join(" / ");
            const ourDpkgMs = firstDpkgSeconds(server) * 1000;
            figures.push(
                [`apt cache at the start of this run (a fresh machine: cold)`, aptCache.warmAtStart ? "warm" : "cold"],
                ["warm-up: fresh host boot + bare install, with the cache as found, s", (warmup!.ms / 1000).toFixed(1)],
                ["warm-up: MB fetched from the real mirror", mb(warmup!.fetchedMb)],
                ["MB the first boot and the end-of-run install then fetched from the real mirror", `${mb(firstBootFetchedMb)} / ${mb((aptCache.traffic().fetched - beforeBaseline) / 1e6)}`],
                ["baseline: fresh host boot + bare apt-get install of the same packages (warm cache, just before first boot), s", (bareMs / 1000).toFixed(1)],
                ["ratio: first boot → all steps applied / baseline (goal ≤ 1.5)", (firstBootMs / bareMs).toFixed(2)],
                // Where first boot goes, against the baseline: dpkg's own time in the one big install, the rest of the base step, the other steps.
                ["first boot: boot / base step outside dpkg / dpkg / the other steps, s", seconds(bootMs, first.get("base")!.ms - ourDpkgMs, ourDpkgMs,
                    [...first].filter(([name]) => name !== "base").reduce((n, [, r]) => n + r.ms, 0))],
                ["baseline: boot / apt-get outside dpkg / dpkg, s", seconds(bare!.bootMs, bare!.installMs - bare!.dpkgMs, bare!.dpkgMs)],
                ["ratio without boot: steps / bare apt-get install alone", ((firstBootMs - bootMs) / bare!.installMs).toFixed(2)],
                ["the same bare install at the end of the run, s (ratio against it)",
                    `${(endMs / 1000).toFixed(1)} (${(firstBootMs / endMs).toFixed(2)})`],
            );
            memoryTable(server, baseline.server);
            baseline.server.stop();
            // The host audit the hardening issue measured us by, installed for the measurement only.
            const audit = server.exec("apt-get install -q -y --no-install-recommends lynis >/dev/null && lynis audit system --quick --no-colors 2>&1 | " +
                "grep -o 'Hardening index : [0-9]*'; grep -o 'Currently having [0-9]* points (out of [0-9]*)' /var/log/lynis.log | tail -1; " +
                "grep -E '^(warning|suggestion)\\[\\]' /var/log/lynis-report.dat | cut -d'|' -f1,2,3 | sort -u; apt-get purge -q -y lynis >/dev/null");
            console.log(`\nhost audit (lynis) on the provisioned server:\n${audit.stdout}`);
            const index = audit.stdout.match(/Hardening index : (\d+)/)?.[1] ?? "?";
            figures.push(["host hardening index (lynis; a fresh image: 58, goal ≥ 80)", index]);
            checks.check("the host audit the hardening issue set (lynis) scores at least 80 on the provisioned server", () =>
                Number(index) >= 80 ? undefined : `index ${index}: ${audit.stdout.match(/Currently having .*/)?.[0]}`);
        }
        console.log("a burst of mail to one mailbox, right after redis restarted");
        // redis forgets rspamd's scripts when it restarts (an upgrade does that); rspamd must come back with them.
        const rspamdPid = () => server.exec("systemctl show -P MainPID rspamd").stdout.trim();
        const rspamdBefore = rspamdPid();
        server.exec(`systemctl restart redis-server && for i in $(seq 30); do [ "$(systemctl show -P MainPID rspamd)" != ${rspamdBefore} ] && ` +
            "ss -ltn | grep -q ':11332 ' && break; sleep 1; done");
        const rspamdAfter = rspamdPid();
        checks.check("redis, once restarted, restarts rspamd (rspamd's proxy crashed on the scripts redis had lost)", () =>
            rspamdAfter !== rspamdBefore && rspamdAfter !== "0" ? undefined : `rspamd's pid ${rspamdBefore} → ${rspamdAfter}`);
        const burst = await throughput(server, peer, SERVER.ipv4);
        checks.check("200 messages from the peer in 4 parallel sessions are all in alice's INBOX within a minute, none deferred, no Dovecot errors", () =>
            burst.delivered === 200 && !burst.problems ? undefined : `${burst.delivered} delivered\n${burst.problems}`);
        figures.push(
            ["inbound through postfix → rspamd → LMTP, messages/s", burst.chainPerSecond.toFixed(1)],
            ["same messages, postfix → LMTP without rspamd (the chain's limit), messages/s", burst.unfilteredPerSecond.toFixed(1)],
            ["same messages into smtp-sink on the server, messages/s", burst.sinkPerSecond.toFixed(1)],
            ["ratio: full chain / without rspamd", (burst.chainPerSecond / burst.unfilteredPerSecond).toFixed(2)],
            ["ratio: full chain / sink", (burst.chainPerSecond / burst.sinkPerSecond).toFixed(2)],
            ["rspamd's scan time per message, p50 / p95 (ms)", `${burst.scanMs.p50.toFixed(1)} / ${burst.scanMs.p95.toFixed(1)}`],
        );

        console.log("a secondary MX: the server down, mail held there, handed over when it is back");
        await secondaryChecks({
            checks, server, peer, program, withSecondary, serverSpec, work, root, ownerKey: owner.file,
            signAsPeer: () => peerSigns(peer, peerKey.key),
            boot: async spec => { const mx2 = new TestServer(spec, cleanup); await mx2.boot(); return mx2; },
            apply,
            remove: step => deleteStep(step, work),
            publish: (before, after) => {
                publish(gandi, after, gandiConfig(config, token));
                return withdraw(gandi, before, after, gandiConfig(config, token));
            },
            publishTlsa: (run, owner, values) => { publishTlsa(gandi, run, gandiConfig(config, token), values, owner); },
        });

        console.log("in place: another SSH key, a new SSH port, a bigger volume, a new server type");
        const imapList = () => sh(`python3 ${path.join(__dirname, "imap.py")} mail.example.test ${root} alice@example.test list INBOX`,
            { ns: NET.client.ns, input: program.outputs.mailPasswords.alice, timeoutMs: 60_000 });
        const inboxBefore = imapList().stdout;
        await inPlaceChecks({
            checks, server, program, work, adminUser, ownerPub: owner.pub, ownerKey: owner.file, secondKey: ownerKey(work, "second-key"), sshPort,
            rerun: (change, live) => runProgram({ ...config, ...change }, { cloud: { ...SERVER, live } }),
            apply: (s, label) => { apply(s, label); },
            ssh: (key, user, port) => ssh(key, user, "", SERVER.ipv4, port),
            servicesAnswer: () => {
                const inbox = new Set(imapList().stdout.split("\n"));
                const lost = inboxBefore.split("\n").filter(l => !inbox.has(l));
                return inboxBefore.includes("Subject:") && !lost.length ? tlsCheck("mail.example.test", 443) : `not in INBOX over IMAP after the boot:\n${lost.slice(0, 5).join("\n")}`;
            },
        });

        console.log("data that outlives the server");
        const moved = await runProgram({ ...config, location: "hel1" }, { cloud: SERVER });
        checks.check("a move to another location replaces the server and its volume (a volume cannot follow)", () => {
            const volumes = [program, moved].map(r => r.one("hcloud:index/volume:Volume").inputs.location);
            return /location/.test(changedServerInputs(program, moved)) && volumes[0] !== volumes[1] ? undefined : `${changedServerInputs(program, moved)}; ${volumes}`;
        });
        figures.push(...await dataChecks({
            checks, peer, box, backupSshPublicKey: program.outputs.backupSshPublicKey, passwords: program.outputs.mailPasswords,
            root, serverIp: SERVER.ipv4, work, bench, adminUser,
            boot: async (dir, volumeImage) => {
                // A name of its own: a new machine, and a cgroup the old one's leftovers do not share.
                const next = new TestServer({ ...serverSpec, name: dir, dir: path.join(work, dir), volumeImage }, cleanup);
                await next.boot();
                return next;
            },
            apply: (s, label) => apply(s, label),
            remove: step => deleteStep(step, work),
        }, server, steps, declaredSteps(moved)));

        console.log("\nlocal target figures");
        for (const [k, v] of figures) console.log(`| ${k.padEnd(66)} | ${v.padStart(6)} |`);
    } catch (e) {
        checks.check("the local target ran to the end", () => String(e instanceof Error ? e.message : e));
    } finally {
        // E2E_KEEP=1 leaves the world running to look around (nsenter into the server); the next run sweeps it.
        if (process.env.E2E_KEEP) console.log("E2E_KEEP: left running"); else cleanup.run();
    }
    console.log(`\n${checks.summary()}`);
    return checks.failed.length === 0 ? 0 : 1;
}

main().then(code => process.exit(code), e => { console.error(e); process.exit(1); });
