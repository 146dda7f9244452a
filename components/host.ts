/**
 * What a user pays Hetzner for: the server, and the identity that outlives it — two primary IPs with
 * forward-confirmed reverse DNS and a data volume. Replacing the server keeps all three.
 */
import * as crypto from "crypto";
import * as pulumi from "@pulumi/pulumi";
import * as hcloud from "@pulumi/hcloud";
import * as tls from "@pulumi/tls";
import * as command from "@pulumi/command";
import { Settings } from "../config";
import { publicPorts, portSpec, ServicePort } from "../services/catalog";
import { renderUserData, DEPLOY_USER } from "../cloud-init";
import { Connection, asRoot, sshConnection } from "./remote/step";
import { SshPorts, liveSsh, sshPorts, BOOT_PORT_LABEL, SSH_ROLE } from "./ssh";

export interface HostArgs {
    readonly settings: Settings;
    /** Shell that stops the services writing to disk, run before Hetzner powers the server off for a new type. */
    readonly beforePowerOff: string;
    /** A second machine of the stack (the secondary MX); the server itself when absent. */
    readonly machine?: Machine;
}

/** What sets a second machine apart from the server: it keeps no data (no volume) and shares the server's deploy key. */
export interface Machine {
    readonly hostname: string;
    readonly location: string;
    readonly serverType: string;
    /** Its public ports, given the SSH ports of this `up`. */
    readonly ports: (sshPorts: readonly number[]) => ServicePort[];
    readonly deployKey: DeployKey;
}

/** The stack's own key for remote steps, and Hetzner's record of it (one per project: Hetzner refuses a second with the same fingerprint). */
export interface DeployKey {
    readonly privateKey: pulumi.Output<string>;
    readonly publicKey: pulumi.Output<string>;
    readonly hetznerId: pulumi.Output<string>;
}

const ANYWHERE = ["0.0.0.0/0", "::/0"];

/** A port of the catalog as a Hetzner firewall rule. */
const inboundRule = (p: ServicePort) =>
    ({ direction: "in", protocol: p.protocol, port: portSpec(p), sourceIps: [...p.sources ?? ANYWHERE], description: p.description });

/** Hetzner returns an IPv6 primary IP as its /64; the server uses the network's ::1 (as Hetzner's images do). */
export const firstAddress = (network: string) => network.replace(/\/\d+$/, "").replace(/::$/, "::1");

export class Host extends pulumi.ComponentResource {
    readonly server: hcloud.Server;
    readonly ipv4: pulumi.Output<string>;
    readonly ipv6: pulumi.Output<string>;
    /** The data volume (the server's; a second machine has none). */
    readonly volume?: hcloud.Volume;
    /** The stack's own key for remote steps (the private half is a secret). */
    readonly deployKey: DeployKey;
    /** Attachment of the volume: remote steps that touch data wait for it. */
    readonly volumeAttachment?: hcloud.VolumeAttachment;
    readonly userData: pulumi.Output<string>;
    /** The server's SSH host key (public line), pinned by every connection. */
    readonly hostPublicKey: pulumi.Output<string>;
    /** The SSH ports of this `up`, read from the live project (components/ssh.ts). */
    readonly ssh: pulumi.Output<SshPorts>;
    /** How remote steps reach the server: deploy user, sshPort, deploy key. */
    readonly connection: Connection;
    /** The same on the port SSH is proven on: for the steps that move sshd and the firewall (it differs only during a move). */
    readonly provenConnection: Connection;
    private readonly settings: Settings;
    private readonly labels: Record<string, string>;
    /** Its name, the label of its SSH record, and its children's names (a second machine's carry its name). */
    private readonly hostname: string;
    private readonly sshRole: Record<string, string>;
    private readonly childName: (child: string) => string;

