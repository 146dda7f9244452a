/**
 * The change matrix: for each config change a user makes, what `pulumi up` does to the resources
 * under the providers' rules (test/providers.ts). The unit test asserts each row, and README's
 * "What a change does" table is rendered from the same runs (`npm run changes` prints it).
 */
import { runProgram, ProgramRun, DEFAULT_CLOUD, liveAfter } from "./program";
import { baseConfig, ALICE_KEY, BOB_KEY } from "./fixtures";
import { plan, Plan } from "./providers";

export interface Change {
    /** What the user does, as README says it. */
    readonly what: string;
    /** Config before (on top of the test fixture's), and the change to it. */
    readonly from?: Record<string, unknown>;
    readonly change: Record<string, unknown>;
    /** Resources replaced (short labels), whether the handover runs, whether Pulumi refuses the plan. */
    readonly expect: { readonly replaced: readonly string[]; readonly handover: boolean; readonly refused?: boolean };
}

const SERVER_AND_STEPS = ["server", "steps (all)", "volume attachment"];
const MOVED = [...SERVER_AND_STEPS, "primary IPs", "reverse DNS", "volume"];

export const CHANGES: readonly Change[] = [
    { what: "add an SSH key", change: { sshPublicKeys: [ALICE_KEY, BOB_KEY] }, expect: { replaced: [], handover: false } },
    { what: "remove or replace an SSH key", change: { sshPublicKeys: [BOB_KEY] }, expect: { replaced: [], handover: false } },
    { what: "adminUser", change: { adminUser: "carol" }, expect: { replaced: [], handover: false } },
    { what: "adminSources", change: { adminSources: ["203.0.113.0/24"] }, expect: { replaced: [], handover: false } },
    { what: "hostname", change: { hostname: "mx.example.org" }, expect: { replaced: [], handover: false } },
    { what: "sshPort (the next `up` closes the old port)", change: { sshPort: 2200 }, expect: { replaced: [], handover: false } },
    { what: "serverType", change: { serverType: "cx33" }, expect: { replaced: ["before-server-type-change"], handover: false } },
    { what: "image", change: { image: "debian-14" }, expect: { replaced: SERVER_AND_STEPS, handover: true } },
    { what: "location, protectData on", change: { location: "hel1" }, expect: { replaced: MOVED, handover: true, refused: true } },
    { what: "protectData off (first of a move's three `up`s)", change: { protectData: false }, expect: { replaced: [], handover: false } },
    { what: "location, protectData off (the move)", from: { protectData: false }, change: { location: "hel1" }, expect: { replaced: MOVED, handover: true } },
    { what: "volumeSizeGb (grow)", change: { volumeSizeGb: 40 }, expect: { replaced: [], handover: false } },
    { what: "add a mail user", change: { users: [...(baseConfig().users as unknown[]), { name: "dave" }] }, expect: { replaced: [], handover: false } },
    { what: "a new password for one user (passwordVersion)", change: { users: [{ ...(baseConfig().users as object[])[0], passwordVersion: 2 }, (baseConfig().users as object[])[1]] },
        expect: { replaced: ["random password"], handover: false } },
    { what: "a service option (dmarcPolicy)", change: { dmarcPolicy: "reject" }, expect: { replaced: [], handover: false } },
    { what: "dnsProvider hetzner → gandi", change: { dnsProvider: "gandi", gandiToken: "pat0123456789" }, expect: { replaced: [], handover: false } },
    { what: "tlsMode private-ca", change: { tlsMode: "private-ca" }, expect: { replaced: [], handover: false } },
    { what: "the next TLS key (tlsKeyGeneration)", change: { tlsKeyGeneration: 2 }, expect: { replaced: [], handover: false } },
    { what: "backup storagebox → off", change: { backup: "off" }, expect: { replaced: [], handover: false, refused: true } },
    { what: "dnsTtl", change: { dnsTtl: 600 }, expect: { replaced: [], handover: false } },
    { what: "webmail off", change: { webmail: false }, expect: { replaced: [], handover: false } },
    { what: "a secondary MX (secondaryMxLocation)", change: { secondaryMxLocation: "hel1" }, expect: { replaced: [], handover: false } },
    { what: "secondaryMxServerType", from: { secondaryMxLocation: "hel1" }, change: { secondaryMxServerType: "cx33" },
        expect: { replaced: ["secondary's before-server-type-change"], handover: false } },
    { what: "the secondary MX moves (its queue handed over first)", from: { secondaryMxLocation: "hel1" }, change: { secondaryMxLocation: "nbg1" },
        expect: { replaced: ["secondary's primary IPs", "secondary's reverse DNS", "secondary's server", "secondary's steps (all)"], handover: false } },
    { what: "no secondary MX any more (its queue handed over first)", from: { secondaryMxLocation: "hel1" }, change: { secondaryMxLocation: "" },
        expect: { replaced: [], handover: false } },
];

