/**
 * The test server: a systemd-nspawn container booted from a cached Debian 13 rootfs that looks like
 * Hetzner's debian-13 image (cloud-init, openssh-server, sudo), seeded with the program's user-data.
 * "Hetzner" here is this file: it gives the container its addresses and attaches the data volume at
 * the device path Hetzner uses.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { ChildProcess } from "child_process";
import { sh, must, daemon, waitFor, Cleanup } from "./sh";
import { NET, DnsRoot } from "./world";

/** What Hetzner's debian-13 image has that matters here. */
const IMAGE_PACKAGES = ["systemd-sysv", "cloud-init", "openssh-server", "dbus", "sudo", "ca-certificates", "iproute2",
    "netbase", "procps", "less"];
const SUITE = "trixie";
export const CACHE = "/var/cache/selfhost-e2e";
/** The cgroup2 hierarchy: /sys/fs/cgroup itself, or its "unified" mount on a hybrid host. */
const CGROUP_ROOT = fs.existsSync("/sys/fs/cgroup/unified/cgroup.procs") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";

/**
 * The Debian archives this machine's own apt uses, read from its sources at run time (deb822 `URIs:` or
 * one-line `deb` entries), so the project names no mirror of its own: the mirror, and the security
 * archive that a Hetzner image also has in its sources.
 */
export function debianArchives(): { mirror: string; security: string } {
    const dir = "/etc/apt/sources.list.d";
    const files = ["/etc/apt/sources.list", ...(fs.existsSync(dir) ? fs.readdirSync(dir).map(f => path.join(dir, f)) : [])]
        .filter(f => /\.(list|sources)$/.test(f) && fs.existsSync(f));
    const uris = files.flatMap(f => fs.readFileSync(f, "utf8").split("\n").map(l => l.trim()).flatMap(l =>
        l.match(/^URIs:\s*(.+)$/i)?.[1].split(/\s+/) ?? l.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/)?.slice(1) ?? []))
        .filter(u => /^https?:\/\//.test(u)).map(u => u.replace(/\/$/, ""));
    const [mirror, security] = [uris.find(u => !/security/.test(u)), uris.find(u => /security/.test(u))];
    if (!mirror || !security) throw new Error(`no Debian ${mirror ? "security archive" : "mirror"} in ${files.join(", ") || "/etc/apt"}: ` +
        "the local target installs its hosts' packages from the ones this machine uses");
    return { mirror, security };
}

/**
 * Whether root here may grow a mounted ext4 (the kernel wants CAP_SYS_RESOURCE, which nspawn leaves out
 * by default and some sandboxes withhold from root altogether). A Hetzner server's root has it.
 */
export function canGrowMountedExt4(): boolean {
    const bounding = fs.readFileSync("/proc/self/status", "utf8").match(/^CapBnd:\s*([0-9a-f]+)$/m)?.[1] ?? "0";
    return ((BigInt(`0x${bounding}`) >> 24n) & 1n) === 1n;
}

/** Whether the test hosts reach an archive through the apt cache (apt-cacher-ng fronts plain HTTP; an https one is reached directly). */
export const cachedArchive = (url: string) => new URL(url).protocol === "http:";

/** Builds (once, then cached) the rootfs tarball: the image's packages and `extra` ones, Depends only, like apt here. */
export function rootfs(extra: readonly string[] = []): string {
    const packages = [...IMAGE_PACKAGES, ...extra];
    const { mirror, security } = debianArchives();
    // The suites a Hetzner image has: the release, its updates and its security updates.
    const sources = [`deb ${mirror} ${SUITE} main`, `deb ${mirror} ${SUITE}-updates main`, `deb ${security} ${SUITE}-security main`];
    const key = crypto.createHash("sha256").update([...sources, ...packages].join(" ")).digest("hex").slice(0, 12);
    const tarball = path.join(CACHE, `debian-13-${key}.tar`);
    if (fs.existsSync(tarball)) return tarball;
    fs.mkdirSync(CACHE, { recursive: true });
    console.log(`building a Debian 13 image with ${packages.length} packages (cached in ${tarball})`);
    must(`mmdebstrap --quiet --format=tar --variant=minbase --include=${packages.join(",")} ${SUITE} ${tarball}.part ${sources.map(l => `'${l}'`).join(" ")} && mv ${tarball}.part ${tarball}`,
        { timeoutMs: 900_000 });
    return tarball;
}

