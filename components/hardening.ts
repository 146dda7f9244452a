/**
 * Hardening: SSH with modern algorithms only, a default-deny nftables firewall derived from the same
 * port list as the Hetzner firewall, fail2ban on the journal, daily security updates, and kernel
 * network settings. Runs right after base, before any service listens.
 */
import * as net from "net";
import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../config";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { publicPorts, outboundPorts, portOf, portSpec, ServicePort, servicePort } from "../services/catalog";
import { renderTemplate } from "../services/template";
import { LOOPBACK_CLIENTS } from "./mail";
import * as webmail from "./webmail";

// kmod: modprobe, which reads the protocols kept unloaded (a minimal image may lack it; Hetzner's has it).
// debsums: `debsums -s` lists every packaged file changed on disk (after an incident, what to distrust).
// apt-listchanges: mails the news of what unattended-upgrades installs (listchanges.conf).
export const packages = ["nftables", "fail2ban", "python3-systemd", "unattended-upgrades", "needrestart", "kmod", "debsums", "apt-listchanges"];
/** Enabled here; unattended-upgrades' unit is its shutdown guard: a shutdown waits for a running upgrade. */
const ENABLED = ["nftables", "fail2ban", "unattended-upgrades"];
export const units = ["ssh", ...ENABLED];
export const NFT_RULESET = "/etc/nftables.conf";
/** fail2ban's place for local jails (jail.conf is the package's); the e2e reads the jail names from it. */
export const JAIL_CONF = "/etc/fail2ban/jail.local";

const INDENT = "        ";
const portSet = (ports: readonly (number | string)[]) => ports.length === 1 ? String(ports[0]) : `{ ${[...new Set(ports)].join(", ")} }`;

/** nft rules accepting each protocol's ports; ports with an address allowlist get one rule per family. */
function acceptRules(ports: readonly ServicePort[]): string[] {
    const rules: string[] = [];
    for (const protocol of ["tcp", "udp"] as const) {
        const open = ports.filter(p => p.protocol === protocol && !p.sources).map(portSpec);
        if (open.length) rules.push(`${protocol} dport ${portSet(open)} accept`);
        for (const p of ports.filter(q => q.protocol === protocol && q.sources)) {
            for (const [family, version] of [["ip", 4], ["ip6", 6]] as const) {
                const sources = p.sources!.filter(s => net.isIP(s.split("/")[0]) === version);
                if (sources.length) rules.push(`${family} saddr { ${sources.join(", ")} } ${protocol} dport ${portSpec(p)} accept`);
            }
        }
    }
    return rules;
}

/** The ports a machine opens, given the SSH ports of this `up`: the server's are `publicPorts`. */
export type PortsOf = (sshPorts: readonly number[]) => ServicePort[];

/** The host firewall as nft source: inbound exactly the machine's ports, outbound what the services need. */
export function nftRuleset(s: Settings, sshPorts: readonly number[] = [s.sshPort], portsOf: PortsOf = ssh => publicPorts(ssh, s.adminSources)): string {
    const ssh = portSet([...sshPorts]);
    const inbound = [
        `tcp dport ${ssh} ct state new add @ssh_meter4 { ip saddr limit rate over 10/minute burst 20 packets } drop`,
        `tcp dport ${ssh} ct state new add @ssh_meter6 { ip6 saddr limit rate over 10/minute burst 20 packets } drop`,
        ...acceptRules(portsOf(sshPorts)),
    ];
    const outbound = s.restrictOutbound ? [
        ...acceptRules(outboundPorts(s.acmeServer, s.outboundPorts, s.backup.kind === "off" ? undefined : s.backup.port)),
        // TURN relays a call's media from its relay ports to whatever port the other side uses.
        `udp sport ${portSpec(servicePort("turn-relay"))} accept`,
    ] : [];
    return renderTemplate("hardening/nftables.conf", {
        inbound: inbound.map(r => INDENT + r).join("\n"),
        outbound: outbound.map(r => INDENT + r).join("\n"),
        outputPolicy: s.restrictOutbound ? "drop" : "accept",
        // root (uid 0) may reach every loopback service; each of these answers only its own clients besides.
        loopback: LOOPBACK_CLIENTS.map(c => `${INDENT}oif lo tcp dport ${c.port} meta skuid != { ${[0, ...c.users].join(", ")} } reject with tcp reset`).join("\n"),
        sshPorts: ssh,
    });
}

/** The jails a jail.local defines (its sections but DEFAULT). */
export const jailNames = (conf: string) => [...conf.matchAll(/^\[([\w-]+)\]$/gm)].map(m => m[1]).filter(n => n !== "DEFAULT");

export function jails(s: Settings, sshPorts: readonly number[] = [s.sshPort]): string {
    const ports = (...names: string[]) => names.map(portOf).join(",");
    return renderTemplate("hardening/jail.local", {
        banTime: s.banTime, recidiveBanTime: s.recidiveBanTime, sshPorts: sshPorts.join(","),
        ignore: s.adminSources.join(" "),
        smtpPorts: ports("smtp", "submissions", "submission"),
        authPorts: ports("submissions", "submission", "imaps", "sieve"),
        xmppPorts: ports("xmpp-client", "xmpps-client"),
    }) + (s.webmail ? webmail.jail(ports("http", "https")) : "");
}

