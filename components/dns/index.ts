import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../../config";
import { dnsRecords, recordShapes, recordsWith, tlsaName, DnsRecord, ServerFacts } from "./records";
import { publishAtGandi, publishAtHetzner, PublishedRecord } from "./backends";
import { zoneFile } from "./zonefile";

export * from "./records";
export { zoneFile } from "./zonefile";

export interface DnsArgs {
    readonly settings: Settings;
    /** The server's addresses and DKIM key; the records are derived from them and the settings. */
    readonly facts: Inputs<Omit<ServerFacts, "secondary">> & { readonly secondary?: Inputs<NonNullable<ServerFacts["secondary"]>> };
}

/** Each field an Input of its own: the addresses are known long before the TLSA data, which waits for the records. */
type Inputs<T> = { readonly [K in keyof T]: pulumi.Input<T[K]> };

/** The domain's records, published at the configured provider (or only rendered, for `none`). */
export class Dns extends pulumi.ComponentResource {
    /** Every record, resolved: what `pulumi stack output records` shows and the checks compare against. */
    readonly records: pulumi.Output<DnsRecord[]>;
    /** The same records as a BIND zone file. */
    readonly zoneFile: pulumi.Output<string>;
    /** Nameservers to delegate to at the registrar (Hetzner DNS only; empty otherwise). */
    readonly nameservers: pulumi.Output<string[]>;
    /** The signed zone's DS record, for the registry (Gandi LiveDNS signs; the others do not here). */
    readonly ds: pulumi.Output<string | undefined>;
    /**
     * The record sets that wait for nothing on the server (all but the TLSA, which the tls step's output
     * makes): what the tls step waits for, since the CA checks the names and the CAA.
     */
    readonly beforeServer: pulumi.Resource[];

    constructor(name: string, args: DnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Dns", name, {}, opts);
        const s = args.settings;
        const { secondary, ...primary } = args.facts;
        this.records = pulumi.all([pulumi.output(primary), pulumi.output(secondary)]).apply(([f, mx2]) => dnsRecords(s, { ...f, ...mx2 ? { secondary: mx2 } : {} }));
        this.zoneFile = this.records.apply(r => zoneFile(s.domain, r));

        // Which records exist depends only on the settings, so resources can be declared up front
        // (and shown by `pulumi preview`) while their values wait for the IPs and the key, and only
        // the TLSA for the server's TLS step (which itself waits for the other sets).
        const shapes = recordShapes(s);
        const { tlsa, ...known } = primary;
        const early = pulumi.all([pulumi.output(known), secondary && pulumi.output({ ipv4: secondary.ipv4, ipv6: secondary.ipv6 })])
            .apply(([f, mx2]) => recordsWith(s, { ...f, ...mx2 ? { secondary: mx2 } : {} }));
        const tlsaOf = (name: string) => name === tlsaName(s, s.hostname) ? tlsa : secondary!.tlsa;
        const published: PublishedRecord[] = shapes.map((shape, i) => ({
            ...shape,
            values: shape.values.map((_, j) => shape.type === "TLSA" ? pulumi.output(tlsaOf(shape.name)).apply(t => t[j]) : early.apply(r => r[i].values[j])),
        }));
        const atProvider = s.dnsProvider === "gandi" ? publishAtGandi(s.domain, s.gandiApiUrl, published, this)
            : s.dnsProvider === "hetzner" ? publishAtHetzner(s.domain, s.dnsTtl, published, this)
            : { sets: [], nameservers: pulumi.output([]), ds: pulumi.output(undefined) };
        this.nameservers = atProvider.nameservers;
        this.ds = atProvider.ds;
        this.beforeServer = atProvider.sets.filter((_, i) => published[i].type !== "TLSA");
        this.registerOutputs({ records: this.records, zoneFile: this.zoneFile, nameservers: this.nameservers, ds: this.ds });
    }
}
