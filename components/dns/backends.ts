/**
 * The providers that publish the record model. Each takes the same list and creates one resource per
 * (name, type) pair, so both publish exactly the same set (see test/dns.test.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import * as hcloud from "@pulumi/hcloud";
import * as gandi from "@pulumiverse/gandi";
import { DnsRecord } from "./records";

export type PublishedRecord = DnsRecord<pulumi.Output<string>>;

/** A stable resource name for a record: the record's own identity. */
export const resourceName = (r: { name: string; type: string }) => `${r.type}-${r.name}`;

/** Gandi LiveDNS: the domain must already use LiveDNS; the provider reads `gandi:key`. */
export function publishAtGandi(domain: string, records: PublishedRecord[], parent: pulumi.Resource): void {
    for (const r of records) {
        new gandi.livedns.Record(resourceName(r), {
            zone: domain, name: r.name, type: r.type, ttl: r.ttl, values: [...r.values],
        }, { parent });
    }
}

/**
 * Hetzner DNS (Cloud API zones): the stack creates the zone and returns its nameservers, which the
 * registrar must delegate to.
 */
export function publishAtHetzner(domain: string, ttl: number, records: PublishedRecord[], parent: pulumi.Resource): pulumi.Output<string[]> {
    const zone = new hcloud.Zone("zone", { name: domain, mode: "primary", ttl }, { parent });
    for (const r of records) {
        new hcloud.ZoneRrset(resourceName(r), {
            zone: zone.name, name: r.name, type: r.type, ttl: r.ttl,
            records: r.values.map(value => ({ value })),
        }, { parent });
    }
    return zone.authoritativeNameservers.apply(a => a?.assigneds ?? []);
}
