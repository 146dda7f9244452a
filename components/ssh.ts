/**
 * Where SSH listens, and how `sshPort` moves on a running server without replacing it or locking the
 * deploy out. Read from the live project at Hetzner when the program starts (preview and up alike):
 *
 * - A server boots with sshd on the port in its user-data, and Hetzner replaces a server whose
 *   user-data changes: so that port is the one the server was made with, kept in its label
 *   `ssh-boot-port`; only a new server (first `up`, or a new image or location) boots on `sshPort`.
 * - Which port SSH is proven on is the rule of the "ssh" firewall, which the stack writes only after a
 *   whole `up` went through on it (see `Host.sshProven`).
 * - A move listens on both ports (sshd, nftables, Hetzner's firewall): the steps that change sshd and
 *   the firewall connect on the proven port, every later step on the new one. The next `up` finds the
 *   new port proven and closes the old one. An `up` that fails or is cut off anywhere leaves a port
 *   that works.
 */
import * as pulumi from "@pulumi/pulumi";
import * as hcloud from "@pulumi/hcloud";
import { Settings } from "../config";

/** The server label that keeps the port in the server's user-data. */
export const BOOT_PORT_LABEL = "ssh-boot-port";
/** The label that marks the firewall recording SSH's proven port. */
export const SSH_ROLE = { role: "ssh" };

export interface SshPorts {
    /** The port in the server's user-data. */
    readonly boot: number;
    /** The port the steps that change sshd and the firewalls connect on: the proven one, or a new server's boot port. */
    readonly current: number;
    /** Every port sshd, nftables and Hetzner's firewall accept in this `up`: sshPort and, during a move, the current one. */
    readonly open: readonly number[];
}

/** What the live project says, as far as SSH goes (nothing on a first `up`). */
export interface LiveSsh {
    readonly server?: { readonly image: string; readonly location: string; readonly labels: Record<string, string> };
    /** The port of the "ssh" firewall's rule. */
    readonly provenPort?: number;
}

/** The ports for an `up`, from the settings and the live project. Pure. */
export function sshPorts(s: Pick<Settings, "sshPort" | "image" | "location">, live: LiveSsh): SshPorts {
    // Hetzner replaces the server for these two only: its user-data and keys never change (see test/providers.ts).
    // An image the API no longer names (removed since) says nothing: the provider compares with its state.
    const replaced = !live.server || (live.server.image !== "" && live.server.image !== s.image) || live.server.location !== s.location;
    if (replaced) return { boot: s.sshPort, current: s.sshPort, open: [s.sshPort] };
    // A server made before the label existed booted on the sshPort of its day, which is still the setting
    // unless it is being changed in this same `up`.
    const boot = Number(live.server!.labels[BOOT_PORT_LABEL] ?? s.sshPort);
    const current = live.provenPort ?? boot;
    return { boot, current, open: [...new Set([s.sshPort, current])] };
}

/** Reads the live server and "ssh" firewall of this stack (selected by its labels; `role`: a second machine's record). */
export function liveSsh(s: Pick<Settings, "hostname">, labels: Record<string, string>, role: Record<string, string> = SSH_ROLE): pulumi.Output<LiveSsh> {
    const selector = (l: Record<string, string>) => Object.entries(l).map(([k, v]) => `${k}=${v}`).join(",");
    const servers = hcloud.getServersOutput({ withSelector: selector(labels) });
    const firewalls = hcloud.getFirewallsOutput({ withSelector: selector({ ...labels, ...role }) });
    return pulumi.all([servers, firewalls]).apply(([sv, fw]) => {
        // By its labels: a new hostname renames the server in place, and must not read as a new server.
        const servers = sv.servers ?? [];
        const server = servers.find(x => x.name === s.hostname) ?? (servers.length === 1 ? servers[0] : undefined);
        const port = Number((fw.firewalls ?? [])[0]?.rules?.find(r => r.direction === "in" && r.protocol === "tcp")?.port);
        return {
            server: server && { image: server.image ?? "", location: server.location, labels: server.labels ?? {} },
            provenPort: Number.isInteger(port) && port > 0 ? port : undefined,
        };
    });
}
