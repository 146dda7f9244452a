/**
 * The peer: somebody else's server on the simulated internet (peer.test): a plain Debian Postfix that
 * uses DANE through its own validating resolver (unbound, trusting the simulated root), with rspamd as its verifier (it writes Authentication-Results into what it receives, so the test
 * reads SPF, DKIM and DMARC verdicts exactly as a receiving server reached them), and a plain Prosody
 * with a certificate from a CA of its own, for federation.
 */
import * as fs from "fs";
import * as path from "path";
import { Cleanup, must } from "./sh";
import { TestServer } from "./server";
import { NET, DnsRoot } from "./world";

export const PEER_USER = "carol";
/** carol's XMPP password on the peer (a test fixture of somebody else's server). */
export const PEER_XMPP_PASSWORD = "carol-on-the-peer";

/** A CA of the peer's own and a certificate for peer.test from it; the test server trusts this CA. */
export function peerCa(dir: string): { ca: string; cert: string; key: string } {
    fs.mkdirSync(dir, { recursive: true });
    const f = (n: string) => path.join(dir, n);
    const d = NET.peer.domain;
    must(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj '/CN=peer test CA' ` +
        `-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -keyout ${f("ca.key")} -out ${f("ca.pem")} 2>/dev/null`);
    must(`openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=${d} -keyout ${f("peer.key")} -out ${f("peer.csr")} 2>/dev/null`);
    fs.writeFileSync(f("ext"), `subjectAltName=DNS:${d},DNS:mta-sts.${d}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    must(`openssl x509 -req -in ${f("peer.csr")} -CA ${f("ca.pem")} -CAkey ${f("ca.key")} -CAcreateserial -days 30 -extfile ${f("ext")} -out ${f("peer.pem")} 2>/dev/null`);
    return { ca: f("ca.pem"), cert: fs.readFileSync(f("peer.pem"), "utf8"), key: fs.readFileSync(f("peer.key"), "utf8") };
}

/** The peer's DKIM key (selector e2e): the private key in PEM, its public half as the record's p= value. */
export function peerDkim(dir: string): { key: string; publicKey: string } {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "peer-dkim.key");
    must(`openssl genrsa -out ${file} 2048 2>/dev/null`);
    return { key: fs.readFileSync(file, "utf8"), publicKey: must(`openssl rsa -in ${file} -pubout -outform DER 2>/dev/null | base64 -w0`).trim() };
}

/** From now on the peer signs its own mail with DKIM (rspamd, for mail from its own pickup too), as most senders do. */
export function peerSigns(peer: TestServer, key: string): void {
    fs.mkdirSync(path.join(peer.root, "var/lib/rspamd/dkim"), { recursive: true });
    fs.writeFileSync(path.join(peer.root, "var/lib/rspamd/dkim/peer.test.e2e.key"), key);
    const r = peer.exec([
        "set -e",
        "chown -R _rspamd /var/lib/rspamd/dkim && chmod 600 /var/lib/rspamd/dkim/peer.test.e2e.key",
        // Mail from the pickup reaches rspamd without a client address: neither local nor authenticated, so "inbound".
        `printf '%s\n' 'sign_local = true;' 'sign_inbound = true;' 'use_domain = "header";' 'selector = "e2e";' ` +
            `'path = "/var/lib/rspamd/dkim/$domain.$selector.key";' > /etc/rspamd/local.d/dkim_signing.conf`,
        "postconf -e non_smtpd_milters=inet:127.0.0.1:11332",
        "systemctl restart rspamd && postfix reload >/dev/null 2>&1",
        "for i in $(seq 30); do ss -ltn | grep -q ':11332 ' && break; sleep 1; done",
    ].join("\n"));
    if (r.code !== 0) throw new Error(`the peer's DKIM signing: ${r.stdout}${r.stderr}`);
}

/** The peer's DNS: its own zone (with its DKIM key's record), and its PTR (added by the caller). */
export const peerZone = (dkimPublicKey: string): string[] => [
    // A TXT string holds 255 characters at most: the key goes in several.
    `e2e._domainkey 300 IN TXT ${(`v=DKIM1; k=rsa; p=${dkimPublicKey}`.match(/.{1,250}/g) ?? []).map(part => `"${part}"`).join(" ")}`,
    `@ 300 IN A ${NET.peer.ipv4}`,
    `@ 300 IN AAAA ${NET.peer.ipv6}`,
    "@ 300 IN MX 10 peer.test.",
    `@ 300 IN TXT "v=spf1 ip4:${NET.peer.ipv4} ip6:${NET.peer.ipv6} -all"`,
    // MTA-STS: mail to peer.test must go over TLS verified for peer.test (the policy is served by startPeer).
    `_mta-sts 300 IN TXT "v=STSv1; id=e2e1"`,
    `mta-sts 300 IN A ${NET.peer.ipv4}`,
];

/**
 * Two more mail domains the peer receives for, each with its MX named in a signed zone and a TLSA
 * record there (DANE-EE, the SHA-256 of the key): `dane.test` names the peer's key, `badtlsa.test`
 * a key nobody has (what a man in the middle's certificate looks like to DANE). No MTA-STS for either.
 */
export const DANE_DOMAINS = { good: "dane.test", bad: "badtlsa.test" };

