import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../../config";
import { dnsRecords, DnsRecord, ServerFacts } from "./records";
import { publishAtGandi, publishAtHetzner, PublishedRecord } from "./backends";
import { zoneFile } from "./zonefile";

export * from "./records";
export { zoneFile } from "./zonefile";

export interface DnsArgs {
    readonly settings: Settings;
    /** The server's addresses and DKIM key; the records are derived from them and the settings. */
    readonly facts: { [K in keyof ServerFacts]: pulumi.Input<ServerFacts[K]> };
}

/** The domain's records, published at the configured provider (or only rendered, for `none`). */
export class Dns extends pulumi.ComponentResource {
    /** Every record, resolved: what `pulumi stack output records` shows and the checks compare against. */
    readonly records: pulumi.Output<DnsRecord[]>;
    /** The same records as a BIND zone file. */
    readonly zoneFile: pulumi.Output<string>;
    /** Nameservers to delegate to at the registrar (Hetzner DNS only; empty otherwise). */
    readonly nameservers: pulumi.Output<string[]>;

    constructor(name: string, args: DnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Dns", name, {}, opts);
        const s = args.settings;
        this.records = pulumi.output(args.facts).apply(f => dnsRecords(s, f));
        this.zoneFile = this.records.apply(r => zoneFile(s.domain, r));

        // Which records exist depends only on the settings, so resources can be declared up front
        // (and shown by `pulumi preview`) while their values wait for the IPs and the key.
        const shapes = dnsRecords(s, { ipv4: "", ipv6: "", dkimPublicKeyPem: "" });
        const published: PublishedRecord[] = shapes.map((shape, i) => ({
            ...shape,
            values: shape.values.map((_, j) => this.records.apply(r => r[i].values[j])),
        }));
        if (s.dnsProvider === "gandi") publishAtGandi(s.domain, s.gandiApiUrl, published, this);
        this.nameservers = s.dnsProvider === "hetzner"
            ? publishAtHetzner(s.domain, s.dnsTtl, published, this)
            : pulumi.output([]);
        this.registerOutputs({ records: this.records, zoneFile: this.zoneFile, nameservers: this.nameservers });
    }
}
