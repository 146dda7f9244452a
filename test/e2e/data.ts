/**
 * Data that outlives the server, on the local target: a stand-in Storage Box (an SFTP account with a
 * password on port 23 of the peer host, as Hetzner's sub-accounts are), backups and their failure
 * mail, the same volume on a new server, and a move to a new, empty volume that restore-on-create fills.
 */
import { createHash } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ProgramRun } from "../program";
import { sh, run, must, Result } from "./sh";
import { NET } from "./world";
import { TestServer } from "./server";
import { Checks } from "./checks";
import { Step } from "./steps";
import { PEER_USER } from "./peer";
import { QUEUE_CARRY } from "../../components/mail";
import { DATABASE as WEBMAIL_DB } from "../../components/webmail";

/** The repository the program declares, and what the test world needs to host it. */
export interface StorageBox {
    readonly user: string;
    readonly password: string;
    /** DNS zone and records that send the Storage Box's name to the peer host. */
    readonly zone: string;
    readonly records: string[];
}

export function storageBoxOf(program: ProgramRun): StorageBox {
    const url = new URL(program.outputs.backupRepository);
    const [label, ...zone] = url.hostname.split(".");
    return {
        user: url.username,
        password: program.one("random:index/randomPassword:RandomPassword", "storagebox-subaccount-password").state.result,
        zone: zone.join("."),
        records: [`${label} 300 IN A ${NET.peer.ipv4}`, `${label} 300 IN AAAA ${NET.peer.ipv6}`],
    };
}

/** An SFTP-only account with a password on port 23, empty, like a fresh sub-account. */
export function startStorageBox(peer: TestServer, box: StorageBox): void {
    const r = peer.exec([
        "set -e",
        `useradd -m -s /bin/sh ${box.user}`,
        `echo '${box.user}:${box.password}' | chpasswd`,
        `printf '%s\\n' 'Port 22' 'Port 23' 'Match User ${box.user}' '    PasswordAuthentication yes' '    ForceCommand internal-sftp' ` +
        "'    AllowTcpForwarding no' > /etc/ssh/sshd_config.d/storagebox.conf",
        "sshd -t && systemctl restart ssh",
    ].join("\n"));
    if (r.code !== 0) throw new Error(`storage box set-up failed: ${r.stdout}${r.stderr}`);
}

export interface DataContext {
    readonly checks: Checks;
    readonly peer: TestServer;
    readonly box: StorageBox;
    readonly backupSshPublicKey: string;
    readonly passwords: Record<string, string>;
    /** CA file that verifies the server's certificates. */
    readonly root: string;
    readonly serverIp: string;
    readonly adminUser: string;
    readonly work: string;
    readonly bench: boolean;
    /** Boots a new server at the same addresses, on the given volume image (made empty if it does not exist). */
    readonly boot: (dir: string, volumeImage: string) => Promise<TestServer>;
    readonly apply: (steps: Step[], label: string) => Map<string, { ms: number; out: string }>;
    /** Runs a step's delete command on the server, as the provider does before the server goes. */
    readonly remove: (step: Step) => Result;
}

const MAILDIR = "/srv/mail/example.test";

/** What must survive a server: files found relative to the volume's root, counted and hashed. */
const FINGERPRINTS: Record<string, string> = {
    "mail messages": "find mail -type f \\( -path '*/cur/*' -o -path '*/new/*' \\)",
    "Sieve scripts": "find mail -type f -name '*.sieve'",
    "XMPP rosters and archives": "find prosody -type f \\( -path '*/roster/*' -o -path '*archive*' \\)",
    // The releases; the live one is a symlink to an absolute /srv path, which this machine cannot follow.
    "site releases": "find www -type f",
    "site repository": "find git/site.git/refs git/site.git/objects -type f",
    "certificate and ACME account": "find tls/letsencrypt/archive tls/letsencrypt/accounts -type f",
    "spam filter's learned data": "find rspamd/redis -type f -name '*.rdb'",
    "webmail's settings and contacts": "find webmail -type f -name 'roundcube.db'",
};

