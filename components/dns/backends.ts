/**
 * The providers that publish the record model. Each takes the same list and creates one resource per
 * (name, type) pair, so both publish exactly the same set (see test/dns.test.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import * as hcloud from "@pulumi/hcloud";
import { DnsRecord } from "./records";
import { LiveDnsRrset, LiveDnsSigning } from "./livedns";

export type PublishedRecord = DnsRecord<pulumi.Output<string>>;

/** A stable resource name for a record: the record's own identity. */
export const resourceName = (r: { name: string; type: string }) => `${r.type}-${r.name}`;

/** What a backend made: the record sets (in the order given), the nameservers to delegate to, the DS for the registry. */
export interface Published {
    readonly sets: pulumi.Resource[];
    readonly nameservers: pulumi.Output<string[]>;
    readonly ds: pulumi.Output<string | undefined>;
}

/**
 * Gandi LiveDNS: the domain must already use LiveDNS. A set of the same name and type already there
 * (Gandi's default zone has some) becomes the stack's. The zone is signed (DNSSEC); its DS is for the registry.
 */
export function publishAtGandi(domain: string, apiUrl: string, records: PublishedRecord[], parent: pulumi.Resource): Published {
    const signing = new LiveDnsSigning("dnssec", { apiUrl, zone: domain }, { parent });
    const sets = records.map(r =>
        new LiveDnsRrset(resourceName(r), {
            apiUrl, zone: domain, name: r.name, type: r.type, ttl: r.ttl, values: [...r.values],
        }, {
            parent,
            // The same record under the earlier provider (@pulumiverse/gandi): Pulumi replaces it, and since
            // both write one set, the old one must be deleted before the new one is written, not after.
            aliases: [{ type: "gandi:livedns/record:Record" }],
            deleteBeforeReplace: true,
        }));
    return { sets, nameservers: pulumi.output([]), ds: signing.ds };
}

/**
 * Hetzner DNS (Cloud API zones): the stack creates the zone and returns its nameservers, which the
 * registrar must delegate to. Hetzner does not sign zones (it serves DS records for child zones, no
 * DNSKEY), so a TLSA record there is published without DNSSEC and protects nothing until it does.
 */
export function publishAtHetzner(domain: string, ttl: number, records: PublishedRecord[], parent: pulumi.Resource): Published {
    const zone = new hcloud.Zone("zone", { name: domain, mode: "primary", ttl }, { parent });
    const sets = records.map(r => new hcloud.ZoneRrset(resourceName(r), {
        zone: zone.name, name: r.name, type: r.type, ttl: r.ttl,
        records: r.values.map(value => ({ value })),
    }, { parent }));
    return { sets, nameservers: zone.authoritativeNameservers.apply(a => a?.assigneds ?? []), ds: pulumi.output(undefined) };
}
