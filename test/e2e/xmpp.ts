/**
 * XMPP checks on the local target with a real client (slixmpp, from Debian) in the client namespace:
 * chat over STARTTLS and direct TLS, a group chat, file sharing over HTTPS, no plaintext login, and
 * a mail password change that XMPP follows; calls through coturn with coturn's own client, push, and
 * what the Conversations compliance suite asks of a server.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { sh, run, Result } from "./sh";
import { NET } from "./world";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { portOf, servicePort } from "../../services/catalog";
import { TURN_TTL } from "../../components/xmpp";

export interface XmppContext {
    readonly checks: Checks;
    readonly server: TestServer;
    readonly serverIp: string;
    /** CA file that verifies the server's certificates. */
    readonly root: string;
    readonly passwords: Record<string, string>;
    readonly work: string;
    /** The peer's XMPP server (peer.test): its address, CA file, and carol's password there. */
    readonly peer: { readonly ip: string; readonly ca: string; readonly password: string };
    /** The stack's TURN secret (the program's random password), to make credentials as Prosody does. */
    readonly turnSecret: string;
}

/** What turnutils_uclient made of a relay: its counts, or the error it printed (it exits 0 either way). */
function relayed(out: string): { sent: number; received: number; lost: number } | string {
    // Its progress lines count as it goes; the last one is the total.
    const counts = [...out.matchAll(/tot_send_msgs=(\d+), tot_recv_msgs=(\d+)/g)].pop();
    const lost = out.match(/Total lost packets (\d+)/);
    if (!counts || !lost) return out.split("\n").filter(l => /ERROR|error/.test(l)).slice(-2).join("; ") || out.slice(-300);
    return { sent: Number(counts[1]), received: Number(counts[2]), lost: Number(lost[1]) };
}

const DOMAIN = "example.test";
const SCRIPT = path.join(__dirname, "xmpp.py");
const jid = (user: string) => `${user}@${DOMAIN}`;

/** Runs xmpp.py as the client host; Debian's python (slixmpp is a Debian package). */
export function xmppClient(c: Pick<XmppContext, "root" | "serverIp" | "peer">, passwords: Record<string, string>, args: string[]): Result {
    const input = JSON.stringify({
        accounts: { ...Object.fromEntries(Object.entries(passwords).map(([u, p]) => [jid(u), p])), [`carol@${NET.peer.domain}`]: c.peer.password },
        servers: { [DOMAIN]: [c.serverIp, c.root], [NET.peer.domain]: [c.peer.ip, c.peer.ca] },
    });
    return run(["/usr/bin/python3", SCRIPT, ...args], { ns: NET.client.ns, input, timeoutMs: 90_000 });
}

