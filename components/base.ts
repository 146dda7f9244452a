import * as pulumi from "@pulumi/pulumi";
import { RemoteStep, Connection } from "./remote/step";
import { renderTemplate } from "../services/template";
import { DATA_DIR, DEPLOY_USER, sshdDropIn } from "../cloud-init";
import { Settings } from "../config";

export interface BaseArgs {
    readonly settings: Settings;
    readonly connection: Connection;
    /** The ports sshd listens on (two while sshPort moves). */
    readonly sshPorts: pulumi.Input<readonly number[]>;
    /** Every Debian package the enabled services need, installed in one go. */
    readonly packages: readonly string[];
    /** debconf answers those packages read when they are installed ("package question type value"). */
    readonly preseed: readonly string[];
    /** Units that must not start with their package's defaults: masked before their package is installed; their own step unmasks them. */
    readonly held: readonly string[];
    /** systemd units that keep data on the volume: they wait for its mount. */
    readonly dataUnits: readonly string[];
    /** Shell lines the handover runs once those units have stopped, before the volume is unmounted. */
    readonly handover: readonly string[];
    /** The volume must be attached before the step mounts it. */
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
    /** A machine without the data volume (the secondary MX): its name; `handover` then runs before it goes. */
    readonly machine?: { readonly hostname: string };
}

/** Stops everything that writes mail and data, the data units (Postfix is one), before a handover or a power-off. */
export const stopWriters = (dataUnits: readonly string[]) => `systemctl stop ${dataUnits.join(" ")} || true`;

/**
 * The admin's keys, as the stack knows them: in /etc, which the steps own, not in the home directory,
 * which is the user's and lives on the volume (written there, it would make an empty volume look used).
 */
export const KEYS_DIR = "/etc/ssh/authorized_keys";

/**
 * The login `git push` deploys through (the web step makes it, with git-shell as its shell: git and nothing else).
 * The admin's keys and siteDeployKeys reach it, each restricted (no terminal, no forwarding).
 */
export const GIT_USER = "git";

/** Who may log in, and as what: the admin with the user's keys and sudo, the push login, beside the stack's deploy user. */
function accessFiles(s: Settings, sshPorts: pulumi.Input<readonly number[]>, withGit: boolean) {
    return [
        { path: "/etc/ssh/sshd_config.d/00-selfhost.conf", content: pulumi.output(sshPorts).apply(ports =>
            sshdDropIn({ sshPorts: ports, users: [DEPLOY_USER, s.adminUser, ...withGit ? [GIT_USER] : []], keysDir: KEYS_DIR })) },
        { path: "/etc/sudoers.d/selfhost-admin", mode: "0440", content: `${s.adminUser} ALL=(ALL) NOPASSWD:ALL\n` },
        { path: `${KEYS_DIR}/${s.adminUser}`, content: s.sshPublicKeys.join("\n") },
        ...withGit ? [{ path: `${KEYS_DIR}/${GIT_USER}`, content: [...s.sshPublicKeys, ...s.siteDeployKeys].map(k => `restrict ${k}`).join("\n") + "\n" }] : [],
    ];
}

/** Users' homes live on the volume: in the backups, and on the next server. */
export const HOMES_DIR = `${DATA_DIR}/home`;

/**
 * Puts the admin's home on the volume, once the volume holds what it will hold (after a restore):
 * /home/<admin> becomes a link to it. An earlier server's home on the root disk is copied over first.
 * A new server may give the admin another uid than the one that wrote the volume: files are owned by
 * name, so the old uid's files on the volume become the admin's again.
 */
export function adminHomeOnVolume(admin: string): string {
    const [home, kept] = [`/home/${admin}`, `${HOMES_DIR}/${admin}`];
    return [
        `install -d -m 0755 ${HOMES_DIR}`,
        `if [ ! -L ${home} ]; then`,
        `  if [ ! -e ${kept} ]; then`,
        `    if [ -d ${home} ]; then cp -a ${home} ${kept}; log "the admin's home is now on the data volume (${kept})"`,
        `    else install -d -m 0750 -o ${admin} -g ${admin} ${kept}; fi`,
        `  elif [ -d ${home} ] && ! diff -rq /etc/skel ${home} >/dev/null 2>&1; then`,
        // Both hold files: keep the root disk's aside rather than lose either.
        `    mv ${home} ${home}.root-disk.$(date +%Y%m%d%H%M%S); log "kept the root disk's ${home} aside; the volume's home is the home"`,
        "  fi",
        `  rm -rf ${home}`,
        `  ln -s ${kept} ${home}`,
        "fi",
        `read -r uid gid < <(stat -c '%u %g' ${kept})`,
        `if [ "$uid" != "$(id -u ${admin})" ]; then chown -hR --from="$uid" ${admin} ${DATA_DIR}; log "files of uid $uid on the volume are ${admin}'s again"; fi`,
        `if [ "$gid" != "$(id -g ${admin})" ]; then chown -hR --from=":$gid" ":${admin}" ${DATA_DIR}; fi`,
    ].join("\n");
}

/**
 * The first remote step: waits for first boot to finish, makes sure the data volume is mounted,
 * installs every package the services need, makes the services that keep data there wait for its
 * mount, and sets time sync, locale and journal limits. It also owns access and identity: the admin
 * user and the user's SSH keys, sshd's allowed users, the hostname — all changed in place, so
 * editing them never replaces the server.
 */
