import * as pulumi from "@pulumi/pulumi";
import { RemoteStep, Connection } from "./remote/step";
import { renderTemplate } from "../services/template";
import { DATA_DIR } from "../cloud-init";

export interface BaseArgs {
    readonly connection: Connection;
    /** Every Debian package the enabled services need, installed in one go. */
    readonly packages: readonly string[];
    /** systemd units that keep data on the volume: they wait for its mount. */
    readonly dataUnits: readonly string[];
    /** Shell lines the handover runs once those units have stopped, before the volume is unmounted. */
    readonly handover: readonly string[];
    /** The volume must be attached before the step mounts it. */
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
}

/**
 * The first remote step: waits for first boot to finish, makes sure the data volume is mounted,
 * installs every package the services need, makes the services that keep data there wait for its
 * mount, and sets time sync, locale and journal limits.
 */
export class Base extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: BaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Base", name, {}, opts);
        this.step = new RemoteStep("base", {
            connection: args.connection,
            prepare: [
                // cloud-init may still be running its own apt or user set-up on first boot.
                "cloud-init status --wait >/dev/null 2>&1 || true",
                `for _ in $(seq 60); do mountpoint -q ${DATA_DIR} && break; mount ${DATA_DIR} 2>/dev/null || sleep 1; done`,
                `mountpoint -q ${DATA_DIR} || { log "the data volume is not mounted at ${DATA_DIR}; is it attached?"; exit 1; }`,
            ].join("\n"),
            packages: ["systemd-timesyncd", "ca-certificates", "openssl", ...new Set(args.packages)],
            files: [
                { path: "/etc/systemd/journald.conf.d/selfhost.conf", content: renderTemplate("base/journald.conf", {}) },
                { path: "/etc/default/locale", content: renderTemplate("base/locale", {}) },
                ...args.dataUnits.map(unit => ({
                    path: `/etc/systemd/system/${unit}.service.d/selfhost-data.conf`, content: renderTemplate("base/needs-data.conf", { dataDir: DATA_DIR }),
                })),
            ],
            run: [
                "systemctl enable --now systemd-timesyncd >/dev/null 2>&1 || true",
                "changed_in /etc/systemd/journald.conf.d && systemctl restart systemd-journald",
                "changed_in /etc/systemd/system && systemctl daemon-reload",
            ].join("\n"),
            // The handover: Pulumi deletes the steps (this one last) before the volume is detached and the
            // server deleted. No new mail after this; the volume gets what must move with it (the last
            // snapshot, the outgoing queue) and leaves cleanly unmounted. A failure stops the replacement here.
            delete: [
                `systemctl stop ${["postfix", ...args.dataUnits].join(" ")} || true`,
                ...args.handover,
                `! mountpoint -q ${DATA_DIR} || umount ${DATA_DIR}`,
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
