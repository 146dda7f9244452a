/**
 * The simulated internet: one bridge on 198.51.100.0/24 and 2001:db8:10::/64, NAT to the Debian
 * mirror only through this machine, and hosts in network namespaces: "inet" runs the authoritative
 * DNS (knot, serving the zone the program renders) and the ACME CA (pebble); "client" is where
 * checks come from, as from anywhere on the internet.
 */
import * as fs from "fs";
import * as path from "path";
import { sh, must, daemon, waitFor, Cleanup } from "./sh";

export const NET = {
    bridge: "shbr0",
    gateway4: "198.51.100.1",
    gateway6: "2001:db8:10::fe",
    /**
     * `resolver` is the address a provider's servers are given as their resolver: the same knot, which
     * refuses blocklist queries there, as Spamhaus refuses big shared resolvers (Hetzner's among them).
     */
    inet: { ns: "sh-inet", ipv4: "198.51.100.2", ipv6: "2001:db8:10::2", resolver: "198.51.100.3" },
    client: { ns: "sh-client", ipv4: "198.51.100.30", ipv6: "2001:db8:10::30", listed: "198.51.100.66",
        /** Addresses the hardening checks attack from, one per jail, so each ban is its own. */
        attackers: ["198.51.100.31", "198.51.100.32", "198.51.100.33", "198.51.100.34"] },
    peer: { ipv4: "198.51.100.20", ipv6: "2001:db8:10::20", domain: "peer.test" },
    nftTable: "selfhost_e2e",
};

export const ACME_PORT = 14000;
export const ACME_MGMT_PORT = 15000;
/** The ACME directory as the server reaches it; a name in the test zone, like a real CA's. */
export const acmeDirectory = (host = NET.inet.ipv4) => `https://${host}:${ACME_PORT}/dir`;

/** The host side of a namespace host's link (interface names have 15 characters at most). */
const vethOf = (ns: string) => `v-${ns}`.slice(0, 15);

/** Removes what an earlier, interrupted run may have left. */
export function sweep(): void {
    // The apt cache (apt-cache.ts) listens on the bridge's address: an earlier run's would hold its port.
    sh("pkill -f 'apt-cacher-n[g] -c /tmp/selfhost-e2e-'");
    sh(`ip link del ${NET.bridge}`);
    for (const ns of [NET.inet.ns, NET.client.ns]) sh(`ip netns pids ${ns} 2>/dev/null | xargs -r kill; ip netns del ${ns}; ip link del ${vethOf(ns)}`);
    sh(`nft delete table ip ${NET.nftTable}`);
    sh(`rm -rf /etc/netns/${NET.client.ns}`);
}

function addHost(ns: string, ipv4: string, ipv6: string, cleanup: Cleanup): void {
    const veth = vethOf(ns);
    must(`ip netns add ${ns}`);
    cleanup.add(`netns ${ns}`, () => sh(`ip netns pids ${ns} | xargs -r kill; ip netns del ${ns}`));
    must(`ip link add ${veth} type veth peer name eth0 netns ${ns} && ip link set ${veth} master ${NET.bridge} up`);
    must([
        "ip link set lo up", "ip link set eth0 up",
        `ip addr add ${ipv4}/24 dev eth0`, `ip -6 addr add ${ipv6}/64 dev eth0 nodad`,
        `ip route add default via ${NET.gateway4}`, `ip -6 route add default via ${NET.gateway6}`,
    ].join(" && "), { ns });
}

