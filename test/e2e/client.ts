/**
 * The client: a Debian 13 container in the simulated internet's "client" network namespace, with its
 * own declared tools. Every check that plays "somebody on the internet" runs here, so the tools come
 * from this list on every machine (nothing installed by hand on the test machine can stand in), and
 * their versions are Debian 13's whatever the machine runs.
 */
import * as path from "path";
import { Cleanup, containerFor } from "./sh";
import { TestServer } from "./server";
import { NET } from "./world";

/** ssh's options for the checks' logins from the client: no prompt, no host key kept (the steps pin the key; these checks are about other things). */
export const SSH_OPTIONS = "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null";

/** The client's tools, Depends only (as apt installs here); a Recommends a check needs is named here. */
export const CLIENT_PACKAGES = [
    "openssh-client", "openssl", "curl", "netcat-openbsd", "knot-dnsutils", "nmap", "git",
    // swaks speaks TLS through these (only Recommends of swaks).
    "swaks", "libnet-ssleay-perl", "libio-socket-ssl-perl",
    "sieve-connect",
    // HTTP upload (XEP-0363) in slixmpp needs aiohttp, a Recommends of python3-slixmpp.
    "python3", "python3-slixmpp", "python3-aiohttp",
    // A person at a browser: Chromium driven by Selenium through chromedriver; certutil puts the world's
    // root in Chromium's trust store; a font so the screenshots can be read.
    "chromium", "chromium-driver", "python3-selenium", "libnss3-tools", "fonts-dejavu-core",
    // A call's two ends for TURN: turnutils_uclient and turnutils_peer.
    "coturn",
];

/** The repository, so the client runs the test's own scripts (imap.py, xmpp.py) at the same paths. */
const REPO = path.join(__dirname, "..", "..");

/** Boots the client in NET.client's namespace; from then on `sh(…, { ns: NET.client.ns })` runs inside it. */
export async function startClient(work: string, cleanup: Cleanup): Promise<TestServer> {
    const client = new TestServer({
        name: "client", dir: `${work}.client`, ipv4: NET.client.ipv4, ipv6: NET.client.ipv6, trust: [],
        packages: CLIENT_PACKAGES, netns: NET.client.ns,
        binds: [{ dir: work }, { dir: REPO, readOnly: true }],
    }, cleanup);
    await client.boot();
    containerFor(NET.client.ns, () => client.initPid());
    return client;
}