    constructor(name: string, args: HostArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Host", name, {}, opts);
        const s = args.settings;
        const machine = args.machine ?? { hostname: s.hostname, location: s.location, serverType: s.serverType,
            ports: (ssh: readonly number[]) => publicPorts(ssh, s.adminSources), deployKey: undefined };
        const { hostname, location, serverType } = machine;
        // A second machine's resources carry its name: children of two Hosts share their URNs' type path.
        const n = (child: string) => args.machine ? `${name}-${child}` : child;
        const child = { parent: this };
        const labels = { app: "selfhost", domain: s.domain.replace(/\./g, "-") };
        // Both machines carry the stack's labels: the second's SSH record has a role of its own.
        const sshRole = args.machine ? { role: `${name}-ssh` } : SSH_ROLE;
        [this.settings, this.labels, this.hostname, this.sshRole, this.childName] = [s, labels, hostname, sshRole, n];
        this.ssh = liveSsh({ hostname }, labels, sshRole).apply(live => sshPorts({ ...s, location: location as Settings["location"] }, live));
        // Identity: kept when the server is replaced; protected when protectData is on. A second machine
        // holds no data and its queue has a handover of its own: it may go (moved, or turned off) unprotected.
        const [protectData, protectServer] = args.machine ? [false, false] : [s.protectData, s.protectServer];
        const kept = { ...child, protect: protectData };

        // The server's SSH host key, made here: every remote step (and `npm run check`) verifies it before
        // sending anything, from the first connection on; a replacement server presents the same key.
        const hostKey = new tls.PrivateKey(n("host-key"), { algorithm: "ED25519" }, child);
        this.hostPublicKey = hostKey.publicKeyOpenssh.apply(k => k.trim());
        this.deployKey = machine.deployKey ?? this.newDeployKey(labels);
        const deployPublicKey = this.deployKey.publicKey;

        // Names are unique per project and a move creates the new IP and volume before the old ones go:
        // the location in the name keeps the two apart.
        const primaryIp = (type: "ipv4" | "ipv6") => new hcloud.PrimaryIp(n(type), {
            name: `${hostname} ${type} ${location}`, type, location,
            autoDelete: false, deleteProtection: protectData, labels,
        }, kept);
        const ip4 = primaryIp("ipv4");
        const ip6 = primaryIp("ipv6");
        this.ipv4 = ip4.ipAddress;
        this.ipv6 = ip6.ipNetwork.apply(firstAddress);

        this.volume = args.machine ? undefined : new hcloud.Volume("data", {
            name: `${s.hostname.replace(/\./g, "-")}-data-${s.location}`, size: s.volumeSizeGb, location: s.location,
            format: "ext4", automount: false, deleteProtection: s.protectData, labels,
        }, kept);

        const firewall = new hcloud.Firewall(n("firewall"), {
            name: hostname, labels,
            rules: this.ssh.apply(ssh => [
                ...machine.ports(ssh.open).map(inboundRule),
                { direction: "in", protocol: "icmp", sourceIps: ANYWHERE, description: "ping, path MTU discovery" },
            ]),
        }, child);

        this.userData = pulumi.secret(pulumi.all([deployPublicKey, hostKey.privateKeyOpenssh, this.hostPublicKey, this.volume?.id, this.ssh])
            .apply(([deployPublic, hostPrivate, hostPublic, volumeId, ssh]) =>
                renderUserData({ deployKey: deployPublic, hostKey: { private: hostPrivate, public: hostPublic }, sshPort: ssh.boot, volumeId })));

        const reach = { host: this.ipv4, port: s.sshPort, user: DEPLOY_USER, privateKey: this.deployKey.privateKey, hostKey: this.hostPublicKey };
        // Hetzner changes a server's type in place by a hard power-off. This command has no create (the
        // provider then does nothing, not even connect): it acts only when it goes — when the type changes
        // (its trigger) — and the server's update waits for it: mail stopped and disks flushed first.
        // The server boots with the new type and its services start as at any boot.
        const beforeTypeChange = new command.remote.Command(n("before-server-type-change"), {
            connection: sshConnection(reach),
            delete: asRoot(`set -euo pipefail\n${args.beforePowerOff}\nsync`, "selfhost-before-power-off"),
            triggers: [serverType],
            addPreviousOutputInEnv: false,
        }, { ...child, deleteBeforeReplace: true });

        this.server = new hcloud.Server(n("server"), {
            name: hostname, serverType, image: s.image, location,
            sshKeys: [this.deployKey.hetznerId], userData: this.userData,
            labels: this.ssh.apply(ssh => ({ ...labels, [BOOT_PORT_LABEL]: String(ssh.boot) })),
            firewallIds: [firewall.id.apply(Number)],
            publicNets: [{ ipv4Enabled: true, ipv4: ip4.id.apply(Number), ipv6Enabled: true, ipv6: ip6.id.apply(Number) }],
            deleteProtection: protectServer, rebuildProtection: protectServer,
            shutdownBeforeDeletion: true,
            // A new type keeps the 20+ GB root disk as it is (only the OS lives there; data is on the
            // volume), so the server can go back to a smaller type later.
            keepDisk: true,
        }, {
            ...child,
            // A primary IP and a volume belong to one server at a time: the old one must go first.
            deleteBeforeReplace: true,
            dependsOn: [beforeTypeChange],
            // Hetzner's own protection refuses only after the handover ran and the volume was detached;
            // Pulumi's refuses before anything is touched.
            protect: protectServer,
        });

        this.volumeAttachment = this.volume && new hcloud.VolumeAttachment("data", {
            serverId: this.server.id.apply(Number), volumeId: this.volume.id.apply(Number), automount: false,
        }, { ...child, deleteBeforeReplace: true });

        // Forward-confirmed reverse DNS: the PTRs name the hostname, whose A/AAAA are these IPs.
        new hcloud.Rdns(n("ptr-ipv4"), { primaryIpId: ip4.id.apply(Number), ipAddress: this.ipv4, dnsPtr: hostname }, child);
        new hcloud.Rdns(n("ptr-ipv6"), { primaryIpId: ip6.id.apply(Number), ipAddress: this.ipv6, dnsPtr: hostname }, child);

        this.connection = { ...reach, serverId: this.server.id };
        this.provenConnection = { ...this.connection, port: this.ssh.apply(ssh => ssh.current) };

        this.registerOutputs({ ipv4: this.ipv4, ipv6: this.ipv6, serverId: this.server.id, volumeId: this.volume?.id });
    }

