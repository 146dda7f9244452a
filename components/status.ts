/**
 * The server's own health report (`selfhost-status`): services, disk, memory, pending updates and
 * reboot, the certificate, the last backup, outbound port 25, the blocklists answering, DNSSEC and
 * port 25's TLSA record. `npm run check` reads it over SSH; a
 * daily timer mails the admin when a finding's status changed.
 */
import * as pulumi from "@pulumi/pulumi";
import { DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { renderTemplate, confined } from "../services/template";
import { Settings } from "../config";

export const STATUS_COMMAND = "/usr/local/sbin/selfhost-status";

export interface StatusArgs extends ServiceArgs {
    /** The systemd units the stack runs: each must be active. */
    readonly units: readonly string[];
    /** The secondary MX's report: its name, and the mail it holds for the server. */
    readonly secondary?: { readonly hostname: string };
}

/** What to do when the zone is not signed, or signed without its DS at the registry, per DNS host (one line each, no tab). */
export function dnssecFixes(s: Settings): { signFix: string; dsFix: string } {
    const ds = `at your registrar, add the DS record of ${s.domain}`;
    switch (s.dnsProvider) {
        case "gandi": return {
            signFix: "pulumi up has Gandi LiveDNS sign the zone; if it was turned off at Gandi since: pulumi refresh, then pulumi up",
            dsFix: `${ds}: pulumi stack output dnssecDs (with Gandi as registrar: its domain page, DNSSEC)`,
        };
        case "hetzner": return {
            signFix: "Hetzner DNS does not sign zones: for DANE, host the zone where it is signed (dnsProvider gandi, or your own signer with dnsProvider none)",
            dsFix: `${ds}, as your DNS host shows it`,
        };
        case "none": return {
            signFix: "sign the zone at your DNS host (most sign on request) or with your own signer, then add its DS at your registrar",
            dsFix: `${ds}, as your DNS host shows it`,
        };
    }
}

export class Status extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: StatusArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Status", name, {}, opts);
        const s = args.settings;
        const hostname = args.secondary?.hostname ?? s.hostname;
        this.step = new RemoteStep(name, {
            connection: args.connection,
            files: [
                { path: STATUS_COMMAND, mode: "0755", content: renderTemplate("status/selfhost-status", {
                    units: [...new Set(args.units)].join(" "), dataDir: DATA_DIR, smtpProbe: args.settings.checkSmtpHost,
                    domain: s.domain, hostname, dnsbls: s.dnsbls.join(" "), ...dnssecFixes(s),
                    primary: s.hostname, relayQueue: args.secondary ? " relay_queue;" : "",
                }) },
                ...["selfhost-status.service", "selfhost-status.timer"].map(unit =>
                    ({ path: `/etc/systemd/system/${unit}`, content: renderTemplate(`status/${unit}`, { confined: confined("CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE") }) })),
            ],
            check: `check bash -n ${STATUS_COMMAND}`,
            run: [
                "changed_in /etc/systemd/system && systemctl daemon-reload",
                "systemctl enable --quiet --now selfhost-status.timer",
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
