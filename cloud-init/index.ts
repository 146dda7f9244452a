/**
 * The first-boot payload. It holds only what must exist before the first SSH login and never changes
 * afterwards: the admin user and keys, sshd's port and lock-down, the hostname and the data volume's
 * mount. Everything else is a remote step, so tuning a service never replaces the server.
 * It holds no secret: any process on the server can read user-data from the metadata service.
 */
import * as YAML from "yaml";

/** Where the data volume is mounted: everything that must outlive the server lives below it. */
export const DATA_DIR = "/srv";

/** The Linux device path of a Hetzner volume; stable across reboots and servers. */
export const volumeDevice = (volumeId: string | number) => `/dev/disk/by-id/scsi-0HC_Volume_${volumeId}`;

export interface UserDataArgs {
    readonly hostname: string;
    readonly adminUser: string;
    /** The user's keys and the stack's deploy key (public halves only). */
    readonly authorizedKeys: readonly string[];
    readonly sshPort: number;
    readonly volumeId: string | number;
}

/** sshd settings from first boot; the hardening step later adds ciphers, rate limits and allowlists. */
export function sshdDropIn(a: Pick<UserDataArgs, "sshPort" | "adminUser">): string {
    return [
        `Port ${a.sshPort}`,
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        `AllowUsers ${a.adminUser}`,
        "",
    ].join("\n");
}

export function renderUserData(a: UserDataArgs): string {
    const config = {
        hostname: a.hostname.split(".")[0],
        fqdn: a.hostname,
        prefer_fqdn_over_hostname: true,
        manage_etc_hosts: true,
        disable_root: true,
        ssh_pwauth: false,
        users: [{
            name: a.adminUser,
            gecos: "selfhost administrator",
            shell: "/bin/bash",
            groups: ["sudo"],
            sudo: "ALL=(ALL) NOPASSWD:ALL",
            lock_passwd: true,
            ssh_authorized_keys: [...a.authorizedKeys],
        }],
        write_files: [{
            // Sorted before Debian's own drop-ins: sshd keeps the first value it reads.
            path: "/etc/ssh/sshd_config.d/00-selfhost.conf",
            permissions: "0644",
            content: sshdDropIn(a),
        }],
        // nofail: the volume is attached right after the server is created, possibly after this boot.
        mounts: [[volumeDevice(a.volumeId), DATA_DIR, "ext4", "discard,nofail,x-systemd.device-timeout=60s", "0", "2"]],
        runcmd: [
            ["sh", "-c", "sshd -t && systemctl restart ssh"],
            ["sh", "-c", `mountpoint -q ${DATA_DIR} || mount ${DATA_DIR} || true`],
        ],
    };
    return `#cloud-config\n${YAML.stringify(config, { lineWidth: 0 })}`;
}