export class Base extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: BaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Base", name, {}, opts);
        const s = args.settings;
        const hostname = args.machine?.hostname ?? s.hostname;
        const volume = !args.machine;
        const shortName = hostname.split(".")[0];
        const mountVolume = [
            `for _ in $(seq 60); do mountpoint -q ${DATA_DIR} && break; mount ${DATA_DIR} 2>/dev/null || sleep 1; done`,
            `mountpoint -q ${DATA_DIR} || { log "the data volume is not mounted at ${DATA_DIR}; is it attached?"; exit 1; }`,
        ];
        // Hetzner grows a resized volume's block device only; ext4 grows online to fill it. The size
        // is in this line so that a new volumeSizeGb re-runs the step, after the volume's resize.
        const growVolume = [
            `grown=$(resize2fs "$(findmnt -n -o SOURCE --target ${DATA_DIR})" 2>&1) || { log "resize2fs failed: $grown"; exit 1; }`,
            `[[ $grown == *"Nothing to do"* ]] || log "the data filesystem now fills the ${s.volumeSizeGb} GB volume: $(df -h --output=size ${DATA_DIR} | tail -1)"`,
        ];
        // The handover: Pulumi deletes the steps (this one last) before the volume is detached and the
        // server deleted. No new mail after this; the volume gets what must move with it (the last
        // snapshot, the outgoing queue) and leaves cleanly unmounted. A failure stops the replacement here.
        const handOverVolume = [
            // A failure anywhere means the server is not going (the replacement stops here): put the
            // volume and the services back, so mail keeps flowing while you fix it.
            `trap 'mountpoint -q ${DATA_DIR} || mount ${DATA_DIR}; systemctl start ${args.dataUnits.join(" ")} || true; ` +
                `echo "the handover failed: this server keeps running; fix the cause and run pulumi up again" >&2' ERR`,
            stopWriters(args.dataUnits),
            ...args.handover,
            // The admin's home is on the volume: a login session there (the server is going) would keep it busy.
            `loginctl terminate-user ${s.adminUser} 2>/dev/null || true`,
            `for _ in $(seq 10); do mountpoint -q ${DATA_DIR} || break; umount ${DATA_DIR} 2>/dev/null || sleep 1; done`,
            `! mountpoint -q ${DATA_DIR} || { echo "${DATA_DIR} is still in use: $(fuser -vm ${DATA_DIR} 2>&1 | tail -n +2 | head -5)" >&2; false; }`,
        ];
        this.step = new RemoteStep(name, {
            connection: args.connection,
            prepare: [
                // cloud-init may still be running its own apt or user set-up on first boot.
                "cloud-init status --wait >/dev/null 2>&1 || true",
                ...volume ? mountVolume : [],
                // Its home moves onto the volume in the backup step, after a restore (adminHomeOnVolume).
                `id -u ${s.adminUser} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --comment "selfhost administrator" ${s.adminUser}`,
                // The name first: packages (postfix) read it when they are installed. The FQDN resolves
                // locally (hostname -f), as Debian's installer sets it up.
                `[ "$(cat /etc/hostname 2>/dev/null)" = ${shortName} ] || { echo ${shortName} > /etc/hostname; log "hostname ${shortName}"; }`,
                `[ "$(hostname)" = ${shortName} ] || hostname ${shortName}`,
                `grep -qxF '127.0.1.1 ${hostname} ${shortName}' /etc/hosts || ` +
                    `{ sed -i '/^127\\.0\\.1\\.1[[:space:]]/d' /etc/hosts; echo '127.0.1.1 ${hostname} ${shortName}' >> /etc/hosts; }`,
                ...args.preseed.map(answer => `echo '${answer}' | debconf-set-selections`),
                // (Masking a unit whose package is not there yet works; systemctl only warns that it does not exist.)
                ...args.held.map(unit => `systemctl cat ${unit}.service >/dev/null 2>&1 || systemctl mask --quiet ${unit}.service 2>/dev/null`),
            ].join("\n"),
            // e2fsprogs: resize2fs (Hetzner's images have it; a minimal Debian may not).
            packages: ["systemd-timesyncd", "ca-certificates", "openssl", "e2fsprogs", ...new Set(args.packages)],
            files: [
                // The push login (git) lives with the site, on the server.
                ...accessFiles(s, args.sshPorts, volume),
                { path: "/etc/systemd/journald.conf.d/selfhost.conf", content: renderTemplate("base/journald.conf", {}) },
                { path: "/etc/default/locale", content: renderTemplate("base/locale", {}) },
                ...args.dataUnits.map(unit => ({
                    path: `/etc/systemd/system/${unit}.service.d/selfhost-data.conf`, content: renderTemplate("base/needs-data.conf", { dataDir: DATA_DIR }),
                })),
            ],
            check: [
                "check sshd -t",
                "check visudo -c -q -f /etc/sudoers.d/selfhost-admin",
            ].join("\n"),
            run: [
                // A reload keeps open sessions (this one) and applies the allowed users to the next logins.
                "changed_in /etc/ssh && systemctl reload ssh",
                ...volume ? growVolume : [],
                "systemctl enable --now systemd-timesyncd >/dev/null 2>&1 || true",
                "changed_in /etc/systemd/journald.conf.d && systemctl restart systemd-journald",
                "changed_in /etc/systemd/system && systemctl daemon-reload",
            ].join("\n"),
            delete: (volume ? handOverVolume : args.handover).join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
