/** A complete, valid stack configuration for tests (example.org, no real secrets). */
import { Settings, validate, schema } from "../config";

export const ALICE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfkYd7UFz5H7487JH9kaHPgqNLRwoI2xmdN0NVhTtt8 alice@laptop";
/** A second user key: adding, removing or reordering keys happens in place. */
export const BOB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDUZl9QGqDLb66uWsvwCgJFEH9qYRlyMr72+boW7Kqxj bob@phone";

export const baseConfig = (): Record<string, unknown> => ({
    domain: "example.org",
    adminEmail: "hostmaster@example.net",
    sshPublicKeys: [ALICE_KEY],
    dnsProvider: "hetzner",
    users: [
        { name: "alice", aliases: ["ali", "info"], forwards: [] },
        { name: "bob", catchAll: true },
    ],
});

/** Validated settings: the schema's defaults, the base config, and a change. */
export function settings(change: Record<string, unknown> = {}): Settings {
    const raw = Object.fromEntries(Object.entries(schema()).map(([k, d]) => [k, d.default]));
    return validate({ ...raw, ...baseConfig(), ...change });
}
