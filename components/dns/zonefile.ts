import { DnsRecord } from "./records";

/** The records as a BIND zone file body (no SOA/NS: those belong to whoever serves the zone). */
export function zoneFile(domain: string, records: readonly DnsRecord[]): string {
    const width = Math.max(...records.map(r => r.name.length));
    const lines = records.flatMap(r => r.values.map(v => `${r.name.padEnd(width)} ${r.ttl} IN ${r.type.padEnd(4)} ${v}`));
    return [`$ORIGIN ${domain}.`, ...lines, ""].join("\n");
}
