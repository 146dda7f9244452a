/**
 * The secondary MX: a second small server in another location that takes the domain's mail while the
 * server is down and hands it over once it is back. It accepts only what the server would (existing
 * recipients, the same blocklists and filter), holds no mailbox and no key of the server's, never
 * delivers locally, and queues for secondaryMxQueueDays.
 */
import { LOCATIONS, SERVER_TYPE } from "../config";

export interface SecondaryMx {
    /** mx2.<domain>: its PTRs, its certificate, the MX record of priority 20. */
    readonly hostname: string;
    readonly location: typeof LOCATIONS[number];
    readonly serverType: string;
    /** How long mail waits for the server before it goes back to its sender. */
    readonly queueDays: number;
}

/** The MX priorities: the server first; senders try the secondary only when the server does not answer. */
export const MX_PRIORITY = { primary: 10, secondary: 20 } as const;

/** This concern's options (secondaryMx*), checked; undefined when secondaryMxLocation is empty. */
export function secondaryMxOptions(raw: Record<string, unknown>, { domain, hostname, location }: { domain: string; hostname: string; location: string },
    bad: (key: string, message: string) => void): SecondaryMx | undefined {
    // Every key is checked, set or not: a bad value waits for no one to turn the secondary on.
    const serverType = String(raw.secondaryMxServerType);
    if (!SERVER_TYPE.test(serverType)) bad("secondaryMxServerType", `"${serverType}" is not a Hetzner server type, e.g. cx23 or cax11.`);
    const queueDays = raw.secondaryMxQueueDays as number;
    // Senders retry for about five days (Postfix's and Exim's defaults): the secondary keeps mail longer than they would.
    if (!Number.isInteger(queueDays) || queueDays < 7 || queueDays > 30) {
        bad("secondaryMxQueueDays", `must be a whole number from 7 to 30; got ${queueDays}.`);
    }
    const where = String(raw.secondaryMxLocation ?? "");
    if (!where) return undefined;
    if (!(LOCATIONS as readonly string[]).includes(where)) {
        bad("secondaryMxLocation", `must be one of ${LOCATIONS.join(", ")} (or empty for none); got "${where}".`);
    } else if (where === location) {
        bad("secondaryMxLocation", `is the server's own location ${location}: an outage there would take both; ` +
            `choose another, e.g. ${LOCATIONS.find(l => l !== location)}.`);
    }
    if (hostname === `mx2.${domain}`) bad("hostname", `"${hostname}" is the secondary MX's name; use e.g. mail.${domain}.`);
    return { hostname: `mx2.${domain}`, location: where as SecondaryMx["location"], serverType, queueDays };
}
