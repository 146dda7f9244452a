/**
 * The server's public contract, in one place: which ports it answers on and which names it serves.
 * The Hetzner firewall, nftables, fail2ban, the DNS model (SRV, A/AAAA) and the checks all derive from it.
 */

export type Protocol = "tcp" | "udp";

export interface ServicePort {
    readonly port: number;
    readonly protocol: Protocol;
    /** Short name, also used for SRV records and firewall descriptions. */
    readonly name: string;
    readonly description: string;
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
];

/** All ports open to the world: the service ports plus SSH. ICMP is allowed besides. */
export function publicPorts(sshPort: number): ServicePort[] {
    return [{ port: sshPort, protocol: "tcp", name: "ssh", description: "SSH (admin, git push)" }, ...SERVICE_PORTS];
}

/** The port of a named service, so no other module writes a port number again. */
export function portOf(name: string): number {
    const found = SERVICE_PORTS.find(p => p.name === name);
    if (!found) throw new Error(`no service port named ${name}`);
    return found.port;
}

/** Names under the domain that the server answers for, besides the apex and its own hostname. */
export const SERVICE_SUBDOMAINS = {
    web: ["www"],
    mail: ["mta-sts", "autoconfig", "autodiscover"],
    xmpp: ["conference", "upload"],
} as const;

export const ALL_SERVICE_SUBDOMAINS: readonly string[] = Object.values(SERVICE_SUBDOMAINS).flat();

