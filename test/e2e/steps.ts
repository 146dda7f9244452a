/**
 * The remote steps exactly as the program declares them (command:remote:Command resources: create
 * command, stdin, connection), applied in dependency order over SSH, as the command provider would.
 */
import * as fs from "fs";
import * as path from "path";
import { ProgramRun, unsecret } from "../program";
import { sh, run, Result } from "./sh";

export interface Step {
    readonly name: string;
    readonly urn: string;
    readonly create: string;
    /** What the provider runs on the old server when the step goes (a replaced server, destroy). */
    readonly delete?: string;
    readonly stdin?: string;
    readonly connection: { host: string; port: number; user: string; privateKey: string; hostKey: string };
    readonly after: string[];
}

/** Every remote command that runs something when created (a step), ordered so that each comes after everything it depends on. */
export function declaredSteps(run: ProgramRun): Step[] {
    // A command without a create is, as the provider treats it, nothing to run until it goes.
    const commands = run.all("command:remote:Command").filter(c => c.inputs.create !== undefined);
    const urns = new Set(commands.map(c => c.urn));
    const steps: Step[] = commands.map(c => ({
        name: c.name, urn: c.urn, create: unsecret(c.inputs.create), delete: unsecret(c.inputs.delete), stdin: unsecret(c.inputs.stdin),
        connection: unsecret(c.inputs.connection), after: c.dependencies.filter(d => urns.has(d)),
    }));
    const ordered: Step[] = [];
    const visit = (s: Step, path: string[]) => {
        if (ordered.includes(s)) return;
        if (path.includes(s.urn)) throw new Error(`dependency cycle: ${[...path, s.urn].join(" → ")}`);
        for (const d of s.after) visit(steps.find(x => x.urn === d)!, [...path, s.urn]);
        ordered.push(s);
    };
    steps.forEach(s => visit(s, []));
    return ordered;
}

/** Runs a step's delete command over SSH, as the provider does before the server goes. */
export function deleteStep(step: Step, workdir: string): Result {
    return applyStep({ ...step, create: step.delete ?? "true", stdin: undefined }, workdir);
}

/** Runs one step over SSH; like the provider, it keeps dialling while the server is still booting. */
export function applyStep(step: Step, workdir: string): Result {
    const key = path.join(workdir, "deploy-key");
    fs.writeFileSync(key, step.connection.privateKey, { mode: 0o600 });
    // Like the provider with `hostKey` set: only that key, of its type, or nothing is sent.
    const knownHosts = path.join(workdir, "pinned-host-key");
    fs.writeFileSync(knownHosts, `[${step.connection.host}]:${step.connection.port} ${step.connection.hostKey}\n`);
    const ssh = ["ssh", "-i", key, "-p", String(step.connection.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", `UserKnownHostsFile=${knownHosts}`, "-o", `HostKeyAlgorithms=${step.connection.hostKey.split(" ")[0]}`,
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        `${step.connection.user}@${step.connection.host}`];
    let result: Result = { code: -1, stdout: "", stderr: "", ms: 0 };
    let waited = 0;
    for (let attempt = 0; attempt < 60; attempt++) {
        // The create command goes as one string, as the provider's session.Run sends it.
        result = run([...ssh, step.create], { input: step.stdin ?? "", timeoutMs: 900_000 });
        // 255: ssh could not connect or authenticate yet; a host with another key is final.
        if (result.code !== 255 || /Host key verification failed/.test(result.stderr)) break;
        waited += 2000;
        sh("sleep 2");
    }
    return { ...result, ms: result.ms + waited };
}

/**
 * Commands the provider replaces between two runs (a changed `triggers`, its only replace-on-change
 * input): what their delete runs, on the server as it is, before anything that waits for them.
 */
export function replacedCommands(before: ProgramRun, after: ProgramRun): Step[] {
    const old = new Map(before.all("command:remote:Command").map(c => [c.urn, c]));
    return after.all("command:remote:Command")
        .filter(c => old.has(c.urn) && JSON.stringify(old.get(c.urn)!.inputs.triggers) !== JSON.stringify(c.inputs.triggers))
        .map(c => {
            const o = old.get(c.urn)!;
            return { name: o.name, urn: o.urn, create: "", delete: unsecret(o.inputs.delete), connection: unsecret(o.inputs.connection), after: [] };
        });
}

/**
 * Remote commands that run again between two program runs: any input changed (pulumi-command has no
 * diff of its own, so a new connection — another port — is an update too, and an update runs create).
 */
export function stepsThatChanged(before: ProgramRun, after: ProgramRun): Step[] {
    const old = new Map(declaredSteps(before).map(s => [s.urn, s]));
    return declaredSteps(after).filter(s => {
        const o = old.get(s.urn);
        return !o || o.create !== s.create || o.stdin !== s.stdin || JSON.stringify(o.connection) !== JSON.stringify(s.connection);
    });
}

/** Which of the server's inputs differ (Hetzner replaces it for userData, sshKeys, image, location; see test/providers.ts). */
export function changedServerInputs(before: ProgramRun, after: ProgramRun): string {
    // The server is the Server resource named "server" (a secondary MX's is "mx2-server").
    const [a, b] = [before, after].map(r => r.one("hcloud:index/server:Server", "server").inputs);
    return Object.keys({ ...a, ...b }).filter(k => JSON.stringify(a[k]) !== JSON.stringify(b[k])).join(", ");
}