/** Their zones: the TLSA of `spki` (hex SHA-256 of the peer's public key) for the good one. */
export function daneZones(spki: string): Record<string, string[]> {
    const zone = (tlsa: string) => [
        "@ 300 IN MX 10 mx", `mx 300 IN A ${NET.peer.ipv4}`, `_25._tcp.mx 300 IN TLSA 3 1 1 ${tlsa}`,
        `@ 300 IN TXT "v=spf1 ip4:${NET.peer.ipv4} -all"`,
    ];
    return { [DANE_DOMAINS.good]: zone(spki), [DANE_DOMAINS.bad]: zone(spki.replace(/^./, c => c === "0" ? "1" : "0")) };
}

/** The hex SHA-256 of a PEM certificate's public key (what a `3 1 1` TLSA record holds). */
export const spkiSha256 = (pem: string) =>
    must("openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1", { input: pem }).trim();

/** The peer's MTA-STS policy: enforce, its one MX. */
const PEER_POLICY = ["version: STSv1", "mode: enforce", `mx: ${NET.peer.domain}`, "max_age: 86400", ""].join("\r\n");

export async function startPeer(dir: string, trust: string[], tls: { cert: string; key: string }, dnsRoot: DnsRoot, cleanup: Cleanup): Promise<TestServer> {
    const peer = new TestServer({ name: "peer", dir, ipv4: NET.peer.ipv4, ipv6: NET.peer.ipv6, trust, dnsRoot }, cleanup);
    await peer.boot();
    fs.writeFileSync(path.join(peer.root, "etc/ssl/peer.pem"), tls.cert);
    fs.writeFileSync(path.join(peer.root, "etc/ssl/peer.key"), tls.key);
    const d = NET.peer.domain;
    const r = peer.exec([
        "set -e",
        `hostnamectl set-hostname ${d} 2>/dev/null || hostname ${d}`,
        `echo ${d} > /etc/mailname`,
        `echo 'postfix postfix/main_mailer_type select Internet Site' | debconf-set-selections`,
        `echo 'postfix postfix/mailname string ${d}' | debconf-set-selections`,
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get -q update >/dev/null",
        // unbound's own default is its built-in list of the real root's servers; the package's file is the world's here.
        "printf 'server:\\n    root-hints: /usr/share/dns/root.hints\\n' > /etc/unbound/unbound.conf.d/root-hints.conf",
        "apt-get -q install -y --no-install-recommends postfix rspamd swaks prosody unbound dns-root-data >/dev/null",
        // Its own validating resolver, as DANE needs: a TLSA record counts only when DNSSEC says it is genuine.
        "for i in $(seq 30); do ss -lnu | grep -q '127.0.0.1:53 ' && break; sleep 1; done",
        "echo 'nameserver 127.0.0.1' > /etc/resolv.conf",
        `useradd -m ${PEER_USER}`,
        `postconf -e myhostname=${d} mydestination=${[d, ...Object.values(DANE_DOMAINS)].join(",")},localhost inet_protocols=all` +
            " smtp_dns_support_level=dnssec smtp_tls_security_level=dane smtp_tls_loglevel=1" +
            " smtpd_tls_chain_files=/etc/ssl/peer.key,/etc/ssl/peer.pem" +
        " smtpd_milters=inet:127.0.0.1:11332 milter_default_action=accept milter_protocol=6" +
        // Retry soon after a greylisting deferral, so the test need not wait for Postfix's default backoff.
        " minimal_backoff_time=20s maximal_backoff_time=40s queue_run_delay=10s",
        "echo 'use = [\"authentication-results\"]; skip_local = false;' > /etc/rspamd/local.d/milter_headers.conf",
        // The peer's verifier must not greylist or reject the mail it is asked to judge.
        "echo 'greylist = null; reject = null;' > /etc/rspamd/local.d/actions.conf",
        "systemctl restart rspamd postfix",
        // Prosody for peer.test: federation only with verified certificates, like ours.
        "install -m 0644 /etc/ssl/peer.pem /etc/prosody/certs/peer.crt && install -m 0640 -g prosody /etc/ssl/peer.key /etc/prosody/certs/peer.key",
        `printf '%s\\n' 'log = { info = "*syslog" }' 'pidfile = "/run/prosody/prosody.pid"' ` +
        `'modules_enabled = { "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping" }' 's2s_secure_auth = true' ` +
        `'c2s_require_encryption = true' 'ssl = { certificate = "/etc/prosody/certs/peer.crt"; key = "/etc/prosody/certs/peer.key" }' ` +
        `'VirtualHost "${d}"' > /etc/prosody/prosody.cfg.lua`,
        `prosodyctl register ${PEER_USER} ${d} ${PEER_XMPP_PASSWORD}`,
        "systemctl restart prosody",
        // The MTA-STS policy over HTTPS, with the peer's certificate (which names mta-sts.peer.test too).
        "mkdir -p /srv/mta-sts/.well-known",
        `printf '%s' '${PEER_POLICY}' > /srv/mta-sts/.well-known/mta-sts.txt`,
        "systemd-run --quiet --unit=mta-sts-policy --property=WorkingDirectory=/srv/mta-sts " +
            "openssl s_server -quiet -WWW -accept 443 -cert /etc/ssl/peer.pem -key /etc/ssl/peer.key",
    ].join("\n"));
    if (r.code !== 0) throw new Error(`peer set-up failed: ${r.stdout}${r.stderr}`);
    return peer;
}