    private newDeployKey(labels: Record<string, string>): DeployKey {
        const key = new tls.PrivateKey("deploy-key", { algorithm: "ED25519" }, { parent: this });
        const publicKey = key.publicKeyOpenssh.apply(k => k.trim());
        // Hetzner puts this key in root's authorized_keys (root login is then disabled); without any key,
        // it would mail a root password. The stack's own key: Hetzner refuses a second key with a fingerprint
        // or name already in the project, so the user's keys (often uploaded in the console) are not sent
        // there; the base step installs them. The name carries the key's hash: unique, and stable.
        const hetznerKey = new hcloud.SshKey("deploy", {
            name: publicKey.apply(k => `selfhost deploy ${crypto.createHash("sha256").update(k).digest("hex").slice(0, 16)}`),
            publicKey, labels,
        }, { parent: this });
        return { privateKey: pulumi.secret(key.privateKeyOpenssh), publicKey, hetznerId: hetznerKey.id };
    }

    /**
     * The record the next `up` reads: SSH works on sshPort, written only after `after` (the last step),
     * so only once a whole `up` went through on it. A Hetzner firewall applied to nothing: its one rule
     * is the record, kept where the program reads the project anyway.
     */
    sshProven(after: pulumi.Resource[]): hcloud.Firewall {
        const s = this.settings;
        return new hcloud.Firewall(this.childName("ssh"), {
            name: `${this.hostname} ssh`, labels: { ...this.labels, ...this.sshRole },
            rules: publicPorts(s.sshPort, s.adminSources).filter(p => p.name === "ssh").map(inboundRule),
        }, { parent: this, dependsOn: after });
    }
}