const STEP = "command:remote:Command";
/** The secondary MX's resources carry its name (components/host.ts). */
const SECONDARY = "mx2-";
const ofSecondary = (urn: string) => urn.split("::").pop()!.startsWith(SECONDARY);

/** A short label for a resource, as README's table names it. */
export function label(urn: string, run: ProgramRun): string {
    const r = run.resources.find(x => x.urn === urn)!;
    const secondary = r.name.startsWith(SECONDARY);
    const name = secondary ? r.name.slice(SECONDARY.length) : r.name;
    const labels: Record<string, string> = {
        "hcloud:index/server:Server": "server", "hcloud:index/volume:Volume": "volume", "hcloud:index/primaryIp:PrimaryIp": "primary IPs",
        "hcloud:index/rdns:Rdns": "reverse DNS", "hcloud:index/volumeAttachment:VolumeAttachment": "volume attachment",
        "hcloud:index/firewall:Firewall": "firewall", "hcloud:index/sshKey:SshKey": "Hetzner SSH key",
        "hcloud:index/zoneRrset:ZoneRrset": "DNS records", "pulumi-nodejs:dynamic/gandi:LiveDnsRrset": "DNS records", "hcloud:index/zone:Zone": "DNS zone",
        "pulumi-nodejs:dynamic/gandi:LiveDnsSigning": "DNSSEC signing",
    };
    const short = r.type === STEP ? (r.inputs.create === undefined ? name : `step ${name}`)
        : labels[r.type] ?? r.type.split(":").pop()!.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
    return secondary ? `secondary's ${short}` : short;
}

/** The labels of the resources a plan gives one action; every step collapses to "steps (all)" when all of them do. */
export function labels(p: Plan, action: string, before: ProgramRun, after: ProgramRun): string[] {
    // Our own components only group resources: what they hold is what changes.
    const urns = [...p.actions].filter(([u, a]) => a === action && !u.split("::")[2].split("$").pop()!.startsWith("selfhost:index:")).map(([u]) => u);
    // Each machine's steps collapse on their own: the server's, the secondary's.
    const groups = [false, true].map(secondary => {
        const steps = after.resources.filter(r => r.type === STEP && r.inputs.create !== undefined && ofSecondary(r.urn) === secondary).map(r => r.urn);
        return { steps, all: steps.length > 0 && steps.every(u => urns.includes(u)), label: secondary ? "secondary's steps (all)" : "steps (all)" };
    });
    const collapsed = (u: string) => groups.some(g => g.all && g.steps.includes(u));
    const named = urns.filter(u => !collapsed(u)).map(u => label(u, after.resources.some(r => r.urn === u) ? after : before));
    return [...new Set([...named, ...groups.filter(g => g.all).map(g => g.label)])].sort();
}

export interface Outcome { readonly change: Change; readonly plan: Plan; readonly before: ProgramRun; readonly after: ProgramRun }

export async function outcomes(): Promise<Outcome[]> {
    const result: Outcome[] = [];
    for (const change of CHANGES) {
        const before = await runProgram({ ...baseConfig(), ...change.from });
        // The `up` that makes the change reads the project as the one before left it.
        const after = await runProgram({ ...baseConfig(), ...change.from, ...change.change }, { cloud: { ...DEFAULT_CLOUD, live: liveAfter(before) } });
        result.push({ change, plan: plan(before, after), before, after });
    }
    return result;
}

/** README's table: one row per change. */
export function table(all: Outcome[]): string {
    const cell = (xs: string[]) => xs.join(", ") || "—";
    return [
        "| change | replaced | updated in place | created / deleted | handover (mail stops) |",
        "|---|---|---|---|---|",
        ...all.map(({ change, plan: p, before, after }) => `| ${change.what} | ${p.refused.length
            ? `**refused by Pulumi before anything runs**: protected ${cell([...new Set(p.refused.map(u => label(u, before)))].sort())} would go; ` : ""}${cell(labels(p, "replace", before, after))} | ` +
            `${cell(labels(p, "update", before, after))} | ${cell([...labels(p, "create", before, after).map(l => `+${l}`), ...labels(p, "delete", before, after).map(l => `−${l}`)])} | ` +
            `${p.handover ? "yes" : "no"} |`),
    ].join("\n");
}

if (require.main === module) outcomes().then(all => { console.log(table(all)); process.exit(0); });