/** Stops containers, loop devices, cgroups and work dirs an earlier run left (E2E_KEEP or a crash). */
export function sweepServers(): void {
    sh("pkill -9 -f 'systemd-nspawn -D /tmp/selfhost-e2e-'");
    // A container's processes outlive a killed nspawn; its cgroup can end them all at once.
    sh(`for d in ${CGROUP_ROOT}/selfhost-e2e-*; do [ -f "$d/cgroup.kill" ] && echo 1 > "$d/cgroup.kill"; done; sleep 1`);
    sh("losetup -nO NAME,BACK-FILE | awk '$2 ~ /selfhost-e2e-/ {print $1}' | xargs -r -n1 losetup -d");
    sh(`for d in ${CGROUP_ROOT}/selfhost-e2e-*; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} +; done`);
    sh("rm -rf /tmp/selfhost-e2e-*");
}

/** The host end of a container's link to the bridge, as systemd-nspawn names it (an interface name has 15 characters). */
const hostVeth = (machine: string) => `vb-${machine}`.slice(0, 15);

export interface ServerSpec {
    readonly name: string;
    readonly dir: string;
    readonly ipv4: string;
    readonly ipv6: string;
    /** cloud-init user-data; none boots the plain image (the benchmark's baseline). */
    readonly userData?: string;
    /** Hetzner volume id: the volume appears at /dev/disk/by-id/scsi-0HC_Volume_<id>. */
    readonly volumeId?: string;
    /** The volume's image file: an existing one is attached as it is (a volume that outlived its server). */
    readonly volumeImage?: string;
    /** PEM certificates the machine trusts besides Debian's (the simulated internet's CAs). */
    readonly trust: string[];
    /**
     * The simulated internet's DNS root, in place of the real one's servers and key in dns-root-data
     * (diverted, so the package installs Debian's copies beside them), and the reserved test names
     * unbound would otherwise answer itself: the test-only overrides of the server's own resolver.
     */
    readonly dnsRoot?: DnsRoot;
    /** Packages its image has besides Hetzner's (a client host's tools). */
    readonly packages?: readonly string[];
    /** Join this existing network namespace (its addresses are set already) instead of plugging into the bridge. */
    readonly netns?: string;
    /** This machine's directories shown at the same path inside. */
    readonly binds?: readonly { dir: string; readOnly?: boolean }[];
}

export class TestServer {
    private process?: ChildProcess;
    readonly root: string;

    constructor(readonly spec: ServerSpec, private readonly cleanup: Cleanup) {
        this.root = path.join(spec.dir, "root");
    }

