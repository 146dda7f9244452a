/**
 * The one place configuration is read and validated. Defaults and types come from the schema in
 * Pulumi.yaml; every rule below fails with the key and the fix, before any resource is declared.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as net from "net";
import * as YAML from "yaml";
import { ALL_SERVICE_SUBDOMAINS, LOCAL_PORTS, portTaken } from "../services/catalog";
import { gandiOptions } from "../components/dns/livedns";
import { DEPLOY_USER } from "../cloud-init";
import { GIT_USER } from "../components/base";
import { SecondaryMx, secondaryMxOptions } from "../components/secondary";

export const PROJECT = "selfhost";

export const LOCATIONS = ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"] as const;
export const DNS_PROVIDERS = ["gandi", "hetzner", "none"] as const;
export const TLS_MODES = ["acme", "private-ca"] as const;
export const DMARC_POLICIES = ["none", "quarantine", "reject"] as const;
export const MTA_STS_MODES = ["testing", "enforce", "none"] as const;
export const UNKNOWN_RDNS = ["score", "reject"] as const;
/** What Hetzner's server types look like (cx23, cax11, ccx13). */
export const SERVER_TYPE = /^[a-z]+[0-9]+[a-z]*$/;

/** Forward addresses a mailbox may have: one message becomes at most this many copies (Sieve's redirect limit). */
export const MAX_FORWARDS = 4;

/** Local parts every domain must have (RFC 2142); they always go to adminEmail. */
export const RESERVED_LOCAL_PARTS = ["postmaster", "abuse"] as const;

/** CAA identities of the public ACME CAs, by directory host. */
const CAA_BY_ACME_HOST: Record<string, string> = {
    "acme-v02.api.letsencrypt.org": "letsencrypt.org",
    "acme-staging-v02.api.letsencrypt.org": "letsencrypt.org",
    "acme.zerossl.com": "sectigo.com",
    "api.buypass.com": "buypass.com",
    "api.test4.buypass.no": "buypass.com",
    "dv.acme-v02.api.pki.goog": "pki.goog",
};

/** Users that exist on a Debian server with our packages; the admin must not be one of them. */
const SYSTEM_USERS = ["root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "nobody", "systemd-network", "systemd-timesync", "messagebus",
    "sshd", "postfix", "dovecot", "dovenull", "vmail", "_rspamd", "redis", "prosody", "roundcube"];

export interface MailUser {
    /** Local part: the account is name@domain (mail and XMPP). */
    readonly name: string;
    readonly aliases: readonly string[];
    readonly forwards: readonly string[];
    readonly catchAll: boolean;
    /** ASCII-armoured OpenPGP public key: incoming mail is encrypted to it at delivery. */
    readonly openpgpKey?: string;
    /** Raising it gives the user a new password (the old one stops working at the next `up`). */
    readonly passwordVersion?: number;
    /** This mailbox's size limit in MB, instead of mailboxQuotaMb (0: none). */
    readonly quotaMb?: number;
}

/** A local web app that nginx proxies to, by path or by subdomain. */
export interface WebApp {
    readonly name: string;
    readonly port: number;
    readonly path?: string;
    readonly subdomain?: string;
}

/** Where restic keeps the data volume's snapshots; the port is what the firewall lets out. */
export type BackupTarget =
    | { readonly kind: "off" }
    | { readonly kind: "storagebox"; readonly port: number }
    | { readonly kind: "sftp"; readonly url: string; readonly port: number };

/** Hetzner Storage Boxes listen for SFTP with keys on port 23. */
export const STORAGE_BOX_PORT = 23;

export type DnsProvider = typeof DNS_PROVIDERS[number];
export type TlsMode = typeof TLS_MODES[number];

