/**
 * `npm run check` against the local target, from the client host: all green on the provisioned
 * server; then one fault at a time (dovecot stopped, the DKIM record gone, a certificate near expiry
 * by threshold, an extra port open), each reported with its fix and nothing unrelated turning red.
 */
import * as fs from "fs";
import * as path from "path";
import { sh } from "./sh";
import { NET } from "./world";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { Finding } from "../../check/findings";

export interface StatusContext {
    readonly checks: Checks;
    readonly server: TestServer;
    readonly outputs: Record<string, unknown>;
    /** CA file that verifies the server's certificates. */
    readonly root: string;
    readonly ownerKey: string;
    readonly work: string;
    /** The test DNS's zone file for the domain, and how to make knot reload it. */
    readonly zoneFile: string;
    readonly reloadZone: () => void;
    /** The domain's DS at the registry (the root of the test world), taken out or put back. */
    readonly dsAtRegistry: (on: boolean) => Promise<void>;
    /** Port 25's TLSA set published with these values ([]: what the tls step printed). */
    readonly publishTlsa: (values: string[]) => void;
}

const ROOT = path.join(__dirname, "..", "..");
/** Warnings a provisioned server may rightly show here: pending updates, and dave, who hit his sending limit in the mail checks. */
export const EXPECTED_WARNINGS = ["security updates", "reboot", "sending limit"];

/** `npm run check -- --json` on the owner's laptop (this machine's Node and OpenSSH, from the client's address) against these outputs. */
export function npmRunCheck(c: { work: string; root: string; ownerKey: string }, outputs: Record<string, unknown>, extra = ""): { code: number; findings: Finding[]; raw: string } {
    const outputsFile = path.join(c.work, "outputs.json");
    fs.writeFileSync(outputsFile, JSON.stringify(outputs));
    const r = sh(`cd ${ROOT} && npx ts-node -T check/index.ts --outputs ${outputsFile} --resolver ${NET.inet.ipv4} --ca ${c.root} ` +
        `--ssh-key ${c.ownerKey} --known-hosts ${path.join(c.work, "known_hosts")} --json ${extra}`,
        { ns: NET.client.ns, machineTools: true, timeoutMs: 300_000 });
    try { return { code: r.code, findings: JSON.parse(r.stdout), raw: r.stdout + r.stderr }; } catch { return { code: r.code, findings: [], raw: r.stdout + r.stderr }; }
}

