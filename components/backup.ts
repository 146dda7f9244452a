/**
 * Data that outlives the server: restic snapshots of the data volume, encrypted with a password the
 * stack generates (a secret output, so the owner can restore without the server), kept by default on
 * a Hetzner Storage Box sub-account in another datacentre. A new host that finds the volume empty
 * restores the latest snapshot before any service is configured — that is how a move keeps everything.
 */
import * as pulumi from "@pulumi/pulumi";
import * as hcloud from "@pulumi/hcloud";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import { Settings, STORAGE_BOX_PORT, sftpLogin } from "../config";
import { DATA_DIR } from "../cloud-init";
import { RemoteStep, ServiceArgs, StepFile } from "./remote/step";
import { renderTemplate, confined } from "../services/template";
import { adminHomeOnVolume } from "./base";
import { LOCAL_PORTS } from "../services/catalog";
import { MAIL_DIR } from "./mail";

export const packages = (s: Settings) => s.backup.kind === "off" ? [] : ["restic", ...s.backup.kind === "storagebox" ? ["sshpass"] : []];

export { sftpLogin };
export const BACKUP_COMMAND = "/usr/local/sbin/selfhost-backup";
/** At the handover, once mail has stopped: the last snapshot, when backups are on. */
export const handover = `if mountpoint -q ${DATA_DIR} && systemctl is-enabled --quiet selfhost-backup.timer 2>/dev/null; then ${BACKUP_COMMAND} run; fi`;
const CONF_DIR = "/etc/selfhost/backup";
/** Scripts a scheduled snapshot runs first (run-parts: names of letters, digits, - and _), one per service that needs it. */
export const BEFORE_BACKUP = "/etc/selfhost/before-backup.d";
const KEY_FILE = `${CONF_DIR}/key`;
const SSH_CONFIG = `${CONF_DIR}/ssh_config`;
const TIMERS = ["selfhost-backup.timer", "selfhost-backup-check.timer"];
const UNITS = ["selfhost-backup.service", "selfhost-backup.timer", "selfhost-backup-check.service", "selfhost-backup-check.timer",
    "selfhost-backup-failed@.service"];

/** Storage Boxes live in the European datacentres; the backup goes to another one than the server's (at creation). */
export const storageBoxLocation = (serverLocation: string) => serverLocation === "fsn1" ? "hel1" : "fsn1";

/** Hetzner's snapshots of the box: daily at this hour (UTC), after the nightly backup; every box type keeps at least 10. */
export const STORAGE_BOX_SNAPSHOT = { hour: 4, keep: 10 };

/** A Storage Box password that meets Hetzner's policy (every character class). */
const boxPassword = (name: string, parent: pulumi.Resource) => new random.RandomPassword(name, {
    length: 32, minLower: 2, minUpper: 2, minNumeric: 2, minSpecial: 2, overrideSpecial: "-_.+#",
}, { parent });

export class Backup extends pulumi.ComponentResource {
    readonly step: RemoteStep;
    /** The restic repository URL (empty when backups are off). */
    readonly repository: pulumi.Output<string>;
    /** The repository's password (secret): with it and the URL, `restic restore` works from anywhere. */
    readonly password: pulumi.Output<string>;
    /** The key the server logs in to an sftp repository with: install it there when backup is an sftp URL. */
    readonly sshPublicKey: pulumi.Output<string>;

