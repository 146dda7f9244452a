/**
 * What the stack costs a month, from Hetzner's own price lists (the Cloud API's /pricing, the Storage Box
 * types of Hetzner's API): the resources this configuration creates, at its locations. Prices change
 * (they did on 1 April 2026), so none is written down here; preflight asks with the project's token.
 */
import { Settings } from "../config";
import { storageBoxLocation } from "../components/backup";
import { Finding, finding } from "./findings";

interface Price { readonly net: string; readonly gross: string }
interface Located { readonly location: string; readonly price_monthly: Price }
/** The parts of GET /v1/pricing (Cloud API) that price what the stack creates. */
export interface CloudPricing {
    readonly pricing: {
        readonly currency: string;
        readonly vat_rate: string;
        readonly primary_ips: readonly { readonly type: string; readonly prices: readonly Located[] }[];
        readonly server_types: readonly { readonly name: string; readonly prices: readonly Located[] }[];
        readonly volume: { readonly price_per_gb_month: Price };
    };
}
/** GET /v1/storage_box_types (Hetzner API). */
export interface StorageBoxTypes { readonly storage_box_types: readonly { readonly name: string; readonly prices: readonly Located[] }[] }

/** Each resource's monthly price (gross), or undefined where the price lists have none for it. */
export function monthlyCosts(s: Settings, cloud: CloudPricing, boxes?: StorageBoxTypes): { item: string; gross?: number }[] {
    const at = (prices: readonly Located[] | undefined, location: string) => {
        const p = prices?.find(x => x.location === location);
        return p ? Number(p.price_monthly.gross) : undefined;
    };
    const p = cloud.pricing;
    const ip = (type: string, location: string) => at(p.primary_ips.find(i => i.type === type)?.prices, location);
    // A machine: its server and its two primary IPs (IPv6 is free where the list has no price).
    const machine = (what: string, type: string, location: string) => [
        { item: `${what} ${type} in ${location}`, gross: at(p.server_types.find(t => t.name === type)?.prices, location) },
        { item: `${what === "server" ? "" : `${what} `}primary IPv4`, gross: ip("ipv4", location) },
        { item: `${what === "server" ? "" : `${what} `}primary IPv6`, gross: ip("ipv6", location) ?? 0 },
    ];
    const mx2 = s.secondaryMx;
    return [
        ...machine("server", s.serverType, s.location),
        ...mx2 ? machine("secondary MX", mx2.serverType, mx2.location) : [],
        { item: `volume ${s.volumeSizeGb} GB`, gross: s.volumeSizeGb * Number(p.volume.price_per_gb_month.gross) },
        ...(s.backup.kind === "storagebox" ? [{
            item: `Storage Box ${s.backupStorageBoxType} in ${storageBoxLocation(s.location)}`,
            gross: at(boxes?.storage_box_types.find(t => t.name === s.backupStorageBoxType)?.prices, storageBoxLocation(s.location)),
        }] : []),
    ];
}

/** The month's cost as a finding: the total and each part, or what the price lists lack. */
export function costFinding(s: Settings, cloud: CloudPricing, boxes?: StorageBoxTypes): Finding {
    const costs = monthlyCosts(s, cloud, boxes);
    const money = (n: number) => `${n.toFixed(2)} ${cloud.pricing.currency}`;
    const parts = costs.map(c => `${c.item} ${c.gross === undefined ? "?" : money(c.gross)}`).join(", ");
    const missing = costs.filter(c => c.gross === undefined).map(c => c.item);
    const total = costs.reduce((sum, c) => sum + (c.gross ?? 0), 0);
    const vat = `incl. ${Number(cloud.pricing.vat_rate)}% VAT`;
    return missing.length
        ? finding("costs", "a month at Hetzner", "warn", `${money(total)} ${vat} without ${missing.join(", ")}: ${parts}`,
            "Hetzner's price lists have no price for that type or location: check the name, or see hetzner.com")
        : finding("costs", "a month at Hetzner", "ok", `${money(total)} ${vat}: ${parts}; traffic within the included volume`);
}
