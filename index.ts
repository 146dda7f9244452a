/**
 * selfhost: your own mail, web and XMPP server.
 * config → host (server, IPs, volume) → DKIM key → DNS → remote steps (base → backup → hardening → resolver → tls → web, mail → xmpp, webmail → status) → outputs;
 * port 25's TLSA record waits for the tls step, which prints the data of the server's key.
 * With secondaryMxLocation, a second machine (mx2) gets its own steps: base → hardening → resolver → tls → relay → status.
 * Each concern is one component; each remote step re-runs only when its own files change.
 */
import * as pulumi from "@pulumi/pulumi";
import { loadSettings } from "./config";
import { Host } from "./components/host";
import { DkimKey } from "./components/dkim";
import { Dns } from "./components/dns";
import { Base, stopWriters } from "./components/base";
import * as hardening from "./components/hardening";
import * as resolver from "./components/resolver";
import * as tls from "./components/tls";
import * as web from "./components/web";
import * as mail from "./components/mail";
import * as xmpp from "./components/xmpp";
import * as webmail from "./components/webmail";
import * as backup from "./components/backup";
import { Status } from "./components/status";
import { Relay, RELAY_PACKAGES, SECONDARY_UNITS, secondaryHandover, secondaryPorts } from "./components/secondary";
import { portOf } from "./services/catalog";

const settings = loadSettings();

/** The services that keep data on the volume. */
const dataUnits = [...web.dataUnits, ...mail.dataUnits, ...xmpp.dataUnits, ...webmail.dataUnits(settings)];
const host = new Host("host", { settings, beforePowerOff: stopWriters(dataUnits) });
const dkim = new DkimKey("dkim", { selector: settings.dkimSelector });
// The secondary MX: a second machine, with the server's deploy key (components/secondary.ts).
const mx2 = settings.secondaryMx;
const mx2Ports = (ssh: readonly number[]) => secondaryPorts(ssh, settings.adminSources);
const mx2Host = mx2 && new Host("mx2", {
    settings, beforePowerOff: "systemctl stop postfix || true", machine: { ...mx2, ports: mx2Ports, deployKey: host.deployKey },
});
// Port 25's TLSA data comes from each machine's tls step, which waits for the other records: given below.
const [tlsa, tlsaFromServer] = pulumi.deferredOutput<string[]>();
const [mx2Tlsa, tlsaFromMx2] = pulumi.deferredOutput<string[]>();
const dns = new Dns("dns", {
    settings,
    facts: {
        ipv4: host.ipv4, ipv6: host.ipv6, dkimPublicKeyPem: dkim.publicKeyPem, tlsa,
        ...mx2Host ? { secondary: { ipv4: mx2Host.ipv4, ipv6: mx2Host.ipv6, tlsa: mx2Tlsa } } : {},
    },
});

const connection = host.connection;
// Until a new sshPort has carried a whole `up`, the steps that move sshd and the firewall connect on
// the port SSH is proven on; every later step connects on sshPort (components/ssh.ts).
const sshPorts = host.ssh.apply(p => p.open);
const base = new Base("base", {
    settings,
    connection: host.provenConnection,
    sshPorts,
    packages: [...backup.packages(settings), ...hardening.packages, ...resolver.packages, ...tls.packages, ...web.packages(settings), ...mail.packages(settings), ...xmpp.packages, ...webmail.packages(settings)],
    preseed: webmail.preseed(settings),
    held: xmpp.heldUntilConfigured,
    dataUnits,
    // When this server is replaced: its outgoing queue onto the volume, then the last snapshot.
    handover: [mail.handover, backup.handover],
    dependsOn: [host.volumeAttachment!],
});
// Before any service is configured: an empty volume gets the latest snapshot back.
const backups = new backup.Backup("backup", { settings, connection: host.provenConnection, dependsOn: [base.step] });
const firewall = new hardening.Hardening("hardening", { settings, connection: host.provenConnection, sshPorts, dependsOn: [backups.step] });
const resolving = new resolver.Resolver("resolver", { settings, connection, dependsOn: [firewall.step] });
const certificate = new tls.Tls("tls", { settings, connection, ipv4: host.ipv4, nameservers: dns.nameservers, dependsOn: [resolving.step, ...dns.beforeServer] });
tlsaFromServer(certificate.tlsa);
new web.Web("web", { settings, connection, dependsOn: [certificate.step] });
const mailServer = new mail.Mail("mail", {
    settings, connection, ipv4: host.ipv4, ipv6: host.ipv6, dkimPrivateKeyPem: dkim.privateKeyPem, dependsOn: [certificate.step],
    ...mx2Host ? { secondaryIps: pulumi.all([mx2Host.ipv4, mx2Host.ipv6]) } : {},
});

