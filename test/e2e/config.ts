/** The local target's stack: the embedded default that `npm run e2e` stands up. */
import { NET, acmeDirectory } from "./world";

export const SERVER = { ipv4: "198.51.100.10", ipv6Network: "2001:db8:10::/64" };

export const e2eConfig = (userKey: string): Record<string, unknown> => ({
    domain: "example.test",
    adminEmail: "owner@example.test",
    sshPublicKeys: [userKey],
    dnsProvider: "none",
    dnsTtl: 300,
    acmeServer: acmeDirectory(NET.inet.ipv4),
    caaIssuer: "pebble.example",
    users: [{ name: "alice", aliases: ["info"] }, { name: "bob", forwards: ["carol@peer.test"] }],
});

/** One service option changed for the change-locality check: a different CA directory (same pebble, by name). */
export const changedOption = { acmeServer: acmeDirectory("acme.example.test") };
