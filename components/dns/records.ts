/**
 * Every DNS record the server needs, as plain data: a pure function of the settings, the two IPs, the
 * DKIM public key and the TLSA data of the server's TLS key. Backends (Gandi, Hetzner DNS, a zone file) render this list and nothing else.
 * Values are in zone-file presentation form (TXT quoted and split), which is what both APIs take.
 */
import * as crypto from "crypto";
import { Settings } from "../../config";
import { portOf, SERVICE_SUBDOMAINS } from "../../services/catalog";
import { MX_PRIORITY } from "../secondary";

export type RecordType = "A" | "AAAA" | "MX" | "TXT" | "CAA" | "SRV" | "TLSA";

export interface DnsRecord<V = string> {
    /** Relative to the zone; "@" is the apex. */
    readonly name: string;
    readonly type: RecordType;
    readonly ttl: number;
    readonly values: readonly V[];
}

export interface ServerFacts {
    readonly ipv4: string;
    readonly ipv6: string;
    /** The DKIM public key, PEM. */
    readonly dkimPublicKeyPem: string;
    /** Port 25's TLSA data, as the tls step printed it (components/tls.ts). */
    readonly tlsa: readonly string[];
    /** The secondary MX's addresses and its port 25's TLSA data, when there is one. */
    readonly secondary?: { readonly ipv4: string; readonly ipv6: string; readonly tlsa: readonly string[] };
}

/** The name of `fqdn` relative to `domain` ("@" for the apex). */
export function relativeName(fqdn: string, domain: string): string {
    return fqdn === domain ? "@" : fqdn.slice(0, -(domain.length + 1));
}

/** A TXT value in presentation form: quoted strings of at most 255 characters (RFC 1035 §3.3). */
export function txt(value: string): string {
    const chunks = value.match(/.{1,255}/g) ?? [""];
    return chunks.map(c => `"${c.replace(/(["\\])/g, "\\$1")}"`).join(" ");
}