    async boot(): Promise<void> {
        const { spec, root } = this;
        fs.mkdirSync(root, { recursive: true });
        must(`tar -C ${root} -xf ${rootfs(spec.packages)}`);
        this.cleanup.add(`rootfs ${spec.name}`, () => sh(`rm -rf ${spec.dir}`));
        const write = (file: string, text: string) => {
            fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
            fs.writeFileSync(path.join(root, file), text);
        };
        if (!spec.netns) {
            // Hetzner's network: static addresses (cloud-init's network config is off in this datasource).
            write("etc/systemd/network/10-host0.network", [
                "[Match]", "Name=host0", "[Network]", `Address=${spec.ipv4}/24`, `Gateway=${NET.gateway4}`,
                `Address=${spec.ipv6}/64`, `Gateway=${NET.gateway6}`, "IPv6AcceptRA=no", "",
            ].join("\n"));
            must(`ln -sf /usr/lib/systemd/system/systemd-networkd.service ${root}/etc/systemd/system/multi-user.target.wants/`);
        }
        write("etc/resolv.conf", `nameserver ${NET.inet.resolver}\n`);
        // The Debian archives' names lead to the apt cache (apt-cache.ts); an https one to the address this
        // machine resolves it to (the test DNS knows only the test zones).
        const archives = new Map(Object.values(debianArchives()).map(url => [new URL(url).hostname, url]));
        for (const [host, url] of archives) {
            const ip = cachedArchive(url) ? NET.gateway4 : must(`getent ahostsv4 ${host} | awk 'NR==1{print $1}'`).trim();
            for (const hosts of ["etc/hosts", "etc/cloud/templates/hosts.debian.tmpl"]) fs.appendFileSync(path.join(root, hosts), `${ip} ${host}\n`);
        }
        if (spec.dnsRoot) {
            for (const [file, text] of [["root.hints", spec.dnsRoot.hints], ["root.key", spec.dnsRoot.anchor]]) {
                must(`chroot ${root} dpkg-divert --quiet --local --rename --divert /usr/share/dns/${file}.debian --add /usr/share/dns/${file}`);
                write(`usr/share/dns/${file}`, text);
            }
            // unbound itself answers NXDOMAIN for the names reserved for testing and documentation (.test,
            // TEST-NET-2, 2001:db8::/32), which are exactly the simulated internet's: here it asks for them.
            write("etc/unbound/unbound.conf.d/e2e-test-names.conf", ["server:",
                ...["test.", "100.51.198.in-addr.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa."].map(z => `    local-zone: "${z}" nodefault`), ""].join("\n"));
        }
        spec.trust.forEach((pem, i) => write(`usr/local/share/ca-certificates/e2e-${i}.crt`, pem));
        must(`chroot ${root} update-ca-certificates >/dev/null 2>&1`);
        if (spec.userData) {
            write("etc/cloud/cloud.cfg.d/99-e2e.cfg", "datasource_list: [NoCloud, None]\nnetwork: {config: disabled}\n");
            write("var/lib/cloud/seed/nocloud/user-data", spec.userData);
            write("var/lib/cloud/seed/nocloud/meta-data", `instance-id: ${spec.name}\nlocal-hostname: ${spec.name}\n`);
        } else {
            must(`touch ${root}/etc/cloud/cloud-init.disabled`);
        }
        const args = ["systemd-nspawn", "-D", root, "--boot", "--register=no", "--keep-unit", `--machine=${spec.name}`,
            spec.netns ? `--network-namespace-path=/var/run/netns/${spec.netns}` : `--network-bridge=${NET.bridge}`, "--console=read-only",
            // The provider's resolver, as written above: nspawn would otherwise copy this machine's in.
            "--resolv-conf=off",
            ...(spec.binds ?? []).map(b => `--bind${b.readOnly ? "-ro" : ""}=${b.dir}`)];
        if (spec.volumeId) {
            const image = this.volumeImage();
            if (!fs.existsSync(image)) must(`truncate -s 2G ${image} && mkfs.ext4 -q ${image}`);
            const loop = must(`losetup -f --show ${image}`).trim();
            this.cleanup.add(`loop ${loop}`, () => sh(`losetup -d ${loop}`));
            this.loop = loop;
            args.push(`--bind=${loop}:/dev/disk/by-id/scsi-0HC_Volume_${spec.volumeId}`, `--property=DeviceAllow=${loop} rwm`,
                ...(canGrowMountedExt4() ? ["--capability=CAP_SYS_RESOURCE"] : []));
        }
        this.cleanup.add(`container ${spec.name}`, () => this.stop());
        await this.start(args);
    }

    private loop?: string;
    private volumeImage = () => this.spec.volumeImage ?? path.join(this.spec.dir, "volume.img");