/** Per kind of data: every file's "hash  path" line, sorted. */
type Fingerprint = Record<string, string[]>;

function fingerprint(exec: (command: string) => { stdout: string }, root: string): Fingerprint {
    const out: Fingerprint = {};
    for (const [what, find] of Object.entries(FINGERPRINTS)) {
        out[what] = exec(`cd ${root} && ${find} -print0 | sort -z | xargs -0 -r sha256sum`).stdout.split("\n").filter(Boolean);
    }
    return out;
}

const summary = (files: string[]) =>
    `${files.length} files, ${createHash("sha256").update(files.join("\n")).digest("hex").slice(0, 16)}`;

/** The volume as the old server left it: its image, mounted read-only on this machine once that server is off. */
function withVolume<T>(image: string, read: (mnt: string) => T): T {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-e2e-volume-"));
    must(`mount -o ro,loop ${image} ${mnt}`);
    try {
        return read(mnt);
    } finally {
        sh(`umount ${mnt} && rmdir ${mnt}`);
    }
}

const volumeFingerprint = (image: string) => withVolume(image, mnt => fingerprint(sh, mnt));

/**
 * Places every server rebuilds for itself; the inventory leaves them out, and everything else a server
 * holds must come through a replacement without anyone naming it. README's "What survives a
 * replacement" is this list in prose.
 */
export const REBUILT: Record<string, readonly string[]> = {
    "installed by packages, or written by cloud-init and the steps": ["usr", "bin", "sbin", "lib", "lib64", "boot", "etc",
        "var/lib/dpkg", "var/lib/apt", "var/lib/ucf", "var/lib/systemd", "var/lib/cloud", "var/lib/pam", "var/lib/python",
        "var/lib/shells.state", "var/.updated", "var/www/html", "var/lib/selfhost/files", "var/lib/selfhost/pending",
        // coturn's database: the TURN secret the xmpp step writes from the stack's.
        "var/lib/turn",
        // root's dotfiles and the key cloud-init puts there (root cannot log in); the deploy user, made at first boot.
        "root", "home/selfhost"],
    "caches, logs and runtime state": ["proc", "sys", "dev", "run", "tmp", "var/tmp", "var/cache", "var/log",
        // rspamd's compiled expressions and counters' graph; the MTA-STS policy cache; Postfix's lock and seed;
        // compiled Sieve scripts; fail2ban's current bans (they expire); what the steps derive (web statistics,
        // the last backup's time, the last status report: a new server's first one is mailed as news).
        "var/lib/rspamd", "var/lib/mta-sts", "var/lib/postfix", "var/lib/dovecot", "var/lib/fail2ban",
        "var/lib/selfhost/webstats", "var/lib/selfhost/backup", "var/lib/selfhost/status",
        // unbound's copy of the root's trust anchor, with its RFC 5011 timestamps: each host keeps its own.
        "var/lib/unbound",
        // The packages' own first-start data: redis and Prosody keep theirs on the volume.
        "var/lib/redis", "var/lib/prosody",
        // Roundcube's uploads in progress (its database is on the volume).
        "var/lib/roundcube/temp",
        // Debian's daily copies of the package database (dpkg-db-backup.timer, at midnight): each server's own.
        "var/backups"],
    "the outgoing queue, which the handover carries on its own (checked below)": ["var/spool/postfix", QUEUE_CARRY.slice(1)],
    "the volume's own": ["srv/lost+found"],
};

/** Every file and symlink a server holds outside REBUILT: path → "type owner:group mode content-hash-or-target". */
type Inventory = Map<string, string>;

/**
 * An inventory of a root directory and a volume (`exec` runs commands where they are). Owners by name,
 * from that server's own passwd and group: a uid may differ between servers, a name must not.
 */