/** The text of a TXT record in presentation form, chunks joined again. */
export function untxt(value: string): string {
    return [...value.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map(m => m[1].replace(/\\(.)/g, "$1")).join("");
}

/** The DKIM record text for a PEM public key: `p=` is the base64 SubjectPublicKeyInfo (RFC 6376 §3.6.1). */
export function dkimTxtValue(publicKeyPem: string): string {
    const der = publicKeyPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
    return `v=DKIM1; k=rsa; p=${der}`;
}

/** The MTA-STS policy file (RFC 8461 §3.2); its hash is the `_mta-sts` id, so the id changes exactly when it does. */
export function mtaStsPolicy(s: Settings): string {
    return [`version: STSv1`, `mode: ${s.mtaStsMode}`, ...mxHosts(s).map(h => `mx: ${h}`), `max_age: 604800`, ""].join("\r\n");
}

/** The hosts that take the domain's mail: the server, then the secondary MX if there is one. */
export const mxHosts = (s: Settings) => [s.hostname, ...s.secondaryMx ? [s.secondaryMx.hostname] : []];

/** The name of port 25's TLSA record for a mail host of the domain. */
export const tlsaName = (s: Settings, host: string) => host === s.domain ? "_25._tcp" : `_25._tcp.${relativeName(host, s.domain)}`;

/** The `_mta-sts` id of a policy text: a short hash, so the id changes exactly when the policy does. */
export const policyId = (policy: string) => crypto.createHash("sha256").update(policy).digest("hex").slice(0, 20);

export const mtaStsId = (s: Settings): string => policyId(mtaStsPolicy(s));

/** Every name the server answers for, as FQDNs: apex, hostname, then the service names. */
export function servedNames(s: Settings): string[] {
    const services = Object.entries(SERVICE_SUBDOMAINS).filter(([service]) => service !== "webmail" || s.webmail).flatMap(([, names]) => names);
    const names = [s.domain, s.hostname, ...services.map(n => `${n}.${s.domain}`),
        ...s.apps.flatMap(a => a.subdomain ? [`${a.subdomain}.${s.domain}`] : [])];
    return [...new Set(names)];
}

/**
 * How many TLSA values port 25 has: with ACME the key in use and the next one (the server keeps both on
 * the volume and moves only to a key the DNS already names, components/tls.ts); a private CA's key is the stack's.
 */
export const tlsaCount = (s: Settings) => s.tlsMode === "acme" ? 2 : 1;

/** The records with the TLSA values left empty (the tls step gives them). */
export function recordsWith(s: Settings, facts: Omit<ServerFacts, "tlsa" | "secondary"> & { secondary?: { ipv4: string; ipv6: string } }): DnsRecord[] {
    const tlsa = Array(tlsaCount(s)).fill("");
    const { secondary, ...primary } = facts;
    return dnsRecords(s, { ...primary, tlsa, ...s.secondaryMx ? { secondary: { ipv4: "", ipv6: "", ...secondary, tlsa } } : {} });
}

/** The records with empty values: which sets exist, known before the server is. */
export const recordShapes = (s: Settings) => recordsWith(s, { ipv4: "", ipv6: "", dkimPublicKeyPem: "" });

/** The full record set. Which records exist depends on the settings alone, never on the facts. */
export function dnsRecords(s: Settings, facts: ServerFacts): DnsRecord[] {
    const host = `${s.hostname}.`;
    const ttl = s.dnsTtl;
    const rr = (name: string, type: RecordType, ...values: string[]): DnsRecord => ({ name, type, ttl, values });
    const srv = (service: string, port: number) => rr(`_${service}._tcp`, "SRV", `0 1 ${port} ${host}`);
    const notOffered = (service: string) => rr(`_${service}._tcp`, "SRV", "0 0 0 .");
    const hostName = relativeName(s.hostname, s.domain);
    const addressed = servedNames(s).map(n => relativeName(n, s.domain));
    const caa = s.caaIssuer ? `0 issue "${s.caaIssuer}"` : `0 issue ";"`;
    const mx2 = s.secondaryMx && facts.secondary;
    if (s.secondaryMx && !mx2) throw new Error("the secondary MX's facts are missing");
    const mx2Name = s.secondaryMx && relativeName(s.secondaryMx.hostname, s.domain);
    return [
        ...addressed.flatMap(name => [rr(name, "A", facts.ipv4), rr(name, "AAAA", facts.ipv6)]),
        rr("@", "MX", `${MX_PRIORITY.primary} ${host}`, ...mx2 ? [`${MX_PRIORITY.secondary} ${s.secondaryMx!.hostname}.`] : []),
        // Only this server may send as the domain (and the secondary MX, which relays and may bounce);
        // each mail host's name gets its own record for HELO checks.
        rr("@", "TXT", txt(`v=spf1 ip4:${facts.ipv4} ip6:${facts.ipv6}${mx2 ? ` ip4:${mx2.ipv4} ip6:${mx2.ipv6}` : ""} -all`)),
        ...(hostName === "@" ? [] : [rr(hostName, "TXT", txt("v=spf1 a -all"))]),
        ...mx2 ? [rr(mx2Name!, "A", mx2.ipv4), rr(mx2Name!, "AAAA", mx2.ipv6), rr(mx2Name!, "TXT", txt("v=spf1 a -all"))] : [],
        rr(`${s.dkimSelector}._domainkey`, "TXT", txt(dkimTxtValue(facts.dkimPublicKeyPem))),
        rr("_dmarc", "TXT", txt(`v=DMARC1; p=${s.dmarcPolicy}; adkim=s; aspf=s; rua=mailto:${s.adminEmail}`)),
        ...(s.mtaStsMode === "none" ? [] : [rr("_mta-sts", "TXT", txt(`v=STSv1; id=${mtaStsId(s)}`))]),
        rr("_smtp._tls", "TXT", txt(`v=TLSRPTv1; rua=mailto:${s.adminEmail}`)),
        // DANE for mail to us (RFC 7672): the key port 25 serves, and the next one; on each mail host.
        rr(tlsaName(s, s.hostname), "TLSA", ...facts.tlsa),
        ...mx2 ? [rr(tlsaName(s, s.secondaryMx!.hostname), "TLSA", ...mx2.tlsa)] : [],
        rr("@", "CAA", caa, `0 issuewild ";"`, `0 iodef "mailto:${s.adminEmail}"`),
        // RFC 6186: offered mail services, and "." for those deliberately not offered.
        srv("submissions", portOf("submissions")),
        srv("submission", portOf("submission")),
        srv("imaps", portOf("imaps")),
        notOffered("imap"),
        notOffered("pop3"),
        notOffered("pop3s"),
        srv("xmpp-client", portOf("xmpp-client")),
        srv("xmpps-client", portOf("xmpps-client")),
        srv("xmpp-server", portOf("xmpp-server")),
        rr("_xmpp-server._tcp.conference", "SRV", `0 1 ${portOf("xmpp-server")} ${host}`),
    ];
}
