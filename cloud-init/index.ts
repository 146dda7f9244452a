/**
 * The first-boot payload. It holds only values that never change for a server: the deploy user with
 * the stack's deploy key, the port sshd boots on and its lock-down, and the data volume's mount. The admin
 * user, the user's SSH keys and the hostname are applied by the base step, so editing them never
 * replaces the server (Hetzner replaces a server whose user-data changes).
 * Its one secret is the server's own SSH host key, made by the stack so that every connection can
 * verify the host before anything is sent; the hardening step closes the metadata service (which
 * hands out user-data) to every process but root's.
 */
import * as YAML from "yaml";

/** Where the data volume is mounted: everything that must outlive the server lives below it. */
export const DATA_DIR = "/srv";
/** The stack's own bookkeeping that must move with the data (root's only). */
export const STACK_DATA_DIR = `${DATA_DIR}/selfhost`;

/** The stack's own login for remote steps: made at first boot, its only key the stack's deploy key. */
export const DEPLOY_USER = "selfhost";

/** The Linux device path of a Hetzner volume; stable across reboots and servers. */
export const volumeDevice = (volumeId: string | number) => `/dev/disk/by-id/scsi-0HC_Volume_${volumeId}`;

export interface UserDataArgs {
    /** The stack's deploy key (public half). */
    readonly deployKey: string;
    /** The server's ED25519 host key, made by the stack (OpenSSH private key, and its public line). */
    readonly hostKey: { readonly private: string; readonly public: string };
    /** The port sshd listens on at first boot (see components/ssh.ts). */
    readonly sshPort: number;
    /** The data volume to mount at DATA_DIR (none on the secondary MX, which keeps no data). */
    readonly volumeId?: string | number;
}

/** sshd settings: first boot allows the deploy user only; the base step adds the admin (and moves the port). */
export function sshdDropIn(a: { sshPorts: readonly number[]; users: readonly string[]; keysDir?: string }): string {
    return [
        ...a.sshPorts.map(p => `Port ${p}`),
        // The stack's keys for a user in a root-owned file of their own; the user's own file still counts.
        ...(a.keysDir ? [`AuthorizedKeysFile ${a.keysDir}/%u .ssh/authorized_keys`] : []),
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        `AllowUsers ${a.users.join(" ")}`,
        // Keeps NAT and firewall state alive while a step is silent for minutes (apt, a restore);
        // a vanished client is dropped after three minutes.
        "ClientAliveInterval 30",
        "ClientAliveCountMax 6",
        "",
    ].join("\n");
}

export function renderUserData(a: UserDataArgs): string {
    const config = {
        // The base step names the host (hostname and /etc/hosts): a new name must not mean a new server.
        preserve_hostname: true,
        manage_etc_hosts: false,
        disable_root: true,
        ssh_pwauth: false,
        // The host key the stack pins; the image's keys are deleted, and with ssh_keys none other is made.
        ssh_deletekeys: true,
        ssh_keys: { ed25519_private: a.hostKey.private, ed25519_public: a.hostKey.public },
        users: [{
            name: DEPLOY_USER,
            gecos: "selfhost deploy (pulumi up)",
            shell: "/bin/bash",
            sudo: "ALL=(ALL) NOPASSWD:ALL",
            lock_passwd: true,
            ssh_authorized_keys: [a.deployKey],
        }],
        write_files: [{
            // Sorted before Debian's own drop-ins: sshd keeps the first value it reads.
            path: "/etc/ssh/sshd_config.d/00-selfhost.conf",
            permissions: "0644",
            content: sshdDropIn({ sshPorts: [a.sshPort], users: [DEPLOY_USER] }),
        }],
        // nofail: the volume is attached right after the server is created, possibly after this boot.
        ...a.volumeId === undefined ? {} : { mounts: [[volumeDevice(a.volumeId), DATA_DIR, "ext4", "discard,nofail,x-systemd.device-timeout=60s", "0", "2"]] },
        runcmd: [
            ["sh", "-c", "sshd -t && systemctl restart ssh"],
            ...a.volumeId === undefined ? [] : [["sh", "-c", `mountpoint -q ${DATA_DIR} || mount ${DATA_DIR} || true`]],
        ],
    };
    return `#cloud-config\n${YAML.stringify(config, { lineWidth: 0 })}`;
}