export interface Settings {
    readonly domain: string;
    readonly hostname: string;
    readonly adminUser: string;
    readonly adminEmail: string;
    readonly sshPublicKeys: readonly string[];
    readonly sshPort: number;
    /** CIDR networks; empty means SSH from anywhere. */
    readonly adminSources: readonly string[];
    readonly banTime: number;
    readonly recidiveBanTime: number;
    readonly restrictOutbound: boolean;
    readonly outboundPorts: readonly number[];
    /** HH:MM, or empty for no automatic reboot. */
    readonly rebootTime: string;
    readonly serverType: string;
    readonly location: typeof LOCATIONS[number];
    readonly image: string;
    readonly volumeSizeGb: number;
    readonly protectData: boolean;
    readonly protectServer: boolean;
    /** The owner says the keys to the backups are kept off this machine (preflight reminds until then). */
    readonly keysKeptOffline: boolean;
    readonly dnsProvider: DnsProvider;
    /** The LiveDNS API root (dnsProvider gandi); the credentials are read by the provider itself. */
    readonly gandiApiUrl: string;
    readonly dnsTtl: number;
    readonly dkimSelector: string;
    readonly dmarcPolicy: typeof DMARC_POLICIES[number];
    /** Messages each user may send an hour (rspamd's ratelimit, per authenticated user). */
    readonly sendLimitPerHour: number;
    /** Each mailbox's size limit in MB unless the user has quotaMb (0: none). */
    readonly mailboxQuotaMb: number;
    readonly mtaStsMode: typeof MTA_STS_MODES[number];
    readonly tlsMode: TlsMode;
    /** Raised by one to move the server to its next TLS key (components/tls.ts). */
    readonly tlsKeyGeneration: number;
    readonly acmeServer: string;
    /** CAA issuer domain, derived from acmeServer unless set; empty for private-ca. */
    readonly caaIssuer: string;
    readonly dnsbls: readonly string[];
    readonly unknownRdns: typeof UNKNOWN_RDNS[number];
    readonly users: readonly MailUser[];
    readonly siteBuild: string;
    readonly siteDir: string;
    /** Keys that may push the site and do nothing else. */
    readonly siteDeployKeys: readonly string[];
    readonly sitePackages: readonly string[];
    readonly userDirs: boolean;
    readonly apps: readonly WebApp[];
    readonly webLogDays: number;
    readonly webStats: boolean;
    readonly webmail: boolean;
    readonly xmppUploadLimitMb: number;
    readonly xmppUploadExpiresDays: number;
    readonly xmppUploadQuotaMb: number;
    readonly backup: BackupTarget;
    readonly backupStorageBoxType: string;
    /** systemd OnCalendar expression. */
    readonly backupSchedule: string;
    readonly backupKeep: { readonly daily: number; readonly weekly: number; readonly monthly: number };
    readonly checkSmtpHost: string;
    /** The backup MX, if any (components/secondary.ts). */
    readonly secondaryMx?: SecondaryMx;
}

interface Declaration {
    type?: "string" | "integer" | "boolean" | "array";
    default?: unknown;
    description?: string;
}

