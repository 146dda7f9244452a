/**
 * The server's own health report (`selfhost-status`): services, disk, memory, pending updates and
 * reboot, the certificate, the last backup, outbound port 25. `npm run check` reads it over SSH; a
 * daily timer mails the admin when a finding's status changed.
 */
import * as pulumi from "@pulumi/pulumi";
import { DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { renderTemplate, confined } from "../services/template";

export const STATUS_COMMAND = "/usr/local/sbin/selfhost-status";

export interface StatusArgs extends ServiceArgs {
    /** The systemd units the stack runs: each must be active. */
    readonly units: readonly string[];
}

export class Status extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: StatusArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Status", name, {}, opts);
        this.step = new RemoteStep("status", {
            connection: args.connection,
            files: [
                { path: STATUS_COMMAND, mode: "0755", content: renderTemplate("status/selfhost-status", {
                    units: [...new Set(args.units)].join(" "), dataDir: DATA_DIR, smtpProbe: args.settings.checkSmtpHost,
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