    constructor(name: string, args: ServiceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Backup", name, {}, opts);
        const s = args.settings;
        const target = s.backup;
        const child = { parent: this };
        if (target.kind === "off") {
            this.repository = pulumi.output("");
            this.password = pulumi.secret("");
            this.sshPublicKey = pulumi.output("");
            this.step = new RemoteStep("backup", {
                connection: args.connection,
                run: [`systemctl disable --quiet --now ${TIMERS.join(" ")} 2>/dev/null || true`, adminHomeOnVolume(s.adminUser)].join("\n"),
                dependsOn: args.dependsOn,
            }, child);
            this.registerOutputs({});
            return;
        }
        // Lose the password and the snapshots are noise: it is protected like the volume.
        const password = new random.RandomPassword("backup-password", { length: 40, special: false }, { ...child, protect: s.protectData });
        const key = new tls.PrivateKey("backup-key", { algorithm: "ED25519" }, child);
        this.password = pulumi.secret(password.result);
        this.sshPublicKey = key.publicKeyOpenssh.apply(k => k.trim());

        let subPassword: pulumi.Output<string> | undefined;
        if (target.kind === "storagebox") {
            const kept = { ...child, protect: s.protectData };
            const labels = { app: "selfhost", domain: s.domain.replace(/\./g, "-") };
            const box = new hcloud.StorageBox("backup", {
                name: `${s.hostname.replace(/\./g, "-")}-backup`, storageBoxType: s.backupStorageBoxType,
                location: storageBoxLocation(s.location), password: boxPassword("storagebox-password", this).result,
                // Nobody logs in as the main account (it sees every sub-account's files): the API's box settings are the
                // main account's, each sub-account has its own (Hetzner's Storage Box API, update_access_settings).
                accessSettings: { sshEnabled: false, reachableExternally: false, sambaEnabled: false, webdavEnabled: false, zfsEnabled: false },
                // History the server cannot delete: Hetzner's own daily snapshots of the box. A compromised server
                // can `restic forget --prune` its repository; it cannot touch these (they count against the box's space).
                snapshotPlan: { hour: STORAGE_BOX_SNAPSHOT.hour, minute: 0, maxSnapshots: STORAGE_BOX_SNAPSHOT.keep },
                deleteProtection: s.protectData, labels,
            }, {
                ...kept,
                // Chosen once, away from the server: moving the server later must not move (replace) its backups.
                ignoreChanges: ["location"],
            });
            // A sub-account confined to one directory: the server's key reaches this server's backups only.
            const subAccountPassword = boxPassword("storagebox-subaccount-password", this);
            const sub = new hcloud.StorageBoxSubaccount("backup", {
                storageBoxId: box.id.apply(Number), homeDirectory: `selfhost/${s.hostname}`, password: subAccountPassword.result,
                accessSettings: { sshEnabled: true, reachableExternally: true }, description: `restic repository of ${s.hostname}`, labels,
            }, kept);
            subPassword = pulumi.secret(subAccountPassword.result);
            this.repository = pulumi.interpolate`sftp://${sub.username}@${sub.server}:${STORAGE_BOX_PORT}/restic`;
        } else {
            this.repository = pulumi.output(target.url);
        }

        const files: StepFile[] = [
            { path: BACKUP_COMMAND, mode: "0755", content: this.repository.apply(repository =>
                renderTemplate("backup/selfhost-backup", {
                    repository, ...sftpLogin(repository)!, passwordFile: `${CONF_DIR}/password`, sshConfig: SSH_CONFIG, keyFile: KEY_FILE, dataDir: DATA_DIR, redisPort: LOCAL_PORTS.redis, mailDir: MAIL_DIR,
                    keepDaily: s.backupKeep.daily, keepWeekly: s.backupKeep.weekly, keepMonthly: s.backupKeep.monthly,
                })) },
            { path: SSH_CONFIG, content: renderTemplate("backup/ssh_config", { keyFile: KEY_FILE, knownHosts: `${CONF_DIR}/known_hosts` }) },
            { path: `${KEY_FILE}.pub`, content: this.sshPublicKey.apply(k => `${k}\n`) },
            ...UNITS.map(unit => ({ path: `/etc/systemd/system/${unit}`, content: renderTemplate(`backup/${unit}`, {
                dataDir: DATA_DIR, schedule: s.backupSchedule, hooks: BEFORE_BACKUP, sandbox: renderTemplate("backup/sandbox.conf", { confDir: CONF_DIR, confined: confined("CAP_DAC_READ_SEARCH") }).trimEnd(),
            }) })),
        ];
        this.step = new RemoteStep("backup", {
            connection: args.connection,
            prepare: `install -d -m 0700 ${CONF_DIR}\ninstall -d -m 0755 ${BEFORE_BACKUP}`,
            files,
            secretFiles: [
                { path: `${CONF_DIR}/password`, mode: "0600", content: password.result },
                { path: KEY_FILE, mode: "0600", content: key.privateKeyOpenssh },
            ],
            secrets: subPassword ? { storageBoxPassword: subPassword } : undefined,
            check: [
                `check systemd-analyze calendar '${s.backupSchedule}'`,
                `check bash -n ${BACKUP_COMMAND}`,
            ].join("\n"),
            run: [
                "changed_in /etc/systemd/system && systemctl daemon-reload",
                `${subPassword ? 'STORAGE_BOX_PASSWORD_FILE="$SECRETS/storageBoxPassword" ' : ""}${BACKUP_COMMAND} open`,
                `systemctl enable --quiet --now ${TIMERS.join(" ")}`,
                // Only now, with the volume restored, may the admin's home be written onto it.
                adminHomeOnVolume(s.adminUser),
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, child);
        this.registerOutputs({ repository: this.repository });
    }
}