/** The `config:` block of Pulumi.yaml, keyed without the project prefix. */
export function schema(): Record<string, Declaration> {
    const project = YAML.parse(fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8"));
    const out: Record<string, Declaration> = {};
    for (const [key, decl] of Object.entries(project.config as Record<string, Declaration>)) {
        out[key.replace(`${PROJECT}:`, "")] = decl;
    }
    return out;
}

/** Thrown with every problem found, one per line, so a user fixes them all in one go. */
export class ConfigError extends Error {
    constructor(readonly problems: string[]) {
        super(`invalid configuration:\n${problems.map(p => `  - ${p}`).join("\n")}`);
        this.name = "ConfigError";
    }
}

/** Reads the stack's configuration, applies the schema's defaults and validates it. */
export function loadSettings(): Settings {
    const config = new pulumi.Config(PROJECT);
    const problems: string[] = [];
    const raw: Record<string, unknown> = {};
    for (const [key, decl] of Object.entries(schema())) {
        const text = config.get(key);
        if (text === undefined) {
            if (decl.default === undefined) problems.push(`${PROJECT}:${key} is required: ${decl.description} ` +
                `Set it with \`pulumi config set ${key} <value>\`${decl.type === "array" ? " --path (or edit the stack file)" : ""}.`);
            raw[key] = decl.default;
            continue;
        }
        const parsed = parseTyped(text, decl.type ?? (Array.isArray(decl.default) ? "array" : "string"));
        if (parsed.error) problems.push(`${PROJECT}:${key} ${parsed.error}`);
        raw[key] = parsed.value;
    }
    if (problems.length) throw new ConfigError(problems);
    // The old Gandi provider's key: only to say where it goes now.
    raw.legacyGandiKey = pulumi.runtime.getConfig("gandi:key") !== undefined;
    return validate(raw);
}

function parseTyped(text: string, type: string): { value?: unknown; error?: string } {
    switch (type) {
        case "integer":
            return /^-?\d+$/.test(text.trim()) ? { value: Number(text) } : { error: `must be a whole number, got "${text}".` };
        case "boolean":
            return text === "true" || text === "false" ? { value: text === "true" } : { error: `must be true or false, got "${text}".` };
        case "array":
            try {
                const value = JSON.parse(text);
                return Array.isArray(value) ? { value } : { error: "must be a list." };
            } catch {
                return { error: "must be a list (YAML sequence in the stack file)." };
            }
        default:
            return { value: text };
    }
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LOCAL_PART = /^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/;
/** An address as people have them; no quotes, spaces or shell characters (RFC 5322 allows more; nobody needs it here). */
const EMAIL = /^[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
/** An https URL without query, fragment, credentials or characters a shell, Lua or a map would read. */
export const HTTPS_URL = /^https:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~%\/-]*)?$/;

export function isDomainName(name: string): boolean {
    const labels = name.split(".");
    return name.length <= 253 && labels.length >= 2 && labels.every(l => LABEL.test(l)) &&
        /^([a-z]{2,63}|xn--[a-z0-9-]+)$/.test(labels[labels.length - 1]);
}

/** Checks every value; `raw` has the schema's types and defaults applied. */
export function validate(raw: Record<string, unknown>): Settings {
    const problems: string[] = [];
    const bad = (key: string, message: string) => problems.push(`${PROJECT}:${key} ${message}`);
    const oneOf = <T extends string>(key: string, allowed: readonly T[]): T => {
        const value = raw[key] as T;
        if (!allowed.includes(value)) bad(key, `must be one of ${allowed.join(", ")}; got "${value}".`);
        return value;
    };
    const intIn = (key: string, min: number, max: number): number => {
        const value = raw[key] as number;
        if (!Number.isInteger(value) || value < min || value > max) bad(key, `must be a whole number from ${min} to ${max}; got ${value}.`);
        return value;
    };

    const domain = String(raw.domain ?? "");
    if (!isDomainName(domain)) {
        bad("domain", `"${domain}" is not a domain name: use lowercase letters, digits and hyphens in dot-separated labels, ` +
            "without a trailing dot, e.g. example.org.");
    }
    const hostname = String(raw.hostname || `mail.${domain}`);
    if (!isDomainName(domain)) {
        // Nothing to say about the hostname until the domain is right.
    } else if (!isDomainName(hostname) || !(hostname === domain || hostname.endsWith(`.${domain}`))) {
        bad("hostname", `"${hostname}" must be a fully qualified name equal to or inside the domain ${domain}, e.g. mail.${domain}.`);
    } else if (ALL_SERVICE_SUBDOMAINS.some(s => hostname === `${s}.${domain}`)) {
        bad("hostname", `"${hostname}" is taken by a service name (${ALL_SERVICE_SUBDOMAINS.join(", ")}); use e.g. mail.${domain}.`);
    }

    const adminUser = String(raw.adminUser);
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(adminUser)) {
        bad("adminUser", `"${adminUser}" is not a valid login: lowercase letters, digits, _ and -, at most 32 characters, e.g. admin.`);
    } else if (SYSTEM_USERS.includes(adminUser)) {
        bad("adminUser", `"${adminUser}" is a system account on Debian; pick another login, e.g. admin.`);
    } else if ([DEPLOY_USER, GIT_USER].includes(adminUser)) {
        bad("adminUser", `"${adminUser}" is a login the stack makes for itself; pick another login, e.g. admin.`);
    }

    const adminEmail = String(raw.adminEmail ?? "");
    if (!EMAIL.test(adminEmail)) bad("adminEmail", `"${adminEmail}" is not an email address, e.g. you@example.net.`);

    const sshKeys = (key: string) => {
        const keys = ((raw[key] as unknown[] | undefined) ?? []).map(k => String(k).trim());
        keys.forEach((line, i) => {
            const problem = sshKeyProblem(line);
            if (problem) bad(`${key}[${i}]`, `${problem} Paste a whole line of a .pub file, e.g. "ssh-ed25519 AAAA… you@laptop".`);
        });
        return keys;
    };
    const sshPublicKeys = sshKeys("sshPublicKeys");
    if (sshPublicKeys.length === 0) bad("sshPublicKeys", "needs at least one OpenSSH public key (the contents of ~/.ssh/id_ed25519.pub).");
    const siteDeployKeys = sshKeys("siteDeployKeys");

    const sshPort = intIn("sshPort", 1, 65535);
    const clash = portTaken(sshPort);
    if (clash) bad("sshPort", `${sshPort} is the ${clash.name} port; choose a free port, e.g. 2222.`);

    const adminSources = ((raw.adminSources as unknown[]) ?? []).map((a, i) => {
        const cidr = toCidr(String(a));
        if (!cidr) bad(`adminSources[${i}]`, `"${a}" is not an IP address or CIDR network, e.g. 203.0.113.7 or 2001:db8::/48.`);
        else if (hasHostBits(cidr)) {
            // Hetzner's firewall API refuses such a CIDR at `up`; say which of the two was meant, now.
            const [address] = cidr.split("/");
            bad(`adminSources[${i}]`, `"${a}" has host bits set, which Hetzner's firewall refuses: write the network ${networkOf(cidr)}, ` +
                `or the one address ${address}.`);
        }
        return cidr ?? "";
    });
    const banTime = intIn("banTime", 60, 31536000);
    const recidiveBanTime = intIn("recidiveBanTime", 60, 31536000);
    const outboundPorts = ((raw.outboundPorts as unknown[]) ?? []).map(Number);
    outboundPorts.forEach((p, i) => {
        if (!Number.isInteger(p) || p < 1 || p > 65535) bad(`outboundPorts[${i}]`, `must be a TCP port from 1 to 65535; got ${p}.`);
    });
    const rebootTime = String(raw.rebootTime ?? "");
    if (rebootTime && !/^([01][0-9]|2[0-3]):[0-5][0-9]$/.test(rebootTime)) {
        bad("rebootTime", `"${rebootTime}" must be a time of day as HH:MM (UTC), e.g. 04:30, or empty for no automatic reboot.`);
    }

    const serverType = String(raw.serverType);
    if (!SERVER_TYPE.test(serverType)) bad("serverType", `"${serverType}" is not a Hetzner server type, e.g. cx23 or cax11.`);
    const location = oneOf("location", LOCATIONS);
    const image = String(raw.image);
    if (!/^debian-(1[3-9]|[2-9][0-9])$/.test(image)) {
        bad("image", `"${image}" is not supported: the service configs need Debian 13 or later; use debian-13.`);
    }
    const volumeSizeGb = intIn("volumeSizeGb", 10, 10240);
    const dnsProvider = oneOf("dnsProvider", DNS_PROVIDERS);
    const dnsTtl = intIn("dnsTtl", 300, 86400);
    const { gandiApiUrl } = gandiOptions(raw, dnsProvider, bad);
    const dkimSelector = String(raw.dkimSelector);
    if (!LABEL.test(dkimSelector)) bad("dkimSelector", `"${dkimSelector}" must be one DNS label (lowercase letters, digits, -), e.g. selfhost.`);
    const dmarcPolicy = oneOf("dmarcPolicy", DMARC_POLICIES);
    const sendLimitPerHour = intIn("sendLimitPerHour", 1, 100000);
    // A quota only protects the disk if it fits on the volume.
    const maxQuotaMb = volumeSizeGb * 1024;
    const mailboxQuotaMb = intIn("mailboxQuotaMb", 0, maxQuotaMb);
    const mtaStsMode = oneOf("mtaStsMode", MTA_STS_MODES);
    const tlsMode = oneOf("tlsMode", TLS_MODES);
    const tlsKeyGeneration = intIn("tlsKeyGeneration", 1, 1_000_000);

    const acmeServer = String(raw.acmeServer);
    let acmeHost = "";
    try {
        const url = new URL(acmeServer);
        if (url.protocol !== "https:" || !HTTPS_URL.test(acmeServer)) throw new Error();
        acmeHost = url.hostname;
    } catch {
        bad("acmeServer", `"${acmeServer}" must be an https:// ACME directory URL (letters, digits and . _ ~ % / - in its path, no query), ` +
            "e.g. https://acme-v02.api.letsencrypt.org/directory.");
    }
    let caaIssuer = String(raw.caaIssuer ?? "");
    if (caaIssuer && !isDomainName(caaIssuer)) bad("caaIssuer", `"${caaIssuer}" must be the CA's CAA domain, e.g. letsencrypt.org.`);
    if (tlsMode === "private-ca") {
        caaIssuer = "";
    } else if (!caaIssuer && acmeHost) {
        caaIssuer = CAA_BY_ACME_HOST[acmeHost] ?? "";
        if (!caaIssuer) bad("caaIssuer", `cannot be derived from acmeServer host ${acmeHost}; set it to your CA's CAA domain.`);
    }

    const users = mailUsers(raw.users, domain, maxQuotaMb, bad);
    const [adminLocal, adminDomain] = adminEmail.split("@");
    if (adminDomain === domain && !users.some(u => u.name === adminLocal || u.aliases.includes(adminLocal))) {
        bad("adminEmail", `"${adminEmail}" is in this domain but no user has it; add a user or alias "${adminLocal}", or use an address elsewhere.`);
    }
    const dnsbls = ((raw.dnsbls as unknown[]) ?? []).map(String);
    dnsbls.forEach((d, i) => { if (!isDomainName(d)) bad(`dnsbls[${i}]`, `"${d}" is not a DNS zone, e.g. zen.spamhaus.org.`); });
    const unknownRdns = oneOf("unknownRdns", UNKNOWN_RDNS);

    const siteBuild = String(raw.siteBuild ?? "");
    const siteDir = String(raw.siteDir ?? "").replace(/^\.\/|\/$/g, "");
    if (siteDir && !/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(siteDir) || siteDir.split("/").includes("..")) {
        bad("siteDir", `"${siteDir}" must be a relative directory inside the repository, e.g. public.`);
    }
    const sitePackages = ((raw.sitePackages as unknown[]) ?? []).map(String);
    sitePackages.forEach((p, i) => { if (!/^[a-z0-9][a-z0-9+.-]+$/.test(p)) bad(`sitePackages[${i}]`, `"${p}" is not a Debian package name, e.g. hugo.`); });
    const apps = webApps(raw.apps, port => port === sshPort || !!portTaken(port) || Object.values<number>(LOCAL_PORTS).includes(port), hostname === domain ? "" : hostname.slice(0, -domain.length - 1), bad);
    const webLogDays = intIn("webLogDays", 1, 365);
    const xmppUploadLimitMb = intIn("xmppUploadLimitMb", 1, 10240);
    const xmppUploadExpiresDays = intIn("xmppUploadExpiresDays", 1, 3650);
    const xmppUploadQuotaMb = intIn("xmppUploadQuotaMb", 1, 1048576);

    const backup = backupTarget(String(raw.backup ?? ""), bad);
    const backupStorageBoxType = String(raw.backupStorageBoxType);
    if (!/^bx[0-9]{2}$/.test(backupStorageBoxType)) bad("backupStorageBoxType", `"${backupStorageBoxType}" is not a Storage Box type, e.g. bx11.`);
    const backupSchedule = String(raw.backupSchedule);
    // The server's systemd-analyze has the last word; this catches what cannot be a calendar at all.
    if (!/^[A-Za-z0-9*:,./~ -]+$/.test(backupSchedule)) {
        bad("backupSchedule", `"${backupSchedule}" is not a systemd calendar expression, e.g. daily or *-*-* 03:30:00.`);
    }
    const backupKeep = { daily: intIn("backupKeepDaily", 0, 3650), weekly: intIn("backupKeepWeekly", 0, 520), monthly: intIn("backupKeepMonthly", 0, 1200) };
    if (backup.kind !== "off" && backupKeep.daily + backupKeep.weekly + backupKeep.monthly === 0) {
        bad("backupKeepDaily", "and backupKeepWeekly and backupKeepMonthly are all 0, which would keep no snapshot; keep at least one, e.g. backupKeepDaily 7.");
    }

    const secondaryMx = secondaryMxOptions(raw, { domain, hostname, location, tlsMode }, bad);

    const checkSmtpHost = String(raw.checkSmtpHost);
    if (!isDomainName(checkSmtpHost)) bad("checkSmtpHost", `"${checkSmtpHost}" is not a host name, e.g. gmail-smtp-in.l.google.com.`);

    if (problems.length) throw new ConfigError(problems);
    return {
        domain, hostname, adminUser, adminEmail, sshPublicKeys, sshPort,
        adminSources, banTime, recidiveBanTime, restrictOutbound: raw.restrictOutbound as boolean, outboundPorts, rebootTime,
        serverType, location, image, volumeSizeGb, protectData: raw.protectData as boolean,
        protectServer: raw.protectServer as boolean, keysKeptOffline: raw.keysKeptOffline as boolean, dnsProvider, dnsTtl, gandiApiUrl, dkimSelector, dmarcPolicy, sendLimitPerHour, mailboxQuotaMb, mtaStsMode,
        tlsMode, tlsKeyGeneration, acmeServer, caaIssuer, dnsbls, unknownRdns, users,
        siteBuild, siteDir, siteDeployKeys, sitePackages, userDirs: raw.userDirs as boolean, apps, webLogDays, webStats: raw.webStats as boolean, webmail: raw.webmail as boolean,
        xmppUploadLimitMb, xmppUploadExpiresDays, xmppUploadQuotaMb, backup, backupStorageBoxType, backupSchedule, backupKeep,
        checkSmtpHost, ...secondaryMx ? { secondaryMx } : {},
    };
}