export function network(cleanup: Cleanup): void {
    must(`ip link add ${NET.bridge} type bridge && ip addr add ${NET.gateway4}/24 dev ${NET.bridge}` +
        ` && ip -6 addr add ${NET.gateway6}/64 dev ${NET.bridge} nodad && ip link set ${NET.bridge} up`);
    cleanup.add("bridge", () => sh(`ip link del ${NET.bridge}`));
    // Test hosts reach the Debian mirror through this machine, and nothing else is routed for them.
    const forward = must("cat /proc/sys/net/ipv4/ip_forward").trim();
    must("echo 1 > /proc/sys/net/ipv4/ip_forward");
    cleanup.add("ip_forward", () => sh(`echo ${forward} > /proc/sys/net/ipv4/ip_forward`));
    must(`nft -f - <<'EOF'
table ip ${NET.nftTable} {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 198.51.100.0/24 oifname != "${NET.bridge}" masquerade
    }
}
EOF`);
    cleanup.add("nft table", () => sh(`nft delete table ip ${NET.nftTable}`));
    addHost(NET.inet.ns, NET.inet.ipv4, NET.inet.ipv6, cleanup);
    addHost(NET.client.ns, NET.client.ipv4, NET.client.ipv6, cleanup);
    must(`ip addr add ${NET.inet.resolver}/24 dev eth0`, { ns: NET.inet.ns });
    // A second client address that the test blocklist lists.
    must(`ip addr add ${NET.client.listed}/24 dev eth0`, { ns: NET.client.ns });
    for (const a of NET.client.attackers) must(`ip addr add ${a}/24 dev eth0`, { ns: NET.client.ns });
    // The client resolves through the simulated internet's DNS (ip netns exec bind-mounts this file).
    fs.mkdirSync(`/etc/netns/${NET.client.ns}`, { recursive: true });
    fs.writeFileSync(`/etc/netns/${NET.client.ns}/resolv.conf`, `nameserver ${NET.inet.ipv4}\n`);
    cleanup.add("client resolv.conf", () => fs.rmSync(`/etc/netns/${NET.client.ns}`, { recursive: true, force: true }));
}

/** A reverse zone name and relative owner for an address (IPv4 /24, IPv6 /64). */
export function reverseName(ip: string): { zone: string; owner: string } {
    if (ip.includes(":")) {
        const [head] = ip.split("::");
        const groups = head.split(":").map(g => g.padStart(4, "0"));
        const tail = ip.split("::")[1] ?? "";
        const tailGroups = tail ? tail.split(":").map(g => g.padStart(4, "0")) : [];
        const full = [...groups, ...Array(8 - groups.length - tailGroups.length).fill("0000"), ...tailGroups].join("");
        const nibbles = full.split("").reverse();
        return { zone: `${nibbles.slice(16).join(".")}.ip6.arpa`, owner: nibbles.slice(0, 16).join(".") };
    }
    const o = ip.split(".");
    return { zone: `${o[2]}.${o[1]}.${o[0]}.in-addr.arpa`, owner: o[3] };
}

export interface DnsData {
    readonly domain: string;
    /** The program's zone file output (no SOA/NS). */
    readonly zoneFile: string;
    /** PTR records: address → name, from the program's Rdns resources. */
    readonly ptrs: Record<string, string>;
    /** Extra A records the simulated internet itself needs (e.g. the CA's name). */
    readonly extra: Record<string, string>;
    /** Other zones of the simulated internet (the peer's domain, a test blocklist): name → records. */
    readonly zones: Record<string, string[]>;
    /** Of those, the blocklists: refused to queries sent to the provider's resolver address. */
    readonly blocklists: readonly string[];
    /** Of those, zones whose DS in the root does not match their key: a validating resolver must refuse their answers. */
    readonly bogus: readonly string[];
}

const soa = (zone: string) => [
    `$ORIGIN ${zone}.`,
    `@ 300 IN SOA ns.${zone}. hostmaster.${zone}. 1 300 300 86400 300`,
    `@ 300 IN NS ns.${zone}.`,
    `ns 300 IN A ${NET.inet.ipv4}`,
];

/** The test domain's zone without the program's records: what its DNS host has of its own. */
export const zoneHeader = (d: Pick<DnsData, "domain" | "extra">) =>
    [...soa(d.domain), ...Object.entries(d.extra).map(([n, ip]) => `${n} 300 IN A ${ip}`)].join("\n");

export function zoneFiles(d: DnsData): Record<string, string> {
    const zones: Record<string, string[]> = { [d.domain]: [zoneHeader(d), d.zoneFile] };
    for (const [zone, records] of Object.entries(d.zones)) zones[zone] = [...soa(zone), ...records];
    for (const [ip, name] of Object.entries(d.ptrs)) {
        const { zone, owner } = reverseName(ip);
        zones[zone] ??= [...soa(zone).slice(0, 2), `@ 300 IN NS ns.${d.domain}.`];
        zones[zone].push(`${owner} 300 IN PTR ${name}.`);
    }
    return Object.fromEntries(Object.entries(zones).map(([z, lines]) => [z, lines.join("\n") + "\n"]));
}

/** The simulated internet's DNS root: its servers (root hints) and its key (a trust anchor, DS records). */
export interface DnsRoot {
    readonly hints: string;
    readonly anchor: string;
}

