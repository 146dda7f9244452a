/**
 * The peer: somebody else's mail server on the simulated internet (peer.test), a plain Debian Postfix
 * with rspamd as its verifier. It writes Authentication-Results into what it receives, so the test
 * reads SPF, DKIM and DMARC verdicts exactly as a receiving server reached them.
 */
import { Cleanup } from "./sh";
import { TestServer } from "./server";
import { NET } from "./world";

export const PEER_USER = "carol";

/** The peer's DNS: its own zone, and its PTR (added by the caller). */
export const peerZone = (): string[] => [
    `@ 300 IN A ${NET.peer.ipv4}`,
    `@ 300 IN AAAA ${NET.peer.ipv6}`,
    "@ 300 IN MX 10 peer.test.",
    `@ 300 IN TXT "v=spf1 ip4:${NET.peer.ipv4} ip6:${NET.peer.ipv6} -all"`,
];

export async function startPeer(dir: string, trust: string[], cleanup: Cleanup): Promise<TestServer> {
    const peer = new TestServer({ name: "peer", dir, ipv4: NET.peer.ipv4, ipv6: NET.peer.ipv6, trust }, cleanup);
    await peer.boot();
    const d = NET.peer.domain;
    const r = peer.exec([
        "set -e",
        `hostnamectl set-hostname ${d} 2>/dev/null || hostname ${d}`,
        `echo ${d} > /etc/mailname`,
        `echo 'postfix postfix/main_mailer_type select Internet Site' | debconf-set-selections`,
        `echo 'postfix postfix/mailname string ${d}' | debconf-set-selections`,
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get -q update >/dev/null",
        "apt-get -q install -y --no-install-recommends postfix rspamd swaks >/dev/null",
        `useradd -m ${PEER_USER}`,
        `postconf -e myhostname=${d} mydestination=${d},localhost inet_protocols=all smtp_tls_security_level=may` +
        " smtpd_milters=inet:127.0.0.1:11332 milter_default_action=accept milter_protocol=6" +
        // Retry soon after a greylisting deferral, so the test need not wait for Postfix's default backoff.
        " minimal_backoff_time=20s maximal_backoff_time=40s queue_run_delay=10s",
        "echo 'use = [\"authentication-results\"]; skip_local = false;' > /etc/rspamd/local.d/milter_headers.conf",
        // The peer's verifier must not greylist or reject the mail it is asked to judge.
        "echo 'greylist = null; reject = null;' > /etc/rspamd/local.d/actions.conf",
        "systemctl restart rspamd postfix",
    ].join("\n"));
    if (r.code !== 0) throw new Error(`peer set-up failed: ${r.stdout}${r.stderr}`);
    return peer;
}