/** user@host and port of a restic sftp repository (`sftp://user@host:port/path` or `sftp:user@host:path`), or undefined if it is none. */
export function sftpLogin(repository: string): { sftpLogin: string; sftpPort: number } | undefined {
    // Letters, digits and . _ - (and / in the path) only: the URL reaches restic's command line and an ssh config.
    if (!/^sftp:(\/\/)?([\w.-]+@)?[\w.-]+(:\d{1,5})?[:/][\w./-]+$/.test(repository)) return undefined;
    if (repository.startsWith("sftp://")) {
        let url: URL;
        try { url = new URL(repository); } catch { return undefined; }
        if (!url.hostname || url.pathname.length <= 1) return undefined;
        return { sftpLogin: `${url.username ? `${url.username}@` : ""}${url.hostname}`, sftpPort: Number(url.port || 22) };
    }
    const short = repository.match(/^sftp:((?:[\w.-]+@)?[\w.-]+):.+$/);
    return short ? { sftpLogin: short[1], sftpPort: 22 } : undefined;
}

/** `storagebox`, `off`, or a restic sftp repository (`sftp:user@host:/path` or `sftp://user@host:port/path`). */
function backupTarget(value: string, bad: (key: string, message: string) => void): BackupTarget {
    if (value === "off") return { kind: "off" };
    if (value === "storagebox") return { kind: "storagebox", port: STORAGE_BOX_PORT };
    const sftp = sftpLogin(value);
    if (sftp) return { kind: "sftp", url: value, port: sftp.sftpPort };
    bad("backup", `"${value}" must be storagebox, off, or a restic sftp repository such as sftp://user@backup.example.net:23/selfhost.`);
    return { kind: "off" };
}

