/** The local target's stack: the embedded default that `npm run e2e` stands up. */
import { NET, acmeDirectory } from "./world";
import { GANDI_API_URL } from "./gandi";

export const SERVER = { ipv4: "198.51.100.10", ipv6Network: "2001:db8:10::/64" };

/** The owner's keys and Gandi token, made fresh for each run: SSH for the admin and for a CI system that deploys, OpenPGP for dave's encrypted mailbox. */
export interface OwnerKeys { readonly ssh: string; readonly deploy: string; readonly openpgp: string; readonly gandiToken: string }

export const e2eConfig = (keys: OwnerKeys): Record<string, unknown> => ({
    domain: "example.test",
    adminEmail: "alice@example.test",
    // The daily report proves outbound SMTP against the peer.
    checkSmtpHost: "peer.test",
    sshPublicKeys: [keys.ssh],
    // Gandi LiveDNS as a new account has it: a personal access token, a zone with Gandi's defaults.
    dnsProvider: "gandi",
    gandiToken: keys.gandiToken,
    gandiApiUrl: GANDI_API_URL,
    dnsTtl: 300,
    acmeServer: acmeDirectory(NET.inet.ipv4),
    caaIssuer: "pebble.example",
    // Low enough to reach in a check (dave sends nothing else).
    sendLimitPerHour: 12,
    users: [{ name: "alice", aliases: ["info"] }, { name: "bob", forwards: ["carol@peer.test"] }, { name: "dave", openpgpKey: keys.openpgp },
        // A mailbox small enough to fill in a check.
        { name: "erin", quotaMb: 1 }],
    // The harness (the bridge's addresses) and the client; the attackers and the listed client are outside.
    adminSources: [NET.gateway4, NET.gateway6, NET.client.ipv4, NET.client.ipv6],
    banTime: 60,
    // A stand-in build: it fills in a marker, writes the site to public/ with a symlink to a system file,
    // fails when the tree has "broken", and runs the tree's "probe" (what a hostile dependency would try).
    siteBuild: "test ! -e broken && mkdir -p public && sed 's/@BUILD@/built by siteBuild/' index.html > public/index.html" +
        " && ln -s /etc/hostname public/leak && { [ ! -e probe ] || sh probe; }",
    siteDir: "public",
    siteDeployKeys: [keys.deploy],
    userDirs: true,
    webStats: true,
    apps: [{ name: "echo", port: 8080, path: "/echo" }, { name: "chat", port: 8081, subdomain: "chat" }],
});

/** The hardening attacks: SSH open to anyone, so failures from anywhere reach sshd and fail2ban. */
export const openSsh = { adminSources: [] };

/** One service option changed for the change-locality check: a different CA directory (same pebble, by name). */
export const changedOption = { acmeServer: acmeDirectory("acme.example.test") };
