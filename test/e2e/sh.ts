/** Shell helpers for the local end-to-end target. Everything runs as root on this machine. */
import { spawnSync, spawn, ChildProcess } from "child_process";
import * as fs from "fs";

export interface Result { code: number; stdout: string; stderr: string; ms: number }

export interface ShOptions {
    /**
     * Run as this simulated-internet host: inside its container (its own Debian and tools) when it is one,
     * else in its network namespace with this machine's programs.
     */
    readonly ns?: string;
    /** With ns: this machine's programs in that host's network, even where the host is a container (the owner's laptop). */
    readonly machineTools?: boolean;
    readonly input?: string;
    readonly timeoutMs?: number;
}

/** Containers that play a namespace's host: name → their init process (undefined while not running). */
const containers = new Map<string, () => number | undefined>();

/** From now on, commands "in" namespace `ns` run inside this container (which joined that namespace). */
export function containerFor(ns: string, initPid: () => number | undefined): void {
    containers.set(ns, initPid);
}

function enter(ns: string, machineTools = false): string[] {
    const pid = machineTools ? undefined : containers.get(ns)?.();
    return pid ? ["nsenter", "-t", String(pid), "-a", "--"] : ["ip", "netns", "exec", ns];
}

/** Runs a bash command; never throws (look at `code`). */
export function sh(command: string, o: ShOptions = {}): Result {
    return run(["bash", "-c", command], o);
}

/** Runs a program with arguments as given (no shell); never throws. */
export function run(command: string[], o: ShOptions = {}): Result {
    const argv = o.ns ? [...enter(o.ns, o.machineTools), ...command] : command;
    const start = Date.now();
    const r = spawnSync(argv[0], argv.slice(1), {
        input: o.input ?? "", encoding: "utf8", timeout: o.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024,
    });
    return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : ""), ms: Date.now() - start };
}

/** Runs a command that must succeed; throws with its output otherwise. */
export function must(command: string, o: ShOptions = {}): string {
    const r = sh(command, o);
    if (r.code !== 0) throw new Error(`command failed (${r.code}): ${command}\n${r.stdout}${r.stderr}`);
    return r.stdout;
}

/** Starts a long-running process (in a namespace), output to a log file. */
export function daemon(argv: string[], log: string, o: { ns?: string; env?: Record<string, string> } = {}): ChildProcess {
    const full = o.ns ? [...enter(o.ns), ...argv] : argv;
    const out = fs.openSync(log, "a");
    const child = spawn(full[0], full.slice(1), { stdio: ["ignore", out, out], env: { ...process.env, ...o.env }, detached: true });
    child.unref();
    return child;
}

/** Polls `probe` until it returns true or the time is up. */
export async function waitFor(what: string, seconds: number, probe: () => boolean): Promise<void> {
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
        if (probe()) return;
        await new Promise(r => setTimeout(r, 500));
    }
    throw new Error(`timed out after ${seconds}s waiting for ${what}`);
}

/** Cleanup actions, run newest first, even when the run fails or is interrupted. */
export class Cleanup {
    private actions: [string, () => void][] = [];
    add(what: string, action: () => void): void { this.actions.push([what, action]); }
    run(): void {
        for (const [what, action] of this.actions.reverse()) {
            try { action(); } catch (e) { console.error(`cleanup: ${what}: ${e}`); }
        }
        this.actions = [];
    }
}