/** An address or network as CIDR (a bare address becomes /32 or /128), or undefined if it is neither. */
export function toCidr(text: string): string | undefined {
    const [address, prefix, ...rest] = text.trim().split("/");
    const family = net.isIP(address);
    const max = family === 4 ? 32 : 128;
    if (!family || rest.length) return undefined;
    if (prefix === undefined) return `${address}/${max}`;
    return /^\d{1,3}$/.test(prefix) && Number(prefix) <= max ? `${address}/${Number(prefix)}` : undefined;
}

/** A CIDR's address bytes, and the same with the host bits cleared. */
function cidrBytes(cidr: string): { bytes: number[]; network: number[]; prefix: number; v6: boolean } {
    const [address, prefixText] = cidr.split("/");
    const prefix = Number(prefixText);
    const v6 = net.isIP(address) === 6;
    const bytes = v6 ? ipv6Bytes(address) : address.split(".").map(Number);
    const network = bytes.map((b, i) => b & (0xff << Math.max(0, 8 - Math.max(0, prefix - 8 * i))) & 0xff);
    return { bytes, network, prefix, v6 };
}

const hasHostBits = (cidr: string) => { const c = cidrBytes(cidr); return c.bytes.some((b, i) => b !== c.network[i]); };

/** The network of a CIDR (host bits cleared), e.g. 203.0.113.7/24 → 203.0.113.0/24, 2001:db8::1/48 → 2001:db8::/48. */
export function networkOf(cidr: string): string {
    const { network, prefix, v6 } = cidrBytes(cidr);
    if (!v6) return `${network.join(".")}/${prefix}`;
    const groups = Array.from({ length: 8 }, (_, i) => ((network[2 * i] << 8) | network[2 * i + 1]).toString(16)).join(":");
    // The URL parser writes an IPv6 address in its shortest canonical form.
    return `${new URL(`http://[${groups}]/`).hostname.slice(1, -1)}/${prefix}`;
}