/** The world's DNS as its zones' owners see it: the test domain starts unsigned, as a new zone at Gandi does. */
export interface DnsWorld extends DnsRoot {
    /** A command that signs the test domain (what Gandi does when asked) and prints its DS record's data. */
    readonly signCommand: string;
    /** The registry's part: the test domain's DS, as its owner hands it in, goes into the root. */
    delegateSigned(ds: string): Promise<void>;
    /** The test domain's DS taken out of the root again (an owner who never added it). */
    withdrawSigned(): Promise<void>;
}

const ROOT_SERVER = "a.root-servers.test.";

/** The root zone: every zone of the world delegated from it (glue on the world's one DNS host), DS records added when signed. */
const rootZone = (zones: string[], ds: string[] = []) => [
    "$ORIGIN .",
    `@ 300 IN SOA ${ROOT_SERVER} hostmaster.root-servers.test. 1 300 300 86400 300`,
    `@ 300 IN NS ${ROOT_SERVER}`,
    `${ROOT_SERVER} 300 IN A ${NET.inet.ipv4}`,
    ...zones.flatMap(z => [`${z}. 300 IN NS ns.${z}.`, `ns.${z}. 300 IN A ${NET.inet.ipv4}`]),
    ...ds, "",
].join("\n");

/**
 * Starts knot with the zones, each signed (knot's automatic DNSSEC; the test domain only when its DNS
 * host is asked to) and delegated from a signed root of the world's own, and waits until it answers.
 * Returns that root, which the test servers' resolvers trust instead of the real one.
 */
export async function startDns(dir: string, d: DnsData, cleanup: Cleanup): Promise<DnsWorld> {
    fs.mkdirSync(dir, { recursive: true });
    const zones = zoneFiles(d);
    for (const [zone, text] of Object.entries(zones)) fs.writeFileSync(path.join(dir, `${zone}.zone`), text);
    fs.writeFileSync(path.join(dir, "root.zone"), rootZone(Object.keys(zones)));
    const conf = path.join(dir, "knot.conf");
    fs.writeFileSync(conf, [
        "server:", `    listen: [ ${NET.inet.ipv4}@53, ${NET.inet.ipv6}@53, ${NET.inet.resolver}@53 ]`, `    rundir: ${dir}`,
        "database:", `    storage: ${dir}`,
        "policy:", "  - id: world", "    algorithm: ecdsap256sha256", "    single-type-signing: on",
        "template:", "  - id: default", `    storage: ${dir}`, "    zonefile-sync: -1", "    journal-content: none",
        "    dnssec-signing: on", "    dnssec-policy: world",
        "mod-queryacl:", "  - id: not-for-providers", `    interface: [ ${NET.inet.ipv4}, ${NET.inet.ipv6} ]`,
        "zone:", "  - domain: .\n    file: root.zone", ...Object.keys(zones).map(z => `  - domain: ${z}\n    file: ${z}.zone` +
            (d.blocklists.includes(z) ? "\n    module: mod-queryacl/not-for-providers" : "") + (z === d.domain ? "\n    dnssec-signing: off" : "")), "",
    ].join("\n"));
    must(`knotc -c ${conf} conf-check`);
    const knot = daemon(["knotd", "-c", conf], path.join(dir, "knotd.log"), { ns: NET.inet.ns });
    cleanup.add("knotd", () => knot.pid && sh(`kill ${knot.pid}`));
    await waitFor("knot to answer", 30, () =>
        sh(`kdig +short @${NET.inet.ipv4} SOA ${d.domain}`, { ns: NET.client.ns }).stdout.trim() !== "");
    // Each zone's key, known once knot has signed it, goes into the root as its DS (SHA-256 digests).
    const ds = (zone: string) => must(`keymgr -c ${conf} ${zone} ds`).split("\n").filter(l => / DS \d+ \d+ 2 /.test(l));
    // A bogus zone's DS has its digest's last digit changed.
    const parentDs = (zone: string) => ds(zone).map(l => d.bogus.includes(zone) ? l.replace(/.$/, c => c === "0" ? "1" : "0") : l);
    const signed = Object.keys(zones).filter(z => z !== d.domain);
    const rootDs = signed.flatMap(parentDs);
    const delegate = async (zone: string, signed = true) => {
        fs.writeFileSync(path.join(dir, "root.zone"), rootZone(Object.keys(zones), rootDs));
        must(`knotc -c ${conf} zone-reload .`);
        await waitFor(`the root to ${signed ? "carry" : "drop"} ${zone}'s DS`, 30, () =>
            (sh(`kdig +short @${NET.inet.ipv4} DS ${zone}`, { ns: NET.client.ns }).stdout.trim() !== "") === signed);
    };
    await delegate(signed[0]);
    // Signing the test domain: its zone's "signing off" goes, knot makes its keys and signs; the DS (SHA-256) is printed.
    const signCommand = path.join(dir, "sign-test-domain");
    fs.writeFileSync(signCommand, [
        "#!/bin/sh", "set -eu",
        `sed -i '/^  - domain: ${d.domain}$/,/^  - /{/dnssec-signing: off/d}' ${conf}`,
        `knotc -c ${conf} reload >/dev/null`,
        `for i in $(seq 100); do ds=$(keymgr -c ${conf} ${d.domain} ds 2>/dev/null | awk '$2 == "DS" && $5 == 2 {print $3, $4, $5, $6}')`,
        `  [ -n "$ds" ] && knotc -c ${conf} zone-read ${d.domain} @ DNSKEY | grep -q ' DNSKEY 257 ' && { echo "$ds"; exit 0; }`,
        "  sleep 0.1", "done", "echo 'knot did not sign the zone' >&2", "exit 1", "",
    ].join("\n"), { mode: 0o755 });
    return {
        hints: [`. 3600000 NS ${ROOT_SERVER}`, `${ROOT_SERVER} 3600000 A ${NET.inet.ipv4}`, ""].join("\n"),
        anchor: ds(".").join("\n") + "\n",
        signCommand,
        delegateSigned: async (rdata: string) => { rootDs.push(`${d.domain}. 300 IN DS ${rdata}`); await delegate(d.domain); },
        withdrawSigned: async () => {
            rootDs.splice(0, rootDs.length, ...rootDs.filter(l => !l.startsWith(`${d.domain}. `)));
            await delegate(d.domain, false);
        },
    };
}

