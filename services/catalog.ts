/**
 * The server's public contract, in one place: which ports it answers on and which names it serves.
 * The Hetzner firewall, nftables, fail2ban, the DNS model (SRV, A/AAAA) and the checks all derive from it.
 */

export type Protocol = "tcp" | "udp";

export interface ServicePort {
    readonly port: number;
    /** The last port of a range that starts at `port` (TURN's relay ports). */
    readonly lastPort?: number;
    readonly protocol: Protocol;
    /** Short name, also used for SRV records and firewall descriptions. */
    readonly name: string;
    readonly description: string;
    /** CIDR networks that may connect; absent means anywhere. */
    readonly sources?: readonly string[];
}

/** Every service port, SSH excluded (its port is configuration; see `publicPorts`). */
export const SERVICE_PORTS: readonly ServicePort[] = [
    { port: 25, protocol: "tcp", name: "smtp", description: "SMTP from other mail servers" },
    { port: 465, protocol: "tcp", name: "submissions", description: "mail submission, implicit TLS" },
    { port: 587, protocol: "tcp", name: "submission", description: "mail submission, STARTTLS" },
    { port: 993, protocol: "tcp", name: "imaps", description: "IMAP over TLS" },
    { port: 4190, protocol: "tcp", name: "sieve", description: "ManageSieve" },
    { port: 80, protocol: "tcp", name: "http", description: "HTTP: ACME challenges and redirects" },
    { port: 443, protocol: "tcp", name: "https", description: "HTTPS: web, MTA-STS, autoconfig, uploads" },
    { port: 5222, protocol: "tcp", name: "xmpp-client", description: "XMPP clients, STARTTLS" },
    { port: 5223, protocol: "tcp", name: "xmpps-client", description: "XMPP clients, direct TLS" },
    { port: 5269, protocol: "tcp", name: "xmpp-server", description: "XMPP federation" },
    { port: 5000, protocol: "tcp", name: "xmpp-proxy", description: "XMPP file transfer proxy (SOCKS5, XEP-0065)" },
    { port: 3478, protocol: "udp", name: "turn", description: "STUN/TURN for XMPP calls" },
    { port: 5349, protocol: "tcp", name: "turns", description: "TURN over TLS for XMPP calls" },
    // Each relayed call leg takes one port: 200 is far beyond one household's calls at a time.
    { port: 50000, lastPort: 50199, protocol: "udp", name: "turn-relay", description: "TURN relay ports (call media)" },
];

/** A port or range as firewalls write it: "5000" or "50000-50199". */
export const portSpec = (p: ServicePort) => p.lastPort ? `${p.port}-${p.lastPort}` : String(p.port);

/** The catalog's port that covers this number, in any protocol: configuration may not take it. */
export const portTaken = (port: number) => SERVICE_PORTS.find(p => port >= p.port && port <= (p.lastPort ?? p.port));

/**
 * All ports open to the world: the service ports plus SSH (only from `adminSources` when given; two
 * ports while sshPort moves). ICMP is allowed besides.
 */
export function publicPorts(sshPorts: number | readonly number[], adminSources: readonly string[] = []): ServicePort[] {
    return [...[sshPorts].flat().map((port): ServicePort => ({
        port, protocol: "tcp", name: "ssh", description: "SSH (admin, git push)",
        ...(adminSources.length ? { sources: adminSources } : {}),
    })), ...SERVICE_PORTS];
}

/** A named service's entry. */
export function servicePort(name: string): ServicePort {
    const found = SERVICE_PORTS.find(p => p.name === name);
    if (!found) throw new Error(`no service port named ${name}`);
    return found;
}

/** The port of a named service, so no other module writes a port number again. */
export const portOf = (name: string) => servicePort(name).port;

/** Loopback-only ports of our own services (never in the firewall); apps may not take them. */
export const LOCAL_PORTS = {
    /** Prosody's HTTP (file sharing), behind nginx as https://upload.<domain>/. */
    xmppHttp: 5280,
    /** The web statistics report, reached through an SSH tunnel. */
    webStats: 8089,
    /** Postfix's MTA-STS policy lookups (selfhost-mta-sts.socket, which starts postfix-mta-sts-resolver). */
    mtaSts: 8461,
    /** rspamd's milter (Postfix hands it every message: it filters and signs). */
    rspamdMilter: 11332,
    /** rspamd's controller (learning, statistics). */
    rspamdController: 11334,
    /** redis, rspamd's store (Bayes, greylisting). */
    redis: 6379,
    /** unbound, the server's own resolver. */
    dns: 53,
} as const;

/** What the services connect out to (restrictOutbound): name service, time, packages and ACME, mail and XMPP peers. */
export function outboundPorts(acmeServer: string, extra: readonly number[] = [], backupPort?: number): ServicePort[] {
    const acmePort = Number(new URL(acmeServer).port || 443);
    return [
        { port: 53, protocol: "udp", name: "domain", description: "DNS lookups (DNSBLs, SPF, DKIM, MX)" },
        { port: 53, protocol: "tcp", name: "domain", description: "DNS lookups, large answers" },
        { port: 123, protocol: "udp", name: "ntp", description: "time sync" },
        { port: 80, protocol: "tcp", name: "http", description: "Debian packages" },
        { port: 443, protocol: "tcp", name: "https", description: "packages, ACME, rspamd maps, MTA-STS policies" },
        { port: 11335, protocol: "udp", name: "rspamd-fuzzy", description: "rspamd's shared fuzzy hashes" },
        { ...servicePort("smtp"), description: "mail to other servers" },
        { ...servicePort("xmpp-server"), description: "XMPP federation" },
        ...(backupPort ? [{ port: backupPort, protocol: "tcp" as const, name: "backup", description: "the backup repository (SFTP)" }] : []),
        ...[acmePort, ...extra].map(port => ({ port, protocol: "tcp" as const, name: "extra", description: "ACME server or outboundPorts" })),
    ];
}

/** Names under the domain that the server answers for, besides the apex and its own hostname. */
export const SERVICE_SUBDOMAINS = {
    web: ["www"],
    mail: ["mta-sts", "autoconfig", "autodiscover"],
    xmpp: ["conference", "upload", "proxy"],
    // Reserved whether or not webmail is on, so turning it on never takes a name an app has.
    webmail: ["webmail"],
} as const;

export const ALL_SERVICE_SUBDOMAINS: readonly string[] = Object.values(SERVICE_SUBDOMAINS).flat();