function ipv6Bytes(address: string): number[] {
    const [head, tail] = address.includes("::") ? address.split("::") : [address, undefined];
    const parse = (part: string | undefined) => part ? part.split(":").flatMap(g => {
        if (g.includes(".")) return g.split(".").map(Number); // an embedded IPv4 tail
        const n = parseInt(g, 16);
        return [n >> 8, n & 0xff];
    }) : [];
    const [h, t] = [parse(head), parse(tail)];
    return [...h, ...Array(16 - h.length - t.length).fill(0), ...t];
}

const SSH_KEY_TYPES = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"];

/** Why an OpenSSH public key line is unusable, or undefined when it is fine. */
export function sshKeyProblem(line: string): string | undefined {
    // One line: a newline would add a line (with options of its own) to authorized_keys.
    if (/[\x00-\x1f\x7f]/.test(line.trim())) return "has a line break or control character; give one key per list entry.";
    const [type, body] = line.trim().split(/\s+/);
    if (!SSH_KEY_TYPES.includes(type)) return `has type "${type}"; accepted: ${SSH_KEY_TYPES.join(", ")}.`;
    const blob = Buffer.from(body ?? "", "base64");
    if (!body || blob.toString("base64") !== body) return "has a key body that is not base64.";
    const readString = (at: number) => {
        const length = blob.length >= at + 4 ? blob.readUInt32BE(at) : -1;
        return length < 0 || at + 4 + length > blob.length ? undefined : blob.subarray(at + 4, at + 4 + length);
    };
    const inner = readString(0);
    if (inner?.toString() !== type) return `is truncated or its body is not a ${type} key.`;
    if (type === "ssh-rsa") {
        const exponent = readString(4 + inner.length);
        const modulus = exponent && readString(8 + inner.length + exponent.length);
        const bits = modulus ? (modulus.length - (modulus[0] === 0 ? 1 : 0)) * 8 : 0;
        if (bits < 2048) return `is an RSA key of ${bits} bits; use 2048 bits or more (or ed25519).`;
    }
    return undefined;
}