function inventory(exec: (command: string) => string, root: string, volume: string): Inventory {
    const names = (file: string) => new Map(exec(`cat ${root}/etc/${file}`).split("\n").map(l => l.split(":")).map(f => [f[2], f[0]]));
    const [users, groups] = [names("passwd"), names("group")];
    const out: Inventory = new Map();
    for (const [dir, prefix] of [[root, ""], [volume, "srv/"]]) {
        const prune = Object.values(REBUILT).flat().filter(p => prefix ? p.startsWith(prefix) : !p.startsWith("srv/"))
            .map(p => `-path ./${p.slice(prefix.length)}`).join(" -o ");
        const find = `cd ${dir} && find . -xdev \\( ${prune} \\) -prune -o`;
        const hashes = new Map(exec(`${find} -type f -print0 | xargs -0 -r sha256sum`).split("\n").filter(Boolean)
            .map(l => [l.slice(66), l.slice(0, 16)]));
        for (const line of exec(`${find} \\( -type f -o -type l \\) -printf '%y %U %G %m %l\\t%p\\n'`).split("\n").filter(Boolean)) {
            const [meta, file] = line.split("\t");
            const [type, uid, gid, mode, target] = meta.split(" ");
            out.set(prefix + file.slice(2), `${type} ${users.get(uid) ?? uid}:${groups.get(gid) ?? gid} ${mode} ${type === "l" ? target : hashes.get(file)}`);
        }
    }
    return out;
}

/** The inventory of a server that has stopped: its root directory and its volume's image, read on this machine. */
function stoppedInventory(server: TestServer, image: string): Inventory {
    return withVolume(image, mnt => inventory(command => sh(command).stdout, server.root, mnt));
}

const liveInventory = (server: TestServer) => inventory(command => server.exec(command).stdout, "/", "/srv");

function sameInventory(checks: Checks, what: string, before: Inventory, after: Inventory): void {
    const lost = [...before].filter(([file, entry]) => after.get(file) !== entry)
        .map(([file, entry]) => `  ${file}: ${entry} → ${after.get(file) ?? "missing"}`);
    checks.check(`${what}: every file the old server held outside the rebuilt places (${before.size}) is on the new one, identical (content, owner, mode)`,
        () => before.size > 0 && lost.length === 0 ? undefined : [`${lost.length} of ${before.size} differ:`, ...lost.slice(0, 15)].join("\n"));
}

function sameData(checks: Checks, what: string, before: Fingerprint, server: TestServer): void {
    const after = fingerprint(cmd => server.exec(cmd), "/srv");
    for (const key of Object.keys(FINGERPRINTS)) {
        checks.check(`${what}: ${key} byte-identical (${summary(before[key])})`, () => {
            if (before[key].length > 0 && summary(before[key]) === summary(after[key])) return undefined;
            // Which files differ, by name: a hash alone does not say what went wrong.
            const [was, is] = [new Set(before[key]), new Set(after[key])];
            const gone = before[key].filter(f => !is.has(f)).slice(0, 5).map(f => `  - ${f}`);
            const added = after[key].filter(f => !was.has(f)).slice(0, 5).map(f => `  + ${f}`);
            return [`${summary(before[key])} → ${summary(after[key])}`, ...gone, ...added].join("\n");
        });
    }
}

