/**
 * Runs the Pulumi program under mocks, as `pulumi preview/up` would, and returns every resource it
 * declared (type, name, inputs) and the stack outputs. The unit tests and the local end-to-end target
 * both use it, so what they check is exactly what the program declares.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { execFileSync } from "child_process";
import * as pulumi from "@pulumi/pulumi";
import { caCertificate, PrivateCaArgs } from "../components/private-ca";

export const ROOT = path.join(__dirname, "..");

export interface DeclaredResource {
    readonly id: string;
    readonly urn: string;
    readonly type: string;
    readonly name: string;
    /** URNs of the resources this one waits for (inputs and dependsOn), as the engine is told. */
    readonly dependencies: string[];
    readonly inputs: Record<string, any>;
    readonly state: Record<string, any>;
    /** The resource options the engine acts on when the resource changes or goes. */
    readonly options: { protect: boolean; deleteBeforeReplace: boolean; aliases: string[]; ignoreChanges: string[]; additionalSecretOutputs: string[] };
}

export interface ProgramRun {
    readonly resources: DeclaredResource[];
    readonly outputs: Record<string, any>;
    /** The first resource of a type (and name, if given); throws when there is none. */
    one(type: string, name?: string): DeclaredResource;
    all(type: string): DeclaredResource[];
}

/** What the test network answers for Hetzner-made values (RFC 5737 / RFC 3849 documentation ranges). */
export interface MockCloud {
    readonly ipv4: string;
    readonly ipv6Network: string;
    /** The secondary MX's addresses (its primary IPs are named "mx2-ipv4", "mx2-ipv6"). */
    readonly secondary?: { readonly ipv4: string; readonly ipv6Network: string };
    /** What the remote steps printed, by step name (the tls step's TLSA data); none: not run yet. */
    readonly stdout?: Record<string, string>;
    /** What the project already holds when the program reads it (nothing: a first `up`). */
    readonly live?: LiveCloud;
}

/** The live objects the program reads through Hetzner's data sources (getServers, getFirewalls), as they return them. */
export interface LiveCloud {
    readonly servers: Record<string, unknown>[];
    readonly firewalls: Record<string, unknown>[];
}

/**
 * The project as Hetzner holds it once a run was applied: its server and firewalls with the inputs
 * they were given (the data sources return names for image and location, as given here).
 */
export function liveAfter(run: ProgramRun): LiveCloud {
    return {
        servers: run.all("hcloud:index/server:Server").map(r => ({ id: Number(r.id), ...unsecret(r.inputs) })),
        firewalls: run.all("hcloud:index/firewall:Firewall").map(r => ({ id: Number(r.id), ...unsecret(r.inputs) })),
    };
}

/** Label selectors as the API applies them (`k=v,k=v`, all must match). */
const selects = (selector: string | undefined, labels: Record<string, string> = {}) =>
    (selector ?? "").split(",").filter(Boolean).every(kv => { const [k, v] = kv.split("="); return labels[k] === v; });
/** TLSA data as the tls step prints it: the key in use, then the next. */
export const SAMPLE_TLSA = ["3 1 1 " + "a1".repeat(32), "3 1 1 " + "b2".repeat(32)];
export const SECONDARY_TLSA = ["3 1 1 " + "c3".repeat(32), "3 1 1 " + "d4".repeat(32)];
export const DEFAULT_CLOUD: MockCloud = {
    ipv4: "198.51.100.10", ipv6Network: "2001:db8:10::/64", secondary: { ipv4: "198.51.100.11", ipv6Network: "2001:db8:11::/64" }, stdout: { tls: SAMPLE_TLSA.map(t => `tlsa ${t}\n`).join(""), "mx2-tls": SECONDARY_TLSA.map(t => `tlsa ${t}\n`).join("") },
};

// Keys are made once per process and name, so two runs of the program see the same keys (as a
// second `pulumi preview` sees the keys in state).
const keyCache = new Map<string, Record<string, string>>();

function makeKey(name: string, algorithm: string): Record<string, string> {
    const cached = keyCache.get(name);
    if (cached) return cached;
    let key: Record<string, string>;
    if (algorithm === "ED25519") {
        // A real OpenSSH key pair: the end-to-end target logs in with it.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-key-"));
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path.join(dir, "key")]);
        key = {
            privateKeyOpenssh: fs.readFileSync(path.join(dir, "key"), "utf8"),
            publicKeyOpenssh: fs.readFileSync(path.join(dir, "key.pub"), "utf8"),
        };
        fs.rmSync(dir, { recursive: true });
    } else {
        const pair = algorithm === "ECDSA"
            ? crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
            : crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
        key = {
            privateKeyPem: pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
            publicKeyPem: pair.publicKey.export({ type: "spki", format: "pem" }).toString(),
        };
    }
    keyCache.set(name, key);
    return key;
}