export class Hardening extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    /** `sshPorts`: the ports SSH is open on (two while sshPort moves); `ports`: another machine's (the secondary MX's). */
    constructor(name: string, args: ServiceArgs & { sshPorts: pulumi.Input<readonly number[]>; ports?: PortsOf }, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Hardening", name, {}, opts);
        const s = args.settings;
        // Which jails there are does not depend on the ports: the step's check loop can name them now.
        const jailConf = pulumi.output(args.sshPorts).apply(ports => jails(s, ports));
        this.step = new RemoteStep(name, {
            connection: args.connection,
            files: [
                { path: "/etc/ssh/sshd_config.d/10-selfhost-hardening.conf", content: renderTemplate("hardening/sshd.conf", { adminUser: s.adminUser }) },
                { path: NFT_RULESET, mode: "0755", content: pulumi.output(args.sshPorts).apply(ports => nftRuleset(s, ports, args.ports)) },
                { path: JAIL_CONF, content: jailConf },
                ...["dovecot-auth", "postfix-sasl", "prosody-auth"].map(f =>
                    ({ path: `/etc/fail2ban/filter.d/selfhost-${f}.conf`, content: renderTemplate(`hardening/${f}.conf`, {}) })),
                ...(s.webmail ? [{ path: `/etc/fail2ban/filter.d/${webmail.FAIL2BAN_FILTER.name}.conf`, content: webmail.FAIL2BAN_FILTER.content }] : []),
                { path: "/etc/sysctl.d/90-selfhost.conf", content: renderTemplate("hardening/sysctl.conf", {}) },
                { path: "/etc/modprobe.d/selfhost.conf", content: renderTemplate("hardening/modprobe.conf", {}) },
                // In place of Debian's file of that name, which lets any session raise its core limit.
                { path: "/etc/security/limits.d/10-coredump-debian.conf", content: renderTemplate("hardening/core-limits.conf", {}) },
                { path: "/etc/systemd/coredump.conf.d/selfhost.conf", content: renderTemplate("hardening/coredump.conf", {}) },
                ...["/etc/issue", "/etc/issue.net"].map(path => ({ path, content: renderTemplate("hardening/issue", {}) })),
                { path: "/etc/apt/listchanges.conf.d/selfhost.conf", content: renderTemplate("hardening/listchanges.conf", {}) },
                { path: "/etc/apt/apt.conf.d/20auto-upgrades", content: renderTemplate("hardening/auto-upgrades.conf", {}) },
                { path: "/etc/apt/apt.conf.d/52selfhost-unattended-upgrades", content: renderTemplate("hardening/unattended-upgrades.conf", {
                    reboot: s.rebootTime ? "true" : "false", rebootTime: s.rebootTime || "now",
                }) },
                { path: "/etc/needrestart/conf.d/selfhost.conf", content: renderTemplate("hardening/needrestart.conf", {}) },
            ],
            check: [
                "check sshd -t",
                `check nft -c -f ${NFT_RULESET}`,
                "check fail2ban-client --test",
                "check sh -c 'apt-config dump >/dev/null'",
                "check perl -c /etc/needrestart/conf.d/selfhost.conf",
            ].join("\n"),
            run: [
                `systemctl enable --quiet ${ENABLED.join(" ")}`,
                // -e: a kernel without a key (Yama, in a container) is not an error; "-" keys: see the file.
                "changed_in /etc/sysctl.d && sysctl -q -e -p /etc/sysctl.d/90-selfhost.conf",
                // What people make in their sessions is not for other users to read (pam_umask reads this;
                // in a user's own group, as Debian gives each, the group bits follow the owner's: 007).
                "grep -qE '^UMASK[[:space:]]+027$' /etc/login.defs || { sed -i '/^UMASK[[:space:]]/d' /etc/login.defs; echo 'UMASK 027' >> /etc/login.defs; }",
                // One transaction: the running ruleset is swapped whole; open connections (this one) stay.
                `changed_in ${NFT_RULESET} && nft -f ${NFT_RULESET}`,
                // The unit loads the same file at boot; started once, it also says the firewall is up.
                "systemctl is-active --quiet nftables || systemctl start nftables",
                "changed_in /etc/ssh && systemctl reload ssh",
                // fail2ban's table must exist after ours was (re)loaded; a restart re-creates its bans from its database.
                "changed_in /etc/fail2ban && systemctl restart fail2ban",
                "systemctl is-active --quiet fail2ban || systemctl start fail2ban",
                // A restart returns before the jails are loaded; the step is done only once each one watches.
                `jails_up() { for j in ${jailNames(jails(s)).join(" ")}; do fail2ban-client status "$j" >/dev/null 2>&1 || return 1; done; }`,
                "for _ in $(seq 60); do jails_up && break; sleep 1; done",
                `jails_up || { log "fail2ban did not start every jail"; fail2ban-client status >&2 || true; exit 1; }`,
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