export function xmppChecks(c: XmppContext): void {
    const { checks, server } = c;
    const client = (args: string[]) => xmppClient(c, c.passwords, args);
    const ok = (r: Result) => r.code === 0 ? undefined : `exit ${r.code}: ${(r.stdout + r.stderr).split("\n").slice(-6).join("\n")}`;
    const [starttls, directTls] = [portOf("xmpp-client"), portOf("xmpps-client")];

    checks.check("prosodyctl check config is clean", () => ok(server.exec("prosodyctl check config")));
    checks.check(`alice and bob exchange a message over ${starttls} (STARTTLS), the certificate verified`, () =>
        ok(client(["chat", String(starttls), "STARTTLS", jid("alice"), jid("bob")])));
    checks.check(`bob and alice exchange a message over ${directTls} (direct TLS), the certificate verified`, () =>
        ok(client(["chat", String(directTls), "TLS", jid("bob"), jid("alice")])));
    checks.check(`a user joins a room at conference.${DOMAIN} and posts`, () =>
        ok(client(["room", String(starttls), `e2e@conference.${DOMAIN}`, jid("alice")])));
    checks.check(`a file is shared: a slot from upload.${DOMAIN}, PUT and GET over HTTPS, byte-identical`, () => {
        const file = path.join(c.work, "shared.txt");
        fs.writeFileSync(file, `shared over XMPP ${Date.now()}\n`);
        const slot = client(["upload", String(starttls), jid("alice"), "shared.txt", String(fs.statSync(file).size)]);
        const [put, get, ...headers] = slot.stdout.trim().split("\n");
        if (slot.code !== 0 || !put?.startsWith(`https://upload.${DOMAIN}/`)) return ok(slot) ?? slot.stdout;
        const resolve = `--resolve upload.${DOMAIN}:443:${c.serverIp}`;
        const up = sh(`curl -sf --cacert ${c.root} ${resolve} -H 'Content-Type: text/plain' ${headers.map(h => `-H '${h}'`).join(" ")} -T ${file} '${put}'`, { ns: NET.client.ns });
        const down = sh(`curl -sf --cacert ${c.root} ${resolve} '${get}'`, { ns: NET.client.ns });
        return up.code === 0 && down.stdout === fs.readFileSync(file, "utf8") ? undefined : `PUT ${up.code} ${up.stderr}, GET ${down.code}: ${down.stdout}`;
    });
    checks.check(`alice and carol on the peer's Prosody exchange messages over s2s, certificates checked both ways`, () =>
        ok(client(["chat", String(starttls), "STARTTLS", `carol@${NET.peer.domain}`, jid("alice")])) ??
        ok(client(["chat", String(starttls), "STARTTLS", jid("alice"), `carol@${NET.peer.domain}`])));
    turnChecks(c);
    pushAndCompliance(c);
    checks.check("no login before TLS: the stream offers STARTTLS as required and no SASL mechanism", () => {
        const open = `<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
        const r = sh(`(printf "%s" "${open}"; sleep 2) | nc -w 4 ${c.serverIp} ${starttls}`, { ns: NET.client.ns });
        return /<starttls[^>]*>\s*<required\/>/.test(r.stdout) && !/<mechanisms/.test(r.stdout) ? undefined : r.stdout;
    });
}

/** Calls: credentials over XEP-0215, a relay that carries data, and the relays it must refuse. */
function turnChecks(c: XmppContext): void {
    const { checks, server } = c;
    const [turn, turns] = [portOf("turn"), portOf("turns")];
    // The other end of the call: turnutils_peer (it echoes) on the client's second address.
    const PEER_PORT = 3480;
    const uclient = (args: string) => sh(`timeout 40 turnutils_peer -L ${NET.client.listed} -p ${PEER_PORT} >/dev/null 2>&1 & sleep 0.5; ` +
        `timeout 30 turnutils_uclient -n 10 -c -X ${args} 2>&1; kill %1 2>/dev/null; true`, { ns: NET.client.ns, timeoutMs: 60_000 });
    const hmac = (username: string) => crypto.createHmac("sha1", c.turnSecret).update(username).digest("base64");
    let credential: { username: string; password: string } | undefined;

    checks.check("coturn runs as its own user, confined, with the stack's config and no admin console", () => {
        const r = server.exec("systemctl is-active coturn && ps -o user= -C turnserver && systemctl show coturn -p ProtectSystem -p NoNewPrivileges && ss -Hltnup | grep turnserver");
        const listening = r.stdout;
        return r.code === 0 && /^turnserver$/m.test(r.stdout) && /ProtectSystem=strict/.test(r.stdout) && /NoNewPrivileges=yes/.test(r.stdout) &&
            listening.includes(`:${turn} `) && listening.includes(`:${turns} `) && !listening.includes(":5766 ") ? undefined : r.stdout + r.stderr;
    });
    checks.check(`a logged-in user gets STUN and TURN (UDP ${turn}, TLS ${turns}) with credentials valid for a day (XEP-0215)`, () => {
        const r = xmppClient(c, c.passwords, ["services", String(portOf("xmpp-client")), jid("alice")]);
        if (r.code !== 0) return r.stdout + r.stderr;
        const services: Record<string, string>[] = JSON.parse(r.stdout);
        const shape = services.map(x => `${x.type}/${x.transport}:${x.port}@${x.host}`).sort().join(" ");
        const want = [`stun/udp:${turn}`, `turn/udp:${turn}`, `turns/tcp:${turns}`].map(x => `${x}@mail.${DOMAIN}`).sort().join(" ");
        const t = services.find(x => x.type === "turn");
        if (shape !== want || !t?.username || !t.password) return `services: ${r.stdout}`;
        // Prosody's username is the expiry, and the password the HMAC of it under the stack's secret.
        const lifetime = Number(t.username) - Date.now() / 1000;
        credential = { username: t.username, password: t.password };
        return Math.abs(lifetime - TURN_TTL) < 120 && hmac(t.username) === t.password ? undefined : `lifetime ${lifetime} s, username ${t.username}`;
    });
    checks.check("a user of another server asking ours for TURN credentials is refused", () => {
        const r = xmppClient(c, c.passwords, ["services", String(portOf("xmpp-client")), `carol@${NET.peer.domain}`, DOMAIN]);
        return r.code === 0 && /^\{"error": "(forbidden|not-allowed|service-unavailable)"\}$/.test(r.stdout.trim()) ? undefined : r.stdout + r.stderr;
    });
    checks.check("with them, coturn's own client relays 10 packets to a second address and gets all 10 back, over UDP and over TLS", () => {
        if (!credential) return "no credential";
        const auth = `-u ${credential.username} -w ${credential.password} -e ${NET.client.listed} -r ${PEER_PORT}`;
        const results = [uclient(`${auth} -p ${turn} ${c.serverIp}`), uclient(`-t -S -E ${c.root} ${auth} -p ${turns} ${c.serverIp}`)].map(r => relayed(r.stdout));
        return results.every(x => typeof x !== "string" && x.sent === 10 && x.received === 10 && x.lost === 0) ? undefined : JSON.stringify(results);
    });
    checks.check("credentials past their lifetime are refused, and so is a wrong password (a fresh one made the same way relays)", () => {
        const now = Math.floor(Date.now() / 1000);
        const attempt = (username: string, password: string) => relayed(uclient(`-u ${username} -w ${password} -e ${NET.client.listed} -r ${PEER_PORT} -p ${turn} ${c.serverIp}`).stdout);
        const [fresh, expired, wrong] = [attempt(`${now + 600}`, hmac(`${now + 600}`)), attempt(`${now - 60}`, hmac(`${now - 60}`)), attempt(`${now + 600}`, "wrong")];
        return typeof fresh !== "string" && fresh.received === 10 && [expired, wrong].every(x => typeof x === "string" && /Cannot complete Allocation/.test(x))
            ? undefined : JSON.stringify({ fresh, expired, wrong });
    });
    for (const [what, address] of [["loopback", "127.0.0.1"], ["a private network", "10.20.30.40"], ["the server's own address", c.serverIp],
        ["a link-local address", "169.254.169.254"]] as const) {
        checks.check(`no relay to ${what} (${address}): the permission is refused (403)`, () => {
            if (!credential) return "no credential";
            const r = uclient(`-u ${credential.username} -w ${credential.password} -e ${address} -r ${PEER_PORT} -p ${turn} ${c.serverIp}`);
            return /403 \(Forbidden IP\)/.test(r.stdout) && !/tot_recv_msgs=[1-9]/.test(r.stdout) ? undefined : r.stdout.slice(-400);
        });
    }
    checks.check("the TURN secret is in no file but root's and Prosody's, and in coturn's database (its user's alone); not in coturn's config", () => {
        const r = server.exec(`stat -c '%U:%G %a %n' /etc/prosody/turn-secret /var/lib/turn/turndb; grep -c '${c.turnSecret}' /etc/turnserver.conf /etc/prosody/prosody.cfg.lua || true; ` +
            `journalctl -u coturn -u prosody --no-pager | grep -c '${c.turnSecret}' || true`);
        return /^root:prosody 640 \/etc\/prosody\/turn-secret$/m.test(r.stdout) && /^turnserver:turnserver 6[046]0 \/var\/lib\/turn\/turndb$/m.test(r.stdout) &&
            /turnserver.conf:0/.test(r.stdout) && /prosody.cfg.lua:0/.test(r.stdout) && /^0$/m.test(r.stdout) ? undefined : r.stdout;
    });
    checks.check(`the relay ports (${servicePort("turn-relay").port}-${servicePort("turn-relay").lastPort}) are open in nftables for UDP only`, () => {
        const r = server.exec("nft list chain inet selfhost input");
        return /udp dport .*50000-50199.* accept/.test(r.stdout) && !/tcp dport .*50000-50199/.test(r.stdout) ? undefined : r.stdout;
    });
}

/** Push (XEP-0357) to an app server, and the compliance suite's list over disco and stream features. */
function pushAndCompliance(c: XmppContext): void {
    const { checks } = c;
    const starttls = String(portOf("xmpp-client"));
    checks.check("push: alice registers an app server, goes away; bob writes; the app server is notified, without the message's text", () => {
        const app = `carol@${NET.peer.domain}/push-app`;
        const r = xmppClient(c, c.passwords, ["push", starttls, jid("alice"), app, jid("bob")]);
        if (r.code !== 0) return r.stdout + r.stderr;
        const push = JSON.parse(r.stdout);
        return push.notification && push.node === push.registered && !push.carries_body && push.fields["message-count"] ? undefined : r.stdout;
    });
    checks.check("the Conversations compliance suite's server tests all pass (Advanced Server IM and Mobile, Conversations)", () => {
        const r = xmppClient(c, c.passwords, ["compliance", starttls, jid("bob")]);
        if (r.code !== 0) return r.stdout + r.stderr;
        const found = JSON.parse(r.stdout);
        const service = (feature: string) => Object.values<string[]>(found.services).some(f => f.includes(feature)) || found.server.includes(feature);
        const tests: [string, boolean][] = [
            ["XEP-0115 entity capabilities (stream feature)", found.stream_features.includes("{http://jabber.org/protocol/caps}c")],
            ["XEP-0163 PEP", found.account_identities.some(([cat, type]: string[]) => cat === "pubsub" && type === "pep")],
            ["roster versioning", found.stream_features.includes("{urn:xmpp:features:rosterver}ver")],
            ["XEP-0280 carbons", found.server.includes("urn:xmpp:carbons:2")],
            ["XEP-0191 blocking", found.server.includes("urn:xmpp:blocking")],
            ["XEP-0045 group chat", service("http://jabber.org/protocol/muc")],
            ["XEP-0198 stream management", found.stream_features.includes("{urn:xmpp:sm:3}sm")],
            ["XEP-0313 archive", found.account.includes("urn:xmpp:mam:2")],
            ["XEP-0352 client state", found.stream_features.includes("{urn:xmpp:csi:0}csi")],
            ["XEP-0363 HTTP upload", service("urn:xmpp:http:upload:0")],
            ["XEP-0065 SOCKS5 proxy", service("http://jabber.org/protocol/bytestreams")],
            ["XEP-0357 push", found.account.includes("urn:xmpp:push:0")],
            ["XEP-0384 OMEMO (PEP publish-options)", found.account.includes("http://jabber.org/protocol/pubsub#publish-options")],
            ["XEP-0313 archive in group chats", found.room.includes("urn:xmpp:mam:2")],
            ["XEP-0157 abuse contact", found.abuse.length > 0],
            ["XEP-0160 offline messages", found.server.includes("msgoffline")],
            ["XEP-0215 external services (calls)", found.server.includes("urn:xmpp:extdisco:2")],
        ];
        const failed = tests.filter(([, ok]) => !ok).map(([name]) => name);
        console.log(`    compliance: ${tests.length - failed.length}/${tests.length} (${tests.map(([name]) => name.split(" ")[0]).join(", ")})`);
        return failed.length ? `failed: ${failed.join("; ")}\n${r.stdout}` : undefined;
    });
    checks.check("an avatar published over PEP (XEP-0084) is the account's vCard photo for clients that read vCards (XEP-0398)", () => {
        const r = xmppClient(c, c.passwords, ["avatar", starttls, jid("bob")]);
        if (r.code !== 0) return r.stdout + r.stderr;
        const avatar = JSON.parse(r.stdout);
        return avatar.same_photo && avatar.type === "image/png" ? undefined : r.stdout;
    });
    checks.check(`XEP-0368: _xmpps-client._tcp names port ${portOf("xmpps-client")}, whose certificate is valid for ${DOMAIN}`, () => {
        const srv = sh(`kdig +short @${NET.inet.ipv4} SRV _xmpps-client._tcp.${DOMAIN}`, { ns: NET.client.ns }).stdout.trim();
        const [, , port, target] = srv.split(/\s+/);
        const tls = sh(`openssl s_client -connect ${c.serverIp}:${port} -servername ${DOMAIN} -verify_hostname ${DOMAIN} -CAfile ${c.root} -verify_return_error </dev/null`, { ns: NET.client.ns });
        return Number(port) === portOf("xmpps-client") && target === `mail.${DOMAIN}.` && tls.code === 0 ? undefined : `${srv}; ${tls.stderr.slice(-300)}`;
    });
}