function webApps(value: unknown, taken: (port: number) => boolean, hostLabel: string, bad: (key: string, message: string) => void): WebApp[] {
    if (!Array.isArray(value)) {
        bad("apps", "must be a list of {name, port, path?, subdomain?}.");
        return [];
    }
    const seen = new Set<string>();
    return value.map((entry, i) => {
        const key = `apps[${i}]`;
        const e = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
        for (const field of Object.keys(e)) {
            if (!["name", "port", "path", "subdomain"].includes(field)) bad(`${key}.${field}`, "is not an app setting; known: name, port, path, subdomain.");
        }
        const name = String(e.name ?? "");
        if (!LABEL.test(name)) bad(`${key}.name`, `"${name}" must be a short lowercase name, e.g. blog.`);
        const port = Number(e.port);
        if (!Number.isInteger(port) || port < 1024 || port > 65535 || taken(port)) {
            bad(`${key}.port`, `must be the app's local port, 1024-65535, not a service port nor ${Object.values(LOCAL_PORTS).join(" or ")}; got ${e.port}.`);
        }
        const path = e.path === undefined ? undefined : String(e.path).replace(/\/$/, "");
        const subdomain = e.subdomain === undefined ? undefined : String(e.subdomain);
        if ((path === undefined) === (subdomain === undefined)) bad(key, "needs exactly one of path (e.g. /blog) or subdomain (e.g. blog).");
        if (path !== undefined && (!/^(\/[A-Za-z0-9._-]+)+$/.test(path) || /^\/(\.well-known|~)/.test(path))) {
            bad(`${key}.path`, `"${e.path}" must be a path like /blog (not /, /.well-known or /~user).`);
        }
        if (subdomain !== undefined && (!LABEL.test(subdomain) || ALL_SERVICE_SUBDOMAINS.includes(subdomain) || subdomain === hostLabel)) {
            bad(`${key}.subdomain`, `"${subdomain}" must be one free DNS label (not ${[...ALL_SERVICE_SUBDOMAINS, hostLabel].filter(Boolean).join(", ")}), e.g. blog.`);
        }
        const where = path ?? `${subdomain}.`;
        if (seen.has(where)) bad(key, `${path ? `path ${path}` : `subdomain ${subdomain}`} is used by another app.`);
        seen.add(where);
        return { name, port, ...(path !== undefined ? { path } : {}), ...(subdomain !== undefined ? { subdomain } : {}) };
    });
}