    private async start(args: string[]): Promise<void> {
        const { spec } = this;
        this.args = args;
        // Each container gets a cgroup of its own (this machine's init is not systemd, so nspawn keeps
        // the caller's cgroup); two containers sharing one would see each other's services.
        const cgroup = `${CGROUP_ROOT}/selfhost-e2e-${spec.name}`;
        this.cleanup.add(`cgroup ${spec.name}`, () =>
            sh(`[ -d ${cgroup} ] && { echo 1 > ${cgroup}/cgroup.kill; sleep 0.5; find ${cgroup} -depth -type d -exec rmdir {} +; }`));
        this.process = daemon(["bash", "-c", `mkdir -p ${cgroup} && echo $$ > ${cgroup}/cgroup.procs && exec "$@"`, "nspawn", ...args],
            path.join(spec.dir, "console.log"), { env: { SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: "1" } });
        try {
            await waitFor(`${spec.name} to boot`, 120, () => this.exec("systemctl is-system-running").stdout.trim().match(/running|degraded/) !== null);
        } catch (e) {
            throw new Error(`${e instanceof Error ? e.message : e}; console ends:\n${sh(`tail -15 ${path.join(spec.dir, "console.log")}`).stdout}`);
        }
    }
    private args: string[] = [];

    /**
     * Hetzner's power-off and power-on (a server-type change): every process dies at once, as when the
     * plug is pulled, then the same disk and volume boot again.
     */
    async powerCycle(): Promise<void> {
        await this.pullPlug();
        await this.powerOn();
    }

    /** Every process dies at once, as in an outage; the disk and volume stay. */
    async pullPlug(): Promise<void> {
        const cgroup = `${CGROUP_ROOT}/selfhost-e2e-${this.spec.name}`;
        const nspawn = this.process?.pid;
        must(`echo 1 > ${cgroup}/cgroup.kill`);
        await waitFor(`${this.spec.name} to die`, 30, () => !nspawn || sh(`kill -0 ${nspawn}`).code !== 0);
        // What the dead container leaves: its sub-cgroups, and the host side of its network link.
        sh(`find ${cgroup} -mindepth 1 -depth -type d -exec rmdir {} +`);
        sh(`ip link del ${hostVeth(this.spec.name)} 2>/dev/null`);
        this.process = undefined;
    }

    /** The same disk and volume boot again. */
    async powerOn(): Promise<void> {
        await this.start(this.args);
    }

    /**
     * A container has no udev, so the volume's device is never announced and fstab's mount waits in vain;
     * on a server udev announces it and systemd mounts /srv before the services that need it. Done by
     * hand here: the mount, then `units` (those that waited for it). Returns once systemd has no job left
     * (redis, once up, has rspamd restart without waiting for it).
     */
    mountVolumeAsAtBoot(units: readonly string[]): ReturnType<typeof sh> {
        return this.exec(`mount /srv && systemctl reset-failed && systemctl restart ${units.join(" ")} && ` +
            "for i in $(seq 60); do [ -z \"$(systemctl list-jobs --no-legend)\" ] && break; sleep 0.5; done");
    }

    /** Hetzner's volume resize: the block device grows, the filesystem on it does not. */
    growVolume(bytes: number): void {
        must(`truncate -s ${bytes} ${this.volumeImage()} && losetup -c ${this.loop}`);
    }

    /** The container's init process, for nsenter. */
    initPid(): number | undefined {
        if (!this.process?.pid) return undefined;
        const init = sh(`pgrep -P ${this.process.pid} -x systemd`).stdout.trim();
        return init ? Number(init) : undefined;
    }

    /** Runs a command inside the server as root (the harness's console, not part of the product). */
    exec(command: string): ReturnType<typeof sh> {
        const pid = this.initPid();
        if (!pid) return { code: -1, stdout: "", stderr: "container not running", ms: 0 };
        return sh(`nsenter -t ${pid} -a bash -c '${command.replace(/'/g, `'\\''`)}'`);
    }

    /** systemd's exposure rating of a unit (0 confined … 10 exposed); NaN when it could not say. */
    exposure(unit: string): number {
        const r = this.exec(`systemd-analyze security ${unit} 2>&1 | tail -1`).stdout;
        return Number(r.match(/exposure level for \S+: ([\d.]+)/)?.[1] ?? NaN);
    }

    stop(): void {
        const pid = this.initPid();
        if (pid) sh(`kill -s SIGRTMIN+4 ${pid}`); // systemd: poweroff
        if (this.process?.pid) {
            for (let i = 0; i < 40 && sh(`kill -0 ${this.process.pid}`).code === 0; i++) sh("sleep 0.25");
            sh(`kill -9 ${this.process.pid}`);
        }
        this.process = undefined;
    }
}
