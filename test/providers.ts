/**
 * A small model of what the real providers do with a change, for the change matrix: mocks accept
 * anything, Hetzner and pulumi-command do not. Each rule cites the provider's source it was read from.
 */
import { ProgramRun, DeclaredResource, unsecret } from "./program";
import { REPLACED_ON, SIGNING_REPLACED_ON } from "../components/dns/livedns";
import { CA_REPLACED_ON } from "../components/private-ca";

/**
 * Inputs whose change replaces the resource (every other input updates in place).
 * - hcloud (terraform-provider-hcloud, which @pulumi/hcloud wraps): internal/server/resource.go (image,
 *   location, user_data, ssh_keys: ForceNew; server_type, name, labels, firewall_ids update),
 *   internal/sshkey/resource.go (public_key: RequiresReplace; name updates), internal/primaryip/resource.go
 *   (type, location), internal/volume/resource.go (location; size and name update),
 *   internal/volume/resource_attachment.go (server_id, volume_id), internal/rdns/resource.go (server_id,
 *   primary_ip_id, floating_ip_id, load_balancer_id, ip_address), internal/zone/resource.go (name, mode),
 *   internal/zonerrset/resource.go (zone, name, type), internal/storagebox/resource.go (location, ssh_keys),
 *   internal/storageboxsubaccount/resource.go (storage_box_id).
 * - pulumi-command 1.x: only `triggers` replaces a Command (provider/pkg/provider/remote/command.go).
 * - The private CA's certificate: this project's own provider (components/private-ca.ts), whose `diff`
 *   replaces on CA_REPLACED_ON (and, with time, in the certificate's last year).
 * - Gandi LiveDNS sets and signing: this project's own providers, whose `diff` replaces on REPLACED_ON
 *   and SIGNING_REPLACED_ON (components/dns/livedns.ts). The earlier @pulumiverse/gandi records (terraform-provider-gandi 2.x
 *   gandi/resource_livedns_record.go: zone, name, type ForceNew) are aliased to them.
 * - tls/random: every input of a key or password replaces it (they have no update).
 */
export const REPLACED_BY: Record<string, readonly string[]> = {
    "hcloud:index/server:Server": ["image", "location", "userData", "sshKeys"],
    "hcloud:index/sshKey:SshKey": ["publicKey"],
    "hcloud:index/primaryIp:PrimaryIp": ["type", "location"],
    "hcloud:index/volume:Volume": ["location"],
    "hcloud:index/volumeAttachment:VolumeAttachment": ["serverId", "volumeId"],
    "hcloud:index/rdns:Rdns": ["serverId", "primaryIpId", "floatingIpId", "loadBalancerId", "ipAddress"],
    "hcloud:index/firewall:Firewall": [],
    "hcloud:index/zone:Zone": ["name", "mode"],
    "hcloud:index/zoneRrset:ZoneRrset": ["zone", "name", "type"],
    "hcloud:index/storageBox:StorageBox": ["location", "sshKeys"],
    "hcloud:index/storageBoxSubaccount:StorageBoxSubaccount": ["storageBoxId"],
    "command:remote:Command": ["triggers"],
    "pulumi-nodejs:dynamic/gandi:LiveDnsRrset": REPLACED_ON,
    "pulumi-nodejs:dynamic/gandi:LiveDnsSigning": SIGNING_REPLACED_ON,
    "pulumi-nodejs:dynamic/selfhost:PrivateCa": CA_REPLACED_ON,
};
const REPLACED_BY_ANY = ["tls:", "random:"];

/** Hetzner refuses a second resource of these types with the same name (and an SSH key with the same key) in a project. */
const UNIQUE: Record<string, (inputs: Record<string, any>) => string[]> = {
    "hcloud:index/server:Server": i => [i.name],
    "hcloud:index/sshKey:SshKey": i => [i.name, i.publicKey],
    "hcloud:index/primaryIp:PrimaryIp": i => [i.name],
    "hcloud:index/volume:Volume": i => [i.name],
    "hcloud:index/firewall:Firewall": i => [i.name],
};