const passwordCache = new Map<string, string>();
/** Like random.RandomPassword with special: false: letters and digits only. */
const PASSWORD_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
function makePassword(name: string, length: number): string {
    if (!passwordCache.has(name)) {
        passwordCache.set(name, Array.from({ length }, () => PASSWORD_ALPHABET[crypto.randomInt(PASSWORD_ALPHABET.length)]).join(""));
    }
    return passwordCache.get(name)!;
}

/** Real certificates for the tls provider's resources, made with openssl as the provider would. */
function openssl(args: string[], files: Record<string, string>): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfhost-cert-"));
    try {
        for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
        return execFileSync("openssl", args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } finally {
        fs.rmSync(dir, { recursive: true });
    }
}
const subject = (s: { commonName?: string; organization?: string } = {}) =>
    `/CN=${s.commonName ?? "selfhost"}${s.organization ? `/O=${s.organization}` : ""}`;
const days = (hours: number) => String(Math.max(1, Math.round(hours / 24)));

/** A stable numeric id per resource, as Hetzner's ids are numbers. */
const numericId = (type: string, name: string) =>
    String(100000 + (crypto.createHash("sha256").update(`${type}/${name}`).digest().readUInt32BE(0) % 900000));

function mockState(type: string, name: string, wrapped: Record<string, any>, cloud: MockCloud): Record<string, any> {
    const inputs = unsecret(wrapped);
    switch (type) {
        case "tls:index/privateKey:PrivateKey":
            return { ...inputs, ...makeKey(name, inputs.algorithm) };
        case "hcloud:index/primaryIp:PrimaryIp": {
            const { ipv4, ipv6Network } = name.startsWith("mx2-") && cloud.secondary ? cloud.secondary : cloud;
            return inputs.type === "ipv4"
                ? { ...inputs, ipAddress: ipv4 }
                : { ...inputs, ipAddress: ipv6Network.replace(/\/\d+$/, ""), ipNetwork: ipv6Network };
        }
        case "pulumi-nodejs:dynamic/selfhost:PrivateCa":
            // The provider's own signer (it needs no network): the certificate the real `up` makes.
            return { ...inputs, ...caCertificate(inputs as PrivateCaArgs, new Date()) };
        case "tls:index/certRequest:CertRequest":
            return { ...inputs, certRequestPem: openssl(["req", "-new", "-key", "key.pem", "-subj", subject(inputs.subject),
                "-addext", `subjectAltName=${inputs.dnsNames.map((n: string) => `DNS:${n}`).join(",")}`], { "key.pem": inputs.privateKeyPem }) };
        case "tls:index/locallySignedCert:LocallySignedCert":
            return { ...inputs, certPem: openssl(["x509", "-req", "-in", "csr.pem", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1",
                "-days", days(inputs.validityPeriodHours), "-copy_extensions", "copy"],
                { "csr.pem": inputs.certRequestPem, "ca.pem": inputs.caCertPem, "ca.key": inputs.caPrivateKeyPem }) };
        case "random:index/randomPassword:RandomPassword":
            // Same name and keepers, same password across runs (as a refresh reads it); new keepers, a new one.
            return { ...inputs, result: makePassword(`${name} ${JSON.stringify(inputs.keepers ?? {})}`, inputs.length) };
        case "hcloud:index/storageBox:StorageBox":
            return { ...inputs, username: `u${numericId(type, name)}`, server: `u${numericId(type, name)}.your-storagebox.de` };
        case "hcloud:index/storageBoxSubaccount:StorageBoxSubaccount":
            return { ...inputs, username: `u${inputs.storageBoxId}-sub1`, server: `u${inputs.storageBoxId}-sub1.your-storagebox.de` };
        case "command:remote:Command":
            return { ...inputs, stdout: cloud.stdout?.[name] };
        case "hcloud:index/zone:Zone":
            return { ...inputs, authoritativeNameservers: { assigneds: ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."] } };
        default:
            return inputs;
    }
}

/** Project files are re-loaded for each run; node_modules (and Pulumi's runtime) are not. */
function forgetProgram(): void {
    for (const file of Object.keys(require.cache)) {
        if (file.startsWith(ROOT) && !file.includes(`${path.sep}node_modules${path.sep}`) && !file.includes(`${path.sep}test${path.sep}`)) {
            delete require.cache[file];
        }
    }
}

/** Stack config as `pulumi config set` would store it: strings, lists as JSON. */
function asPulumiConfig(config: Record<string, unknown>): Record<string, string> {
    return Object.fromEntries(Object.entries(config).map(([k, v]) =>
        [k.includes(":") ? k : `selfhost:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
}

export async function runProgram(
    config: Record<string, unknown>,
    options: { preview?: boolean; cloud?: MockCloud } = {},
): Promise<ProgramRun> {
    const cloud = options.cloud ?? DEFAULT_CLOUD;
    const resources: DeclaredResource[] = [];
    // The mock monitor hands newResource no URN or dependencies; take them from the request itself.
    let request: Pick<DeclaredResource, "urn" | "dependencies" | "options"> | undefined;
    await pulumi.runtime.setMocks({
        newResource(args) {
            const id = numericId(args.type, args.name);
            const state = mockState(args.type, args.name, args.inputs, cloud);
            resources.push({ id, ...request!, type: args.type, name: args.name, inputs: args.inputs, state });
            return { id, state };
        },
        call(args) {
            const live = cloud.live ?? { servers: [], firewalls: [] };
            const selector = args.inputs.withSelector as string | undefined;
            switch (args.token) {
                case "hcloud:index/getServers:getServers":
                    return { ...args.inputs, id: "servers", servers: live.servers.filter(s => selects(selector, s.labels as Record<string, string>)) };
                case "hcloud:index/getFirewalls:getFirewalls":
                    return { ...args.inputs, id: "firewalls", firewalls: live.firewalls.filter(f => selects(selector, f.labels as Record<string, string>)) };
                default:
                    return args.inputs;
            }
        },
    }, "selfhost", "test", options.preview ?? false);
    const monitor = pulumi.runtime.getMonitor() as any;
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: unknown) => {
        // registerResource calls newResource synchronously, before its first await.
        request = {
            urn: monitor.newUrn(req.getParent(), req.getType(), req.getName()), dependencies: req.getDependenciesList(),
            options: {
                protect: Boolean(req.getProtect()), deleteBeforeReplace: req.getDeletebeforereplace(),
                // An alias that names the old resource (its name, and parent when it moved).
                aliases: req.getAliasesList().map((a: any) => a.getUrn() || a.getSpec()?.getName()).filter(Boolean),
                ignoreChanges: req.getIgnorechangesList(),
                additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
            },
        };
        return register(req, callback);
    };
    pulumi.runtime.setAllConfig(asPulumiConfig(config));
    forgetProgram();

    // A failed registration surfaces as an unhandled rejection, and its outputs never resolve: fail instead of hanging.
    let failed: (e: unknown) => void = () => undefined;
    const failure = new Promise<never>((_, reject) => { failed = reject; });
    process.on("unhandledRejection", failed);
    const outputs: Record<string, any> = {};
    try {
        const program: Record<string, unknown> = require(path.join(ROOT, "index.ts"));
        for (const [key, value] of Object.entries(program)) {
            outputs[key] = await Promise.race([resolve(value), failure]);
        }
    } finally {
        process.off("unhandledRejection", failed);
    }
    // Outputs resolve before every child is registered; wait until the set stops growing.
    for (let seen = -1; seen !== resources.length;) {
        seen = resources.length;
        await new Promise(r => setTimeout(r, 20));
    }
    const all = (type: string) => resources.filter(r => r.type === type);
    const one = (type: string, name?: string) => {
        const found = resources.find(r => r.type === type && (name === undefined || r.name === name));
        if (!found) throw new Error(`no ${type}${name ? ` named ${name}` : ""} was declared`);
        return found;
    };
    return { resources, outputs, one, all };
}

/** The marker the Pulumi RPC layer wraps secret values in. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

export const isSecret = (v: unknown): boolean =>
    typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG] !== undefined;

/** A value with every secret wrapper removed, as the provider sees it. */
export function unsecret<T = any>(v: unknown): T {
    if (isSecret(v)) return unsecret((v as { value: unknown }).value);
    if (Array.isArray(v)) return v.map(unsecret) as T;
    if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unsecret(x)])) as T;
    return v as T;
}

/** Resolves an Output (or a structure of them) to its plain value, secrets unwrapped. */
export function resolve<T>(value: pulumi.Input<T>): Promise<T> {
    return new Promise(done => pulumi.output(value).apply(v => { done(v as T); return v; }));
}

/** The script inside a step's `sudo -n bash -c '…'`, unquoted. */
export const scriptOf = (createCommand: string): string =>
    createCommand.match(/^sudo -n bash -c '([\s\S]*)' selfhost-step \S+$/)![1].replace(/'\\''/g, "'");

export interface InstalledFile { readonly content: string; readonly mode: string; readonly owner: string }

/**
 * The files a step installs, by path, as the server receives them. Tests read a step's files only
 * through this, so the way a step carries its files can change without touching them.
 */
export function stepFiles(run: ProgramRun, step: string): Map<string, InstalledFile> {
    const script = scriptOf(unsecret<string>(run.one("command:remote:Command", step).inputs.create));
    const files = new Map<string, InstalledFile>();
    for (const m of script.matchAll(/^put '((?:[^']|'\\'')*)' (\d+) (\S+) <<'(SELFHOST_\w+)'\n([\s\S]*?)^\4$/gm)) {
        files.set(m[1].replace(/'\\''/g, "'"), { mode: m[2], owner: m[3], content: m[5] });
    }
    return files;
}
