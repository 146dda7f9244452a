/**
 * XMPP checks on the local target with a real client (slixmpp, from Debian) in the client namespace:
 * chat over STARTTLS and direct TLS, a group chat, file sharing over HTTPS, no plaintext login, and
 * a mail password change that XMPP follows.
 */
import * as fs from "fs";
import * as path from "path";
import { sh, run, Result } from "./sh";
import { NET } from "./world";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { portOf } from "../../services/catalog";

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
    checks.check("no login before TLS: the stream offers STARTTLS as required and no SASL mechanism", () => {
        const open = `<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
        const r = sh(`(printf "%s" "${open}"; sleep 2) | nc -w 4 ${c.serverIp} ${starttls}`, { ns: NET.client.ns });
        return /<starttls[^>]*>\s*<required\/>/.test(r.stdout) && !/<mechanisms/.test(r.stdout) ? undefined : r.stdout;
    });
}
