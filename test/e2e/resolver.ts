/** The server's own validating resolver, seen from inside: what it trusts, what it refuses, and why it matters for blocklists. */
import { TestServer } from "./server";
import { Checks } from "./checks";
import { NET } from "./world";

export function resolverChecks(checks: Checks, server: TestServer, listed: string): void {
    const dig = (args: string) => server.exec(`dig +time=3 +tries=2 ${args}`).stdout;
    checks.check("the server asks its own resolver (resolv.conf: 127.0.0.1, trust-ad); the provider's are kept aside", () => {
        const r = server.exec("grep -v '^#' /etc/resolv.conf; grep -c . /etc/selfhost/resolv.conf.provider");
        return /^nameserver 127\.0\.0\.1\noptions edns0 trust-ad\n[1-9]/.test(r.stdout) ? undefined : r.stdout + r.stderr;
    });
    checks.check("its answers are validated from the root down (the ad flag on the test domain's SOA)", () => {
        const r = dig("+dnssec example.test SOA");
        return /flags:[^;]* ad[ ;]/.test(r) && /status: NOERROR/.test(r) ? undefined : r;
    });
    checks.check("an answer whose signature does not match its parent's DS is refused (SERVFAIL), not used", () => {
        const r = dig("bogus.test A");
        return /status: SERVFAIL/.test(r) ? undefined : r;
    });
    const query = `${listed.split(".").reverse().join(".")}.zen.spamhaus.org A`;
    checks.check("the blocklist answers the server's resolver, while the provider's resolver gets no answer (as Spamhaus refuses Hetzner's)", () => {
        const [ours, provider] = [dig(`+short ${query}`).trim(), dig(`@${NET.inet.resolver} ${query}`)];
        // knot's query ACL refuses with NOTAUTH; a real blocklist answers a refused resolver 127.255.255.x: no listing either way.
        return ours === "127.0.0.2" && /status: (REFUSED|NOTAUTH)/.test(provider) && /ANSWER: 0/.test(provider) ? undefined : `ours: ${ours}; the provider's: ${provider}`;
    });
}
