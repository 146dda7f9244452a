import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import { runProgram, isSecret, unsecret, scriptOf, stepFiles } from "./program";
import { baseConfig } from "./fixtures";
import { sftpLogin, storageBoxLocation } from "../components/backup";

const stdinOf = (step: { inputs: Record<string, any> }) => Object.fromEntries(unsecret<string>(step.inputs.stdin).trim().split("\n")
    .map(l => l.split(" ")).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));

describe("backup", () => {
    it("makes a protected Storage Box in another datacentre and a sub-account confined to this server's directory", async () => {
        const run = await runProgram({ ...baseConfig(), location: "fsn1" });
        const box = run.one("hcloud:index/storageBox:StorageBox");
        assert.deepEqual([box.inputs.location, box.inputs.storageBoxType, box.inputs.deleteProtection], ["hel1", "bx11", true]);
        // Only the sub-account logs in: the main account reaches every sub-account's files.
        assert.deepEqual(box.inputs.accessSettings, { sshEnabled: false, reachableExternally: false, sambaEnabled: false, webdavEnabled: false, zfsEnabled: false });
        assert.deepEqual(box.inputs.snapshotPlan, { hour: 4, minute: 0, maxSnapshots: 10 }, "history the server cannot delete");
        const sub = run.one("hcloud:index/storageBoxSubaccount:StorageBoxSubaccount");
        assert.equal(sub.inputs.homeDirectory, "selfhost/mail.example.org");
        assert.equal(run.outputs.backupRepository, `sftp://${sub.state.username}@${sub.state.server}:23/restic`);
        assert.equal(storageBoxLocation("hel1"), "fsn1");
    });

    it("exports the repository password as a secret and sends it, the key and the sub-account password on stdin only", async () => {
        const run = await runProgram(baseConfig());
        const step = run.one("command:remote:Command", "backup");
        const create = scriptOf(unsecret(step.inputs.create));
        const password: string = run.outputs.backupPassword;
        assert.equal(password.length, 40);
        const subPassword = run.one("random:index/randomPassword:RandomPassword", "storagebox-subaccount-password").state.result as string;
        const key = run.one("tls:index/privateKey:PrivateKey", "backup-key").state.privateKeyOpenssh as string;
        for (const secret of [password, subPassword, key.split("\n")[1]]) assert.ok(!create.includes(secret));
        assert.ok(isSecret(step.inputs.stdin));
        const stdin = stdinOf(step);
        assert.deepEqual([stdin.storageBoxPassword, stdin.s0, stdin.s1], [subPassword, password, key]);
        assert.match(create, /put_secret s0 '\/etc\/selfhost\/backup\/password' 0600/);
        assert.match(create, /STORAGE_BOX_PASSWORD_FILE="\$SECRETS\/storageBoxPassword" \/usr\/local\/sbin\/selfhost-backup open/);
        assert.equal(run.outputs.backupSshPublicKey, run.one("tls:index/privateKey:PrivateKey", "backup-key").state.publicKeyOpenssh.trim());
    });

    it("schedules backups and checks with the configured retention, and mails the admin when one fails", async () => {
        const run = await runProgram({ ...baseConfig(), backupSchedule: "*-*-* 01:15:00", backupKeepDaily: 3, backupKeepWeekly: 2, backupKeepMonthly: 12 });
        const create = scriptOf(unsecret(run.one("command:remote:Command", "backup").inputs.create));
        assert.match(create, /^OnCalendar=\*-\*-\* 01:15:00$/m);
        assert.match(create, /--keep-daily 3 --keep-weekly 2 --keep-monthly 12 --prune/);
        assert.match(create, /check systemd-analyze calendar '\*-\*-\* 01:15:00'/);
        assert.equal(create.match(/^OnFailure=selfhost-backup-failed@%n\.service$/gm)?.length, 2);
        assert.match(create, /\/usr\/sbin\/sendmail root/);
        assert.match(create, /restic backup --quiet \/srv --one-file-system/);
        const base = scriptOf(unsecret(run.one("command:remote:Command", "base").inputs.create));
        for (const unit of ["dovecot", "redis-server", "nginx", "prosody"]) {
            assert.match(base, new RegExp(`put '/etc/systemd/system/${unit}\\.service\\.d/selfhost-data\\.conf'[^\\n]*\\n[\\s\\S]*?RequiresMountsFor=/srv`));
        }
        assert.match(base, /ensure_packages [^\n]*\brestic\b[^\n]*\bsshpass\b/);
    });

    it("hands the volume over when the server goes: mail stopped, the outgoing queue and a last snapshot onto it, /srv unmounted (base's delete, run last)", async () => {
        const run = await runProgram(baseConfig());
        const steps = run.all("command:remote:Command").filter(s => s.inputs.create !== undefined);
        // The webmail's only stops its PHP (it runs first: it depends on base).
        assert.deepEqual(steps.filter(s => s.inputs.delete).map(s => s.name), ["base", "webmail"]);
        const handover = scriptOf(unsecret<string>(run.one("command:remote:Command", "base").inputs.delete).replace("selfhost-step-delete", "selfhost-step"));
        const lines = handover.split("\n");
        assert.deepEqual(lines.filter(l => !l.startsWith("trap ")), [
            "set -euo pipefail",
            // sudo's PAM session would give root's login umask (027); the carried queue keeps its modes anyway.
            "umask 022",
            "systemctl stop nginx postfix dovecot redis-server prosody roundcube || true",
            "q=/var/spool/postfix; if mountpoint -q /srv && [ -n \"$(cd $q && find incoming active deferred hold maildrop -type f -print -quit)\" ]; " +
                "then mkdir -p /srv/selfhost/postfix-queue && (cd $q && cp -a incoming active deferred hold maildrop /srv/selfhost/postfix-queue/); fi",
            "if mountpoint -q /srv && systemctl is-enabled --quiet selfhost-backup.timer 2>/dev/null; then /usr/local/sbin/selfhost-backup run; fi",
            "loginctl terminate-user admin 2>/dev/null || true",
            "for _ in $(seq 10); do mountpoint -q /srv || break; umount /srv 2>/dev/null || sleep 1; done",
            "! mountpoint -q /srv || { echo \"/srv is still in use: $(fuser -vm /srv 2>&1 | tail -n +2 | head -5)\" >&2; false; }",
        ]);
        // A failed snapshot: the server is not going, so the volume and every service come back.
        const stubs = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-handover-"));
        const stub = (name: string, body: string) => fs.writeFileSync(path.join(stubs, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
        stub("systemctl", `echo "systemctl $*" >> ${stubs}/log; [ "$1" != is-enabled ]`);
        stub("mountpoint", `[ -e ${stubs}/mounted ]`);
        stub("mount", `echo "mount $*" >> ${stubs}/log; touch ${stubs}/mounted`);
        stub("umount", `echo "umount $*" >> ${stubs}/log; rm -f ${stubs}/mounted`);
        stub("loginctl", `echo "loginctl $*" >> ${stubs}/log`);
        const runHandover = (script: string) => {
            fs.writeFileSync(path.join(stubs, "mounted"), "");
            fs.rmSync(path.join(stubs, "log"), { force: true });
            const r = spawnSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${stubs}:${process.env.PATH}` } });
            return { ...r, log: fs.readFileSync(path.join(stubs, "log"), "utf8").trim().split("\n") };
        };
        // Going: the admin's sessions (their home is on the volume) end, and the volume leaves unmounted.
        const going = runHandover(handover.replace("/usr/local/sbin/selfhost-backup run", "true"));
        assert.equal(going.status, 0, going.stderr);
        assert.deepEqual(going.log.slice(-2), ["loginctl terminate-user admin", "umount /srv"]);
        const failing = handover.replace("/usr/local/sbin/selfhost-backup run", "false").replace("systemctl is-enabled --quiet", "true ||");
        const r = runHandover(failing);
        fs.rmSync(stubs, { recursive: true });
        assert.notEqual(r.status, 0, "the failure stops the replacement");
        assert.match(r.stderr, /the handover failed: this server keeps running/);
        assert.deepEqual(r.log, ["systemctl stop nginx postfix dovecot redis-server prosody roundcube", "systemctl start nginx postfix dovecot redis-server prosody roundcube"]);
        // Every other step goes first: each depends, directly or not, on base.
        assert.ok(run.one("command:remote:Command", "backup").dependencies.some(d => d.endsWith("Command::base")));
    });

    it("restore-mailbox puts back only the messages the mailbox lost, in their folders (or one folder, from a day's snapshot), and leaves nothing behind", async () => {
        const run = await runProgram(baseConfig());
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-restore-mailbox-"));
        const script = stepFiles(run, "backup").get("/usr/local/sbin/selfhost-backup")!.content.replaceAll("/srv/mail", `${dir}/mail`);
        const maildir = `${dir}/mail/example.org/alice/Maildir`;
        fs.mkdirSync(`${maildir}/cur`, { recursive: true });
        fs.writeFileSync(`${maildir}/cur/1.kept:2,S`, "kept, read since the snapshot");
        const stubs = `${dir}/bin`;
        fs.mkdirSync(stubs);
        const stub = (name: string, body: string) => fs.writeFileSync(path.join(stubs, name), `#!/bin/bash
${body}
`, { mode: 0o755 });
        // The snapshots (oldest first, as --compact lists them); a restore writes what is under --include: the kept
        // message (other flags then), one lost from INBOX and one from Junk, and records which snapshot it read.
        stub("restic", [
            `if [[ " $* " == *" snapshots "* ]]; then printf 'ID        Time                 Host  Tags\n-----\n1111aaaa  2026-11-30 03:30:00  mail  selfhost\n2222bbbb  2026-12-01 03:30:00  mail  selfhost\n3333cccc  2026-12-02 03:30:00  mail  selfhost\n'; exit 0; fi`,
            `[[ " $* " == *" restore "* ]] || exit 0`,
            `printf '%s\n' "$@" | grep -A1 -x -- restore | tail -1 > ${dir}/snapshot`,
            `t=$(printf '%s\n' "$@" | grep -A1 -x -- --target | tail -1)${""}; i=$(printf '%s\n' "$@" | grep -A1 -x -- --include | tail -1)`,
            `put() { [[ $1 == "$i"* ]] || return 0; mkdir -p "$t$(dirname "$1")"; echo "$2" > "$t$1"; }`,
            `put "${maildir}/cur/1.kept:2," old; put "${maildir}/cur/2.lost:2,S" lost; put "${maildir}/.Junk/cur/3.spam:2," spam`,
        ].join("\n"));
        stub("install", `mkdir -p "$(dirname "\${@: -1}")" && cp "\${@: -2:1}" "\${@: -1}"`);
        stub("chown", "true");
        stub("doveadm", `echo "doveadm $*" >> ${dir}/doveadm.log`);
        const before = fs.readdirSync("/var/tmp").filter(f => f.startsWith("selfhost-restore.")).length;
        const r = spawnSync("bash", ["-c", script, "selfhost-backup", "restore-mailbox", "alice@example.org"],
            { encoding: "utf8", env: { ...process.env, PATH: `${stubs}:${process.env.PATH}` } });
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /put back 2 message\(s\) into alice@example.org's mailbox from snapshot latest/);
        assert.equal(fs.readFileSync(`${maildir}/cur/1.kept:2,S`, "utf8"), "kept, read since the snapshot", "nothing in the mailbox is replaced");
        assert.deepEqual(fs.readdirSync(`${maildir}/cur`).sort(), ["1.kept:2,S", "2.lost:2,S"]);
        assert.deepEqual(fs.readdirSync(`${maildir}/.Junk/cur`), ["3.spam:2,"]);
        assert.equal(fs.readFileSync(`${dir}/doveadm.log`, "utf8").trim(), "doveadm force-resync -u alice@example.org *");
        assert.equal(fs.readdirSync("/var/tmp").filter(f => f.startsWith("selfhost-restore.")).length, before, "its work directory is gone");
        // One folder, from the last snapshot of a day.
        fs.rmSync(`${maildir}/.Junk`, { recursive: true });
        fs.rmSync(`${maildir}/cur/2.lost:2,S`);
        const junk = spawnSync("bash", ["-c", script, "selfhost-backup", "restore-mailbox", "alice@example.org", "2026-12-01", "Junk"],
            { encoding: "utf8", env: { ...process.env, PATH: `${stubs}:${process.env.PATH}` } });
        assert.equal(junk.status, 0, junk.stdout + junk.stderr);
        assert.match(junk.stdout, /put back 1 message\(s\) into alice@example.org's mailbox \(Junk\) from snapshot 2222bbbb/);
        assert.equal(fs.readFileSync(`${dir}/snapshot`, "utf8").trim(), "2222bbbb");
        assert.deepEqual([fs.readdirSync(`${maildir}/.Junk/cur`), fs.readdirSync(`${maildir}/cur`)], [["3.spam:2,"], ["1.kept:2,S"]], "Junk only");
        const tooEarly = spawnSync("bash", ["-c", script, "selfhost-backup", "restore-mailbox", "alice@example.org", "2026-11-01"],
            { encoding: "utf8", env: { ...process.env, PATH: `${stubs}:${process.env.PATH}` } });
        assert.match(tooEarly.stderr, /no snapshot was taken by the end of 2026-11-01/);
        const refused = spawnSync("bash", ["-c", script, "selfhost-backup", "restore-mailbox", "bob@example.org"], { encoding: "utf8" });
        assert.match(refused.stderr, /bob@example.org has no mailbox here/);
        fs.rmSync(dir, { recursive: true });
    });

    it("uses an sftp repository as given, with its port let out of the firewall, and no Storage Box", async () => {
        const run = await runProgram({ ...baseConfig(), backup: "sftp://restic@backup.example.net:2222/srv/restic" });
        assert.equal(run.all("hcloud:index/storageBox:StorageBox").length, 0);
        assert.equal(run.outputs.backupRepository, "sftp://restic@backup.example.net:2222/srv/restic");
        const create = scriptOf(unsecret(run.one("command:remote:Command", "backup").inputs.create));
        assert.match(create, /SFTP_LOGIN='restic@backup.example.net' SFTP_PORT=2222/);
        assert.doesNotMatch(create, /STORAGE_BOX_PASSWORD_FILE=/);
        assert.match(scriptOf(unsecret(run.one("command:remote:Command", "hardening").inputs.create)), /tcp dport \{[^}]*\b2222\b[^}]*\} accept/);
        assert.deepEqual(sftpLogin("sftp:me@nas.example.net:/backups"), { sftpLogin: "me@nas.example.net", sftpPort: 22 });
    });

    it("can be off: no Storage Box, no restic, the timers stopped", async () => {
        const run = await runProgram({ ...baseConfig(), backup: "off" });
        assert.equal(run.all("hcloud:index/storageBox:StorageBox").length, 0);
        const create = scriptOf(unsecret(run.one("command:remote:Command", "backup").inputs.create));
        assert.match(create, /systemctl disable --quiet --now selfhost-backup\.timer selfhost-backup-check\.timer/);
        assert.doesNotMatch(scriptOf(unsecret(run.one("command:remote:Command", "base").inputs.create)), /\brestic\b/);
        assert.equal(run.outputs.backupRepository, "");
    });

    it("puts the admin's home on the volume only after a restore could run (an empty volume must still look empty)", async () => {
        for (const backup of ["storagebox", "off"]) {
            const run = await runProgram({ ...baseConfig(), backup, adminUser: "carol" });
            const steps = Object.fromEntries(["base", "backup"].map(n => [n, scriptOf(unsecret(run.one("command:remote:Command", n).inputs.create))]));
            assert.doesNotMatch(steps.base, /\/srv\/home/, "base writes nothing on the volume");
            const home = steps.backup.indexOf("ln -s /srv/home/carol /home/carol");
            assert.ok(home > 0, steps.backup);
            if (backup !== "off") assert.ok(steps.backup.indexOf("selfhost-backup open") < home, "home after the restore");
        }
    });
});
