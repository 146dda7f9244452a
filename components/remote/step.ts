/**
 * A remote step: files and a script that a `command.remote.Command` applies over SSH, as the admin
 * user with sudo, on the custom SSH port, with the stack's deploy key. The create command carries the
 * whole step in readable form (so `pulumi preview --diff` shows config changes line by line) and
 * therefore changes exactly when a file or the script does; that change is what re-runs the step.
 * Secrets travel on stdin only.
 */
import * as fs from "fs";
import * as path from "path";
import * as crypto from "crypto";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { DATA_DIR } from "../../cloud-init";
import { Settings } from "../../config";

const RUNNER = fs.readFileSync(path.join(__dirname, "runner.sh"), "utf8");

export interface Connection {
    readonly host: pulumi.Input<string>;
    readonly port: pulumi.Input<number>;
    readonly user: string;
    readonly privateKey: pulumi.Input<string>;
    /** The server's host key (public line): the connection refuses any other host, before it sends anything. */
    readonly hostKey: pulumi.Input<string>;
    /** The server the step applies to: a new server re-runs every step. */
    readonly serverId: pulumi.Input<string>;
}

/** What each service component is given: the settings, the way to the server, the steps that come first. */
export interface ServiceArgs {
    readonly settings: Settings;
    readonly connection: Connection;
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
}

export interface StepFile {
    readonly path: string;
    readonly content: pulumi.Input<string>;
    /** Octal mode, default 0644. */
    readonly mode?: string;
    /** owner:group, default root:root. */
    readonly owner?: string;
}

export interface SecretFile {
    /** Where the secret is installed on the server. */
    readonly path: string;
    readonly content: pulumi.Input<string>;
    readonly mode?: string;
    readonly owner?: string;
}

export interface RemoteStepArgs {
    readonly connection: Connection;
    /** Debian packages the step needs (installed only when missing). */
    readonly packages?: readonly string[];
    /** Shell run first, before packages and files (users, directories, the host's name). */
    readonly prepare?: string;
    readonly files?: readonly StepFile[];
    /** Files whose content is secret: sent on stdin, never in the command line. */
    readonly secretFiles?: readonly SecretFile[];
    /** Secret values the script reads from "$SECRETS/<name>" (sent on stdin, never installed as such). */
    readonly secrets?: Record<string, pulumi.Input<string>>;
    /** The daemon's own checker, as `check CMD ARGS…` lines; a failure restores the previous files. */
    readonly check?: string;
    /** Shell run once the files passed the check: enable, reload (`changed &&` …), issue certificates. */
    readonly run?: string;
    /** Shell run as root on the server when the step goes: the server is being replaced, or destroyed. */
    readonly delete?: string;
    readonly dependsOn?: pulumi.Input<pulumi.Input<pulumi.Resource>[]>;
}

/** A heredoc terminator that is no line of the content (checked, not hoped: content can come from config). */
function terminator(content: string): string {
    const lines = new Set(content.split("\n"));
    for (let i = 0; ; i++) {
        const end = `SELFHOST_${crypto.createHash("sha256").update(i ? `${i}:${content}` : content).digest("hex").slice(0, 12).toUpperCase()}`;
        if (!lines.has(end)) return end;
    }
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A shell script as the command the provider sends: run as root through sudo, named in the process list. */
export const asRoot = (script: string, label: string) => `sudo -n bash -c ${shellQuote(script)} ${label}`;

/** The provider's SSH connection for a step. */
export const sshConnection = (c: Omit<Connection, "serverId">) => ({
    host: c.host, port: c.port, user: c.user, privateKey: c.privateKey, hostKey: c.hostKey,
    // First boot: sshd moves to its port and cloud-init creates the user; keep dialling.
    dialErrorLimit: 60, perDialTimeout: 10,
});

/** Bash's limit for one argument (MAX_ARG_STRLEN is 128 KiB); sshd hands the command to `bash -c`. */
const MAX_SCRIPT_BYTES = 120 * 1024;

type PlainFile = StepFile & { readonly content: string };

/** The full script of a step, as it runs on the server (as root). Pure, for tests and the e2e target. */
export function stepScript(name: string, args: Omit<RemoteStepArgs, "connection" | "dependsOn" | "files" | "secrets"> & { files?: readonly PlainFile[] }): string {
    const put = (f: PlainFile) => {
        const content = f.content.endsWith("\n") ? f.content : `${f.content}\n`;
        const end = terminator(content);
        return `put ${shellQuote(f.path)} ${f.mode ?? "0644"} ${f.owner ?? "root:root"} <<'${end}'\n${content}${end}`;
    };
    const putSecret = (f: SecretFile, i: number) =>
        `put_secret s${i} ${shellQuote(f.path)} ${f.mode ?? "0600"} ${f.owner ?? "root:root"}`;
    const script = [
        `DATA_DIR=${DATA_DIR}`,
        RUNNER,
        `# --- step ${name} ---`,
        args.prepare ?? "",
        args.packages?.length ? `ensure_packages ${args.packages.join(" ")}` : "",
        ...(args.files ?? []).map(put),
        ...(args.secretFiles ?? []).map(putSecret),
        "prune",
        args.check ?? "",
        "commit",
        args.run ?? "",
        "finish",
        "",
    ].filter(Boolean).join("\n");
    if (Buffer.byteLength(script) > MAX_SCRIPT_BYTES) {
        throw new Error(`remote step ${name} is ${Buffer.byteLength(script)} bytes; split it (limit ${MAX_SCRIPT_BYTES})`);
    }
    return script;
}

export class RemoteStep extends pulumi.ComponentResource {
    readonly command: command.remote.Command;

    constructor(name: string, args: RemoteStepArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:RemoteStep", name, {}, opts);
        const c = args.connection;
        const files = args.files ?? [];
        const script = pulumi.all(files.map(f => f.content)).apply(contents =>
            stepScript(name, { ...args, files: files.map((f, i) => ({ ...f, content: contents[i] })) }));
        // stdin: one "name base64" line per secret; secret files are named sN, matching put_secret.
        const secrets: Record<string, pulumi.Input<string>> = {
            ...args.secrets,
            ...Object.fromEntries((args.secretFiles ?? []).map((f, i) => [`s${i}`, f.content])),
        };
        const stdin = Object.keys(secrets).length
            ? pulumi.secret(pulumi.output(secrets).apply(all =>
                Object.entries(all).map(([k, v]) => `${k} ${Buffer.from(v).toString("base64")}\n`).join("")))
            : undefined;
        this.command = new command.remote.Command(name, {
            connection: sshConnection(c),
            create: script.apply(s => asRoot(s, `selfhost-step ${name}`)),
            // umask as in the runner: sudo's PAM session would give root's login umask (027).
            delete: args.delete && asRoot(`set -euo pipefail\numask 022\n${args.delete}`, `selfhost-step-delete ${name}`),
            stdin,
            // Debian's sshd refuses to set PULUMI_COMMAND_STDOUT (AcceptEnv), and the steps never read it.
            addPreviousOutputInEnv: false,
            triggers: [c.serverId],
        }, { parent: this, dependsOn: args.dependsOn, deleteBeforeReplace: true });
        this.registerOutputs({ stdout: this.command.stdout });
    }
}