export async function dataChecks(c: DataContext, server: TestServer, steps: Step[], moved: Step[]): Promise<[string, string][]> {
    const { checks, peer, box } = c;
    const figures: [string, string][] = [];
    const client = (argv: string[]) => run(argv, { ns: NET.client.ns, timeoutMs: 60_000 });
    /** Polls until the probe holds, up to `seconds`; says whether it did. */
    const until = async (seconds: number, probe: () => boolean): Promise<boolean> => {
        for (let i = 0; i < seconds * 2; i++) {
            if (probe()) return true;
            await new Promise(r => setTimeout(r, 500));
        }
        return false;
    };
    const send = (subject: string, from = "bob", to = "alice@example.test") => client(["swaks", "--server", c.serverIp, "--port", "587",
        "--tls", "--tls-ca-path", c.root, "--tls-sni", "mail.example.test", "--helo", "client.elsewhere.test", "--auth", "PLAIN",
        "--auth-user", `${from}@example.test`, "--auth-password", c.passwords[from], "--from", `${from}@example.test`, "--to", to,
        "--header", `Subject: ${subject}`, "--body", `kept across servers: ${subject}`]);
    const arrived = (s: TestServer, subject: string) =>
        until(30, () => s.exec(`grep -rlqF 'Subject: ${subject}' ${MAILDIR}/alice/Maildir/new ${MAILDIR}/alice/Maildir/cur`).code === 0);
    // Snapshot ids in the repository (the retention keeps one a day, so a new snapshot replaces today's).
    const snapshotsOnBox = () => peer.exec(`ls /home/${box.user}/restic/snapshots 2>/dev/null`).stdout.trim().split("\n").filter(Boolean).join(" ");
    const servedCert = () => sh(`openssl s_client -connect ${c.serverIp}:443 -servername mail.example.test </dev/null 2>/dev/null | ` +
        "openssl x509 -noout -fingerprint -sha256", { ns: NET.client.ns }).stdout.trim();

    // What a handover carries in the queue must be only what this phase puts there.
    const drained = await until(60, () => server.exec("postqueue -j").stdout.trim() === "");
    checks.check("the mail queue is empty: everything the earlier phases sent has been delivered", () =>
        drained ? undefined : server.exec("postqueue -p | tail -12").stdout);
    checks.check("first boot created the repository on the Storage Box, through its sub-account, which holds just the stack's backup key", () => {
        const r = peer.exec(`test -f /home/${box.user}/restic/config && cat /home/${box.user}/.ssh/authorized_keys`);
        return r.code === 0 && r.stdout.trim() === c.backupSshPublicKey ? undefined : `exit ${r.code}: ${r.stdout}${r.stderr}`;
    });
    checks.check("the services that keep data on the volume wait for its mount", () => {
        const units = "postfix dovecot redis-server nginx prosody";
        const r = server.exec(`systemctl show -p RequiresMountsFor ${units}; ` +
            `for u in ${units}; do systemctl cat $u | grep -qx 'ConditionPathIsMountPoint=/srv' && echo "$u: only on the mount point"; done`);
        return (r.stdout.match(/^RequiresMountsFor=.*\/srv/gm) ?? []).length === 5 && (r.stdout.match(/only on the mount point$/gm) ?? []).length === 5
            ? undefined : r.stdout;
    });
    checks.check("backups and repository checks are scheduled", () => {
        const r = server.exec("systemctl is-enabled selfhost-backup.timer selfhost-backup-check.timer && systemctl show -p TimersCalendar selfhost-backup.timer");
        return r.code === 0 && /03:30:00/.test(r.stdout) ? undefined : r.stdout + r.stderr;
    });

    // Counted from the day the timer was installed, not the uptime (in a container, the host's).
    const noBackupYet = (age: string) => server.exec(`timer=$(systemctl show -P FragmentPath selfhost-backup.timer); ` +
        `touch -r "$timer" /tmp/timer-time && touch -d '${age}' "$timer" && /usr/local/sbin/selfhost-status | grep 'last backup'; ` +
        `touch -r /tmp/timer-time "$timer"`).stdout;
    checks.check("no backup yet: fine on the day backups were installed, an error a day later", () => {
        const fresh = noBackupYet("-1 hour"), overdue = noBackupYet("-27 hours");
        return /^ok\tbackup\tlast backup\tnone yet/.test(fresh) && /^error\tbackup\tlast backup\tnone yet \(backups on for 27 hours/.test(overdue)
            ? undefined : fresh + overdue;
    });

    console.log("backups: one now, then one that cannot open the repository");
    const backup = server.exec("systemctl start selfhost-backup.service && cat /var/lib/selfhost/backup/last-success && selfhost-backup list");
    const firstSnapshot = snapshotsOnBox();
    checks.check("a backup runs: snapshot on the Storage Box, time of the last success recorded", () =>
        backup.code === 0 && firstSnapshot ? undefined : `exit ${backup.code}, snapshots: ${firstSnapshot}: ${backup.stdout}${backup.stderr}`);
    const webmailCopy = () => server.exec(`sqlite3 -readonly ${WEBMAIL_DB}.snapshot 'PRAGMA integrity_check' 'SELECT username FROM users'`).stdout.trim();
    checks.check("the scheduled backup took a whole copy of the webmail's database first (SQLite's backup), with alice's account in it", () =>
        webmailCopy() === "ok\nalice@example.test" ? undefined : webmailCopy());
    // A live file torn mid-write (what a file-level snapshot can catch): the webmail step puts the copy back.
    server.exec(`dd if=/dev/urandom of=${WEBMAIL_DB} bs=4096 seek=1 count=2 conv=notrunc status=none`);
    const mended = c.apply(steps.filter(s => s.name === "webmail"), "torn webmail database").get("webmail")!.out;
    checks.check("a torn webmail database is replaced by its last consistent copy when the webmail step runs", () => {
        const now = server.exec(`sqlite3 -readonly ${WEBMAIL_DB} 'PRAGMA integrity_check' 'SELECT username FROM users'`).stdout.trim();
        return /the webmail database was torn; its last consistent copy is back/.test(mended) && now === "ok\nalice@example.test" ? undefined : `${now}\n${mended.slice(-400)}`;
    });
    checks.check("the backup runs confined: systemd rates its exposure low (no capability but reading files, a read-only system)", () => {
        const exposure = server.exposure("selfhost-backup.service");
        return exposure <= 4 ? undefined : `exposure ${exposure}`;
    });
    const verified = server.exec("systemctl start selfhost-backup-check.service && journalctl -u selfhost-backup-check -o cat | grep 'no errors were found'");
    checks.check("restic check of the repository (structure and a tenth of the data) is clean", () =>
        verified.code === 0 && /no errors were found/.test(verified.stdout) ? undefined : verified.stdout + verified.stderr);
    server.exec("printf wrong-password > /etc/selfhost/backup/password");
    const broken = server.exec("systemctl start selfhost-backup.service");
    checks.check("a wrong repository password fails the backup, saying so", () => {
        const log = server.exec("journalctl -u selfhost-backup -o cat | tail -5").stdout;
        return broken.code !== 0 && /does not open with the stack's password/.test(log) ? undefined : `exit ${broken.code}: ${log}`;
    });
    const mailed = await until(30, () =>
        server.exec(`grep -rlqF 'Subject: selfhost: selfhost-backup.service failed' ${MAILDIR}/alice/Maildir/new`).code === 0);
    checks.check("the failure is mailed to the admin, with the log", () => mailed ? undefined : "no failure mail in the admin's inbox");
    // A replacement whose last snapshot fails: the server is not going, so it keeps serving.
    const failedHandover = c.remove(steps.find(s => s.name === "base")!);
    checks.check("a handover whose snapshot fails stops the replacement and leaves mail running on the mounted volume", () => {
        const smtp = sh(`nc -z -w 3 ${c.serverIp} 25`, { ns: NET.client.ns }).code === 0;
        const mounted = server.exec("mountpoint -q /srv").code === 0;
        const active = server.exec("systemctl is-active postfix dovecot nginx prosody").stdout.trim().split("\n");
        return failedHandover.code !== 0 && /the handover failed: this server keeps running/.test(failedHandover.stderr + failedHandover.stdout)
            && smtp && mounted && active.every(a => a === "active") ? undefined
            : `exit ${failedHandover.code}, port 25 open: ${smtp}, /srv mounted: ${mounted}, units: ${active}\n${failedHandover.stdout}${failedHandover.stderr}`;
    });
    c.apply(steps.filter(s => s.name === "backup"), "re-apply");
    checks.check("re-running the backup step puts the stack's password back and backups work again", () => {
        const r = server.exec("systemctl start selfhost-backup.service");
        return r.code === 0 && snapshotsOnBox() && snapshotsOnBox() !== firstSnapshot ? undefined : `exit ${r.code}, snapshots ${firstSnapshot} → ${snapshotsOnBox()}`;
    });

    /** What Pulumi does to a server it replaces: the steps' delete commands (base's is the handover), then a power-off. */
    const replace = (old: TestServer, label: string) => {
        const snapshots = snapshotsOnBox();
        const handover = c.remove(steps.find(s => s.name === "base")!);
        const mounted = old.exec("mountpoint -q /srv").code === 0;
        const smtp = sh(`nc -z -w 3 ${c.serverIp} 25`, { ns: NET.client.ns }).code === 0;
        checks.check(`${label}: the handover stopped mail, took a last snapshot and unmounted the volume`, () =>
            handover.code === 0 && snapshotsOnBox() !== snapshots && !mounted && !smtp ? undefined
                : `exit ${handover.code}, snapshots ${snapshots} → ${snapshotsOnBox()}, /srv mounted: ${mounted}, port 25 open: ${smtp}\n${handover.stdout}${handover.stderr}`);
        old.stop();
    };

    console.log("the same volume on a new server (type or image change, or destroy and recreate)");
    const volume = path.join(c.work, "server", "volume.img");
    const certBefore = servedCert();
    const dkimKey = (s: TestServer) => s.exec("sha256sum < /etc/rspamd/selfhost/dkim.key").stdout.trim();
    const dkimBefore = dkimKey(server);
    // Files nobody names anywhere: the inventory must find them by itself.
    server.exec(`runuser -u ${c.adminUser} -- sh -c 'mkdir -p ~/notes && echo written by hand > ~/notes/unnamed.txt && chmod 600 ~/notes/unnamed.txt'`);
    const userPage = () => sh(`curl -sS --cacert ${c.root} --resolve example.test:443:${c.serverIp} https://example.test/~${c.adminUser}/`, { ns: NET.client.ns }).stdout;
    const pageBefore = userPage();
    replace(server, "same volume");
    const before = volumeFingerprint(volume);
    const heldBefore = stoppedInventory(server, volume);
    const second = await c.boot("server-2", volume);
    const recreated = c.apply(steps, "recreate");
    checks.check("the new server found its volume and restored nothing", () =>
        /restoring/.test(recreated.get("backup")!.out) ? recreated.get("backup")!.out : undefined);
    sameData(checks, "same volume", before, second);
    sameInventory(checks, "same volume", heldBefore, liveInventory(second));
    checks.check("same volume: the same DKIM key signs (it comes from the stack, not the server)", () =>
        dkimBefore && dkimKey(second) === dkimBefore ? undefined : `${dkimBefore} → ${dkimKey(second)}`);
    checks.check("same volume: the same certificate is served, nothing was re-issued", () => {
        const after = servedCert();
        return after && after === certBefore ? undefined : `${certBefore} → ${after}`;
    });

    console.log("a move: the new server gets a new, empty volume; the old one shuts down cleanly first");
    send("arrived after the last scheduled backup");
    const late = await arrived(second, "arrived after the last scheduled backup");
    checks.check("a message arrives after the last scheduled backup", () => late ? undefined : "not delivered");
    // Outgoing mail the peer cannot take yet: it waits in the old server's queue at the handover.
    const peerAddress = `${PEER_USER}@peer.test`;
    peer.exec("systemctl stop postfix");
    send("queued at the handover", "alice", peerAddress);
    const queued = await until(60, () => second.exec("postqueue -j").stdout.includes(peerAddress));
    checks.check("a message to the peer, which refuses mail for now, waits in the queue", () => queued ? undefined : second.exec("postqueue -p").stdout);
    const adminUid = second.exec(`id -u ${c.adminUser}`).stdout.trim();
    replace(second, "move");
    const beforeMove = volumeFingerprint(volume);
    const heldBeforeMove = stoppedInventory(second, volume);
    const third = await c.boot("server-3", path.join(c.work, "server-3", "volume.img"));
    // Another image may number its users otherwise: the admin's old uid is somebody else's here.
    third.exec(`useradd --uid ${adminUid} --no-create-home somebody-else`);
    const movedRun = c.apply(moved, "move");
    const restoreLine = movedRun.get("backup")!.out.split("\n").find(l => /restored snapshot/.test(l)) ?? "";
    checks.check("restore-on-create: the backup step restored the latest snapshot, before the mail step ran", () =>
        restoreLine ? undefined : movedRun.get("backup")!.out);
    sameData(checks, "moved", beforeMove, third);
    sameInventory(checks, "moved (restored from the backup onto an empty volume)", heldBeforeMove, liveInventory(third));
    checks.check(`moved: the admin's files are the admin's, under a new uid (${adminUid} → ${third.exec(`id -u ${c.adminUser}`).stdout.trim()}); the site's are the push login's`, () => {
        const r = third.exec(`stat -c %U ~${c.adminUser}/notes/unnamed.txt && stat -c %U /srv/www/releases/* | sort -u && find /srv -uid ${adminUid} | head -3`);
        return r.code === 0 && r.stdout.trim() === `${c.adminUser}\ngit` ? undefined : r.stdout + r.stderr;
    });
    checks.check("moved: the admin's ~ page is served, as on the first server", () => {
        const page = userPage();
        return pageBefore.includes("the admin home page") && page === pageBefore ? undefined : `before: ${pageBefore.slice(0, 80)}; now: ${page.slice(0, 200)}`;
    });
    checks.check("moved: the mail that arrived after the last scheduled backup is there (the handover's snapshot)", () =>
        third.exec(`grep -rlqF 'Subject: arrived after the last scheduled backup' ${MAILDIR}/alice/Maildir`).code === 0 ? undefined : "missing");
    checks.check("moved: the outgoing message queued at the handover is in the new server's queue", () =>
        /requeued the previous server's outgoing mail: 1 message/.test(movedRun.get("mail")!.out) && third.exec("postqueue -j").stdout.includes(peerAddress)
            ? undefined : `${movedRun.get("mail")!.out.split("\n").slice(-3).join("\n")}\n${third.exec("postqueue -p").stdout}`);
    peer.exec("systemctl start postfix");
    third.exec("postqueue -f");
    const handedOn = await until(90, () => peer.exec(`grep -c 'Subject: queued at the handover' /var/mail/${PEER_USER}`).stdout.trim() === "1");
    checks.check("moved: once the peer takes mail again, that message reaches it, once", () => handedOn ? undefined : third.exec("postqueue -p").stdout);
    checks.check("moved: the same certificate is served, nothing was re-issued", () => {
        const after = servedCert();
        return after && after === certBefore ? undefined : `${certBefore} → ${after}`;
    });
    send("after the move");
    const afterMove = await arrived(third, "after the move");
    // alice's INBOX over IMAP, one "Subject:" line a message (imap.py reads the password on stdin).
    const aliceInbox = () => run(["python3", path.join(__dirname, "imap.py"), "mail.example.test", c.root, "alice@example.test", "list", "INBOX"],
        { ns: NET.client.ns, input: c.passwords.alice, timeoutMs: 60_000 });
    checks.check("moved: new mail is delivered and the old password still logs in over IMAP", () => {
        const r = aliceInbox();
        return afterMove && r.stdout.includes("Subject: arrived after the last scheduled backup") ? undefined : `delivered: ${afterMove}; ${r.stdout}${r.stderr}`;
    });

    // A message deleted by mistake comes back from the last snapshot into the live mailbox, and only it.
    // The INBOX's subjects, sorted (a message put back gets a new UID, so a new place in the list).
    const imapInbox = () => aliceInbox().stdout.split("\n").sort().join("\n");
    const lost = "Subject: arrived after the last scheduled backup";
    const inboxBefore = imapInbox();
    third.exec(`grep -rlF '${lost}' ${MAILDIR}/alice/Maildir/cur ${MAILDIR}/alice/Maildir/new | xargs -r rm -f`);
    const gone = !imapInbox().includes(lost);
    // Today's last snapshot (the handover's), INBOX only: restic's own snapshot list picks it.
    const putBack = third.exec("selfhost-backup restore-mailbox alice@example.test $(date -u +%F) INBOX");
    checks.check("a message deleted by mistake is put back from today's last snapshot into the live INBOX (vmail's, seen over IMAP), nothing else touched", () => {
        const after = imapInbox();
        const owners = third.exec(`find ${MAILDIR}/alice -not -user vmail | head -3`).stdout.trim();
        return gone && putBack.code === 0 && /put back 1 message\(s\)/.test(putBack.stdout) && after === inboxBefore && !owners ? undefined
            : `deleted: ${gone}; ${putBack.stdout}${putBack.stderr}; same INBOX as before: ${after === inboxBefore}; not vmail's: ${owners}`;
    });

    if (c.bench) figures.push(...backupBench(third, () => Number(peer.exec(`du -sb /home/${box.user}/restic | cut -f1`).stdout.split("\t")[0])));
    return figures;
}

/** Backup and restore of a synthetic 10 000-message mailbox: time and repository growth per 1 000 messages. */
function backupBench(server: TestServer, repoBytes: () => number): [string, string][] {
    const N = 10_000;
    const dir = `${MAILDIR}/bench/Maildir/cur`;
    // 3.3 KB each, incompressible (base64 of random bytes): the worst case for the repository's size.
    server.exec(`install -d -o vmail -g vmail ${dir} && cd ${dir} && for i in $(seq ${N}); do ` +
        `{ printf 'From: a@example.net\\nTo: bench@example.test\\nSubject: bench %s\\n\\n' $i; head -c 2400 /dev/urandom | base64; } > $i.bench:2,S; done && chown -R vmail:vmail ${dir}`);
    const bytesBefore = repoBytes();
    const backup = server.exec("selfhost-backup run");
    const grew = repoBytes() - bytesBefore;
    const restore = server.exec(`rm -rf /tmp/restore && selfhost-backup restore /tmp/restore ${dir}`);
    const same = server.exec(`diff -r ${dir} /tmp/restore${dir} >/dev/null && echo same`).stdout.trim();
    const mailBytes = Number(server.exec(`du -sb ${dir} | cut -f1`).stdout.trim());
    const per = (x: number) => (x / (N / 1000));
    return [
        [`backup of ${N} new messages (${(mailBytes / 1e6).toFixed(0)} MB), s`, (backup.ms / 1000).toFixed(1)],
        ["  per 1 000 messages, s", per(backup.ms / 1000).toFixed(2)],
        [`restore of those ${N} messages, s${same === "same" ? " (byte-identical)" : " (DIFFERENT!)"}`, (restore.ms / 1000).toFixed(1)],
        ["  per 1 000 messages, s", per(restore.ms / 1000).toFixed(2)],
        ["repository growth, MB", (grew / 1e6).toFixed(1)],
        ["  per 1 000 messages, MB", per(grew / 1e6).toFixed(2)],
    ];
}