function mailUsers(value: unknown, domain: string, maxQuotaMb: number, bad: (key: string, message: string) => void): MailUser[] {
    if (!Array.isArray(value)) {
        bad("users", "must be a list of {name, aliases?, forwards?, catchAll?}.");
        return [];
    }
    const owner = new Map<string, string>(RESERVED_LOCAL_PARTS.map(r => [r, "adminEmail (always present)"]));
    const users: MailUser[] = [];
    value.forEach((entry, i) => {
        const key = `users[${i}]`;
        if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
            bad(key, "must be an object like {name: alice, aliases: [ali]}.");
            return;
        }
        const known = ["name", "aliases", "forwards", "catchAll", "openpgpKey", "passwordVersion", "quotaMb"];
        for (const field of Object.keys(entry)) {
            if (!known.includes(field)) bad(`${key}.${field}`, `is not a user setting; known: ${known.join(", ")}.`);
        }
        const e = entry as Record<string, unknown>;
        const list = (field: string): string[] => {
            const v = e[field] ?? [];
            if (!Array.isArray(v) || v.some(x => typeof x !== "string")) {
                bad(`${key}.${field}`, "must be a list of strings.");
                return [];
            }
            return v as string[];
        };
        const name = String(e.name ?? "");
        const aliases = list("aliases").map(a => a.endsWith(`@${domain}`) ? a.slice(0, -domain.length - 1) : a);
        const forwards = list("forwards");
        for (const [field, part] of [["name", name], ...aliases.map(a => ["aliases", a])]) {
            if (!LOCAL_PART.test(part)) {
                bad(`${key}.${field}`, `"${part}" is not a valid local part: lowercase letters, digits, ".", "_" and "-" ` +
                    `("+" is kept for user+tag addressing), e.g. alice.`);
            } else if (owner.has(part)) {
                bad(`${key}.${field}`, `"${part}@${domain}" already belongs to ${owner.get(part)}; each address may exist once.`);
            } else {
                owner.set(part, `users[${i}] (${name})`);
            }
        }
        forwards.forEach(f => { if (!EMAIL.test(f)) bad(`${key}.forwards`, `"${f}" is not an email address.`); });
        if (forwards.length > MAX_FORWARDS) bad(`${key}.forwards`, `has ${forwards.length} addresses; at most ${MAX_FORWARDS} (one message becomes at most that many copies).`);
        if (e.catchAll !== undefined && typeof e.catchAll !== "boolean") bad(`${key}.catchAll`, "must be true or false.");
        const openpgpKey = e.openpgpKey === undefined ? undefined : String(e.openpgpKey).trim() + "\n";
        if (openpgpKey !== undefined && !/^-----BEGIN PGP PUBLIC KEY BLOCK-----\n[\s\S]+\n-----END PGP PUBLIC KEY BLOCK-----\n$/.test(openpgpKey)) {
            bad(`${key}.openpgpKey`, "must be an ASCII-armoured OpenPGP public key (the output of `gpg --armor --export you@example.org`).");
        }
        const passwordVersion = e.passwordVersion;
        if (passwordVersion !== undefined && !(Number.isInteger(passwordVersion) && (passwordVersion as number) >= 1)) {
            bad(`${key}.passwordVersion`, `must be a whole number from 1 up; raise it by one to give ${name || "the user"} a new password.`);
        }
        const quotaMb = e.quotaMb;
        if (quotaMb !== undefined && !(Number.isInteger(quotaMb) && (quotaMb as number) >= 0 && (quotaMb as number) <= maxQuotaMb)) {
            bad(`${key}.quotaMb`, `must be a whole number of MB from 0 (no limit) to ${maxQuotaMb} (the volume's size); got ${JSON.stringify(quotaMb)}.`);
        }
        users.push({ name, aliases, forwards, catchAll: e.catchAll === true, ...(openpgpKey ? { openpgpKey } : {}),
            ...(typeof passwordVersion === "number" ? { passwordVersion } : {}), ...(typeof quotaMb === "number" ? { quotaMb } : {}) });
    });
    if (users.filter(u => u.catchAll).length > 1) bad("users", "has more than one catchAll user; keep at most one.");
    return users;
}