export type Action = "create" | "update" | "replace" | "delete";

export interface Plan {
    /** What the engine does to each resource that changes, by URN. */
    readonly actions: Map<string, Action>;
    /** The base step goes (replaced or deleted): its delete is the handover, mail stops. */
    readonly handover: boolean;
    /** Protected resources the plan would replace or delete: Pulumi refuses the whole `up` before it starts. */
    readonly refused: string[];
    /** Hetzner-unique names held by two live resources at once (create-before-delete): `up` fails half-way. */
    readonly clashes: string[];
}

const typeOf = (urn: string) => urn.split("::")[2].split("$").pop()!;
const replaceable = (type: string): readonly string[] | "all" => REPLACED_BY[type] ?? (REPLACED_BY_ANY.some(p => type.startsWith(p)) ? "all" : []);

/** The plan `pulumi up` would make to go from one program run to the next, under the providers' rules. */
export function plan(before: ProgramRun, after: ProgramRun): Plan {
    const old = new Map(before.resources.map(r => [r.urn, r]));
    const next = new Map(after.resources.map(r => [r.urn, r]));
    const actions = new Map<string, Action>();
    for (const [urn, r] of next) {
        const o = old.get(urn);
        if (!o) { actions.set(urn, "create"); continue; }
        const [a, b] = [unsecret(o.inputs), unsecret(r.inputs)];
        // ignoreChanges: the engine keeps the old value, so the provider never sees a change.
        const changed = Object.keys({ ...a, ...b }).filter(k => !r.options.ignoreChanges.includes(k) && JSON.stringify(a[k]) !== JSON.stringify(b[k]));
        if (!changed.length) continue;
        const rule = replaceable(r.type);
        actions.set(urn, rule === "all" || changed.some(k => rule.includes(k)) ? "replace" : "update");
    }
    for (const urn of old.keys()) if (!next.has(urn)) actions.set(urn, "delete");
    // A replaced resource gets a new id: whatever holds that id in a replace-on-change input is replaced too.
    for (let grew = true; grew;) {
        grew = false;
        for (const [urn, r] of next) {
            if (actions.get(urn) === "replace" || actions.get(urn) === "create") continue;
            const rule = replaceable(r.type);
            const gone = [...actions].filter(([u, a]) => a === "replace" && r.dependencies.includes(u)).map(([u]) => old.get(u)!.id);
            const held = (k: string) => gone.some(id => JSON.stringify(unsecret(r.inputs[k]) ?? "").includes(id));
            if (gone.length && (rule === "all" || rule.some(held))) { actions.set(urn, "replace"); grew = true; }
        }
    }
    const goes = (urn: string) => ["replace", "delete"].includes(actions.get(urn) ?? "");
    const refused = [...old.values()].filter(r => r.options.protect && goes(r.urn)).map(r => r.urn);
    // Live at once: everything the new program declares, and what goes only at the end (deleted, or
    // replaced create-before-delete).
    const live: [DeclaredResource, string][] = [...[...next.values()].map((r): [DeclaredResource, string] => [r, `new ${r.urn}`]),
        ...[...old.values()].filter(r => actions.get(r.urn) === "delete" || (actions.get(r.urn) === "replace" && !r.options.deleteBeforeReplace))
            .map((r): [DeclaredResource, string] => [r, `old ${r.urn}`])];
    const holder = new Map<string, string>();
    const clashes: string[] = [];
    for (const [r, who] of live) {
        for (const key of UNIQUE[r.type]?.(unsecret(r.inputs)) ?? []) {
            const id = `${r.type} "${key}"`;
            if (holder.has(id) && holder.get(id) !== who) clashes.push(id);
            holder.set(id, who);
        }
    }
    const handover = [...actions].some(([urn, a]) => (a === "replace" || a === "delete") && typeOf(urn) === "command:remote:Command" && urn.endsWith("::base"));
    return { actions, handover, refused, clashes };
}