/**
 * A little CA and a certificate for an API on the "inet" host (its address and `names`), in `dir`:
 * api-ca.pem (the trust anchor), api.pem and api.key.
 */
export function apiCertificate(dir: string, caName: string, names: string[] = []): void {
    const san = [...names.map(n => `DNS:${n}`), `IP:${NET.inet.ipv4}`].join(",");
    must([
        `cd ${dir}`,
        `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api-ca.key -out api-ca.pem -days 2 -subj '/CN=${caName}' 2>/dev/null`,
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api.key -out api.csr -subj '/CN=api' 2>/dev/null",
        `openssl x509 -req -in api.csr -CA api-ca.pem -CAkey api-ca.key -CAcreateserial -out api.pem -days 2 -extfile <(printf 'subjectAltName=${san}') 2>/dev/null`,
    ].join(" && "));
}

/** Starts pebble (ACME CA) validating through the test DNS; returns the CA's TLS trust anchor. */
export async function startAcme(dir: string, names: string[], cleanup: Cleanup): Promise<{ apiCa: string; rootUrl: string }> {
    fs.mkdirSync(dir, { recursive: true });
    // Pebble's own HTTPS listener needs a certificate; make a little CA for it.
    apiCertificate(dir, "e2e ACME API CA", names);
    fs.writeFileSync(path.join(dir, "pebble.json"), JSON.stringify({
        pebble: {
            listenAddress: `0.0.0.0:${ACME_PORT}`, managementListenAddress: `0.0.0.0:${ACME_MGMT_PORT}`,
            certificate: path.join(dir, "api.pem"), privateKey: path.join(dir, "api.key"),
            httpPort: 80, tlsPort: 443, ocspResponderURL: "", externalAccountBindingRequired: false,
        },
    }));
    const pebble = daemon(["pebble", "-config", path.join(dir, "pebble.json"), "-dnsserver", `${NET.inet.ipv4}:53`],
        path.join(dir, "pebble.log"), { ns: NET.inet.ns, env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" } });
    cleanup.add("pebble", () => pebble.pid && sh(`kill ${pebble.pid}`));
    const rootUrl = `https://${NET.inet.ipv4}:${ACME_MGMT_PORT}/roots/0`;
    await waitFor("pebble to answer", 30, () =>
        sh(`curl -sf --cacert ${dir}/api-ca.pem ${acmeDirectory()}`, { ns: NET.client.ns }).code === 0);
    return { apiCa: fs.readFileSync(path.join(dir, "api-ca.pem"), "utf8"), rootUrl };
}