const chat = new xmpp.Xmpp("xmpp", { settings, connection, passwords: mailServer.passwords, ipv4: host.ipv4, ipv6: host.ipv6, dependsOn: [mailServer.step] });
const webmailServer = settings.webmail ? new webmail.Webmail("webmail", { settings, connection, dependsOn: [mailServer.step] }) : undefined;
const status = new Status("status", {
    settings, connection, units: [...hardening.units, ...resolver.units, ...web.dataUnits, ...mail.units, ...xmpp.units, ...webmail.units(settings)],
    dependsOn: [chat.step, ...webmailServer ? [webmailServer.step] : []],
});
host.sshProven([status.step]);

// The secondary's own steps, as the server's: base (no volume), hardening with its ports, resolver, its certificate, the relay, its report.
if (mx2 && mx2Host) {
    const sshPorts = mx2Host.ssh.apply(p => p.open);
    const base = new Base("mx2-base", {
        settings, machine: mx2, connection: mx2Host.provenConnection, sshPorts,
        packages: [...RELAY_PACKAGES, ...hardening.packages, ...resolver.packages, ...tls.packages], preseed: [], held: [], dataUnits: [],
        handover: secondaryHandover(settings.hostname), dependsOn: [],
    });
    const firewall = new hardening.Hardening("mx2-hardening", { settings, connection: mx2Host.provenConnection, sshPorts, ports: mx2Ports, dependsOn: [base.step] });
    const resolving = new resolver.Resolver("mx2-resolver", { settings, connection: mx2Host.connection, dependsOn: [firewall.step] });
    const certificate = new tls.Tls("mx2-tls", {
        settings, connection: mx2Host.connection, ipv4: mx2Host.ipv4, nameservers: dns.nameservers, names: [mx2.hostname],
        dependsOn: [resolving.step, ...dns.beforeServer],
    });
    tlsaFromMx2(certificate.tlsa);
    const relay = new Relay("mx2-relay", {
        settings, connection: mx2Host.connection, ipv4: mx2Host.ipv4, ipv6: mx2Host.ipv6, primaryIpv4: host.ipv4, primaryIpv6: host.ipv6,
        dependsOn: [certificate.step],
    });
    const report = new Status("mx2-status", {
        settings, connection: mx2Host.connection, secondary: mx2, dependsOn: [relay.step],
        units: [...hardening.units, ...resolver.units, ...SECONDARY_UNITS],
    });
    mx2Host.sshProven([report.step]);
}

export const domain = settings.domain;
export const hostname = settings.hostname;
export const ipv4 = host.ipv4;
export const ipv6 = host.ipv6;
export const nameservers = dns.nameservers;
/** The DS record to add at your registrar (Gandi LiveDNS signs the zone): DNSSEC, which DANE needs, is whole only with it. */
export const dnssecDs = dns.ds;
export const records = dns.records;
export const zoneFile = dns.zoneFile;
export const dkimRecord = dns.records.apply(rs => rs.find(r => r.name === `${settings.dkimSelector}._domainkey`));
export const mailPasswords = mailServer.passwords;
export const caCertificate = certificate.caCertificate;
export const backupRepository = backups.repository;
export const backupPassword = backups.password;
export const backupSshPublicKey = backups.sshPublicKey;
export const sshCommand = pulumi.interpolate`ssh -p ${settings.sshPort} ${settings.adminUser}@${host.ipv4}`;
/** The server's host key as a known_hosts line: add it before the first login and no key is taken on trust. */
const knownHosts = (h: Host, name: string) => pulumi.interpolate`[${h.ipv4}]:${settings.sshPort},[${name}]:${settings.sshPort} ${h.hostPublicKey}`;
export const sshKnownHosts = knownHosts(host, settings.hostname);
/** The secondary MX, when there is one: its addresses, and its host key for your known_hosts (the admin logs in there too). */
export const secondaryMx = mx2 && mx2Host ? { hostname: mx2.hostname, ipv4: mx2Host.ipv4, ipv6: mx2Host.ipv6, sshKnownHosts: knownHosts(mx2Host, mx2.hostname) } : undefined;
export const mailSettings = {
    imap: { host: settings.hostname, port: portOf("imaps"), security: "TLS" },
    smtp: [
        { host: settings.hostname, port: portOf("submissions"), security: "TLS" },
        { host: settings.hostname, port: portOf("submission"), security: "STARTTLS" },
    ],
    sieve: { host: settings.hostname, port: portOf("sieve"), security: "STARTTLS" },
    username: `your full address, e.g. ${settings.users[0]?.name ?? "you"}@${settings.domain}`,
    ...settings.webmail ? { webmail: `https://${webmail.webmailName(settings)}/` } : {},
};
export const xmppSettings = {
    jidDomain: settings.domain,
    server: settings.hostname,
    ports: { starttls: portOf("xmpp-client"), directTls: portOf("xmpps-client") },
};