export async function statusChecks(c: StatusContext): Promise<void> {
    const { checks, server } = c;
    const runCheck = (extra = "") => npmRunCheck(c, c.outputs, extra);
    const bad = (findings: Finding[], status: "warn" | "error") => findings.filter(f => f.status === status).map(f => `${f.area}/${f.name}`);
    const show = (findings: Finding[]) => findings.filter(f => f.status !== "ok").map(f => `${f.status} ${f.area}/${f.name}: ${f.detail} (fix: ${f.hint})`).join("\n");

    const fresh = runCheck();
    checks.check(`check on the provisioned server: ${fresh.findings.length} findings, none red, exit 0`, () => {
        const warns = fresh.findings.filter(f => f.status === "warn" && !EXPECTED_WARNINGS.includes(f.name));
        return fresh.code === 0 && fresh.findings.length > 40 && !bad(fresh.findings, "error").length && !warns.length ? undefined : `exit ${fresh.code}\n${show(fresh.findings) || fresh.raw}`;
    });
    checks.check("the server's report names the user the sending limit held back (the daily mail takes it to the admin)", () => {
        const limit = fresh.findings.find(f => f.name === "sending limit");
        return limit?.status === "warn" && /held back in the last 24 hours: dave@example\.test \(\d+\)$/.test(limit.detail) && /passwordVersion/.test(limit.hint)
            ? undefined : JSON.stringify(limit);
    });
    // The daily run, as its timer starts it: the first report is news, so it is mailed (root's mail is the admin's).
    const daily = server.exec("rm -f /var/lib/selfhost/status/last; systemctl start selfhost-status.service && " +
        "for i in $(seq 30); do grep -rls '^Subject: selfhost: status of .* changed' /srv/mail/example.test/alice/Maildir && break; sleep 1; done");
    checks.check("the daily report runs confined (a read-only system, two capabilities) and mails the admin", () => {
        const exposure = server.exposure("selfhost-status.service");
        return daily.code === 0 && daily.stdout.trim() && exposure <= 4 ? undefined : `exposure ${exposure}; ${daily.stdout}${daily.stderr}`;
    });
    checks.check("check covers every record of the DNS model, PTRs, TLS endpoints, ports, SSH, relay, blocklists and the server's report", () => {
        const areas = new Set(fresh.findings.map(f => f.area));
        const missing = ["dns", "tls", "ports", "ssh", "mail", "blocklists", "services", "resources", "system", "backup"].filter(a => !areas.has(a));
        const records = (c.outputs.records as unknown[]).length;
        return !missing.length && fresh.findings.filter(f => f.area === "dns").length >= records + 2 ? undefined : `missing areas: ${missing}`;
    });
    const before = new Set(bad(fresh.findings, "error").concat(bad(fresh.findings, "warn")));
    /** A fault is reported precisely: the expected findings turn red with a fix, nothing outside `allowed` does. */
    const fault = (what: string, status: "warn" | "error", expected: RegExp, allowed: RegExp, extra = "") => {
        const r = runCheck(extra);
        const hit = r.findings.filter(f => f.status === status && expected.test(`${f.area}/${f.name}`));
        const stray = r.findings.filter(f => f.status !== "ok" && !before.has(`${f.area}/${f.name}`) && !allowed.test(`${f.area}/${f.name}`));
        checks.check(`${what}: reported as ${status} (${hit.map(f => f.name).join(", ")}) with a fix, nothing else turns red`, () =>
            hit.length && hit.every(f => f.hint) && !stray.length && (status === "error") === (r.code === 1) ? undefined
                : `exit ${r.code}; hit ${hit.length}; stray:\n${show(stray)}\nall:\n${show(r.findings)}`);
    };

    server.exec("systemctl stop dovecot");
    // Dovecot serves IMAPS and ManageSieve: those endpoints and ports go with it, nothing else.
    fault("dovecot stopped", "error", /^services\/dovecot$/, /^(services\/dovecot|tls\/(IMAPS|ManageSieve)|ports\/open on)/);
    server.exec("systemctl start dovecot");
    // coturn answers STUN on UDP (no TCP port probe sees that) and TURN over TLS.
    server.exec("systemctl stop coturn");
    fault("coturn stopped", "error", /^ports\/STUN /, /^(ports\/STUN |tls\/TURN over TLS|services\/coturn$|ports\/open on)/);
    server.exec("systemctl start coturn");

    // A new SOA serial each time, so the DNS server takes the changed zone.
    const zone = fs.readFileSync(c.zoneFile, "utf8");
    const withSerial = (text: string, serial: number) => text.replace(/( IN SOA \S+ \S+ )\d+/, `$1${serial}`);
    fs.writeFileSync(c.zoneFile, withSerial(zone.split("\n").filter(l => !/_domainkey/.test(l)).join("\n"), 2));
    c.reloadZone();
    fault("the DKIM record removed from DNS", "error", /^dns\/DKIM /, /^dns\/DKIM /);
    fs.writeFileSync(c.zoneFile, withSerial(zone, 3));
    c.reloadZone();

    // Pebble's certificates live for years; a threshold above that makes this one "near expiry".
    fault("a certificate near expiry (warning threshold raised above its lifetime)", "warn", /^tls\//, /^tls\//, "--cert-warn-days 100000");

    // The server's resolver caches the domain's data for its TTL: each change below is followed by a flush, as time would do.
    const forget = () => server.exec("unbound-control flush_zone example.test >/dev/null && unbound-control flush_bogus >/dev/null");
    await c.dsAtRegistry(false);
    forget();
    fault("the DS missing at the registry (the zone signed, the chain broken)", "warn", /^dns\/DNSSEC$/, /^dns\/DNSSEC$/);
    await c.dsAtRegistry(true);
    c.publishTlsa([`3 1 1 ${"0".repeat(64)}`]);
    forget();
    fault("a TLSA record that names another key than port 25's", "error", /^mail\/DANE TLSA$/, /^mail\/DANE TLSA$/);
    c.publishTlsa([]);
    forget();

    server.exec("nft insert rule inet selfhost input tcp dport 3306 accept && systemd-run --quiet --unit=e2e-extra-port systemd-socket-activate --accept -l 3306 cat");
    fault("an extra port opened and listening", "error", /^ports\/closed on/, /^ports\/closed on/);
    server.exec("systemctl stop e2e-extra-port; nft -f /etc/nftables.conf");
    const again = runCheck();
    checks.check("with every fault undone, check is green again", () => again.code === 0 && !bad(again.findings, "error").length ? undefined : show(again.findings));
}
