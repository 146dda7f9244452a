/**
 * The simulated internet's Debian mirror: Debian's apt-cacher-ng on this machine's end of the bridge,
 * port 80, in front of the archives this machine's own apt uses. The test hosts resolve the archives'
 * name to it (server.ts), so every host fetches a package from the real mirror once per machine and
 * from here after that: the first-boot benchmark and its baseline download the same bytes locally.
 */
import * as fs from "fs";
import * as path from "path";
import { daemon, waitFor, sh, Cleanup } from "./sh";
import { NET } from "./world";
import { CACHE, debianArchives, cachedArchive } from "./server";

/** Kept between runs, like the image: a fresh machine starts cold. */
const CACHE_DIR = path.join(CACHE, "apt");

export interface AptCache {
    /** Whether the cache held packages when this run began. */
    readonly warmAtStart: boolean;
    /** Bytes fetched from the real mirror and bytes served to the test hosts, since the cache started. */
    traffic(): { fetched: number; served: number };
}

export async function startAptCache(dir: string, cleanup: Cleanup): Promise<AptCache> {
    fs.mkdirSync(dir, { recursive: true });
    fs.mkdirSync(CACHE_DIR, { recursive: true });
    const warmAtStart = sh(`find ${CACHE_DIR} -path '*/pool/*' -name '*.deb' -print -quit`).stdout.trim() !== "";
    // Requests arrive as to the mirror itself ("GET /debian/pool/…", Host: the mirror): each archive's path
    // is mapped to that archive.
    const remaps = Object.entries(debianArchives()).filter(([, url]) => cachedArchive(url))
        .map(([name, url]) => `Remap-${name}: ${new URL(url).pathname.replace(/\/$/, "")} ; ${url}/`);
    fs.writeFileSync(path.join(dir, "acng.conf"), [
        `CacheDir: ${CACHE_DIR}`, `LogDir: ${dir}`, "SupportDir: /usr/lib/apt-cacher-ng",
        `BindAddress: ${NET.gateway4}`, "Port: 80", "ForeGround: 1", ...remaps, "",
    ].join("\n"));
    const acng = daemon(["apt-cacher-ng", "-c", dir], path.join(dir, "out.log"));
    cleanup.add("apt cache", () => { try { process.kill(acng.pid!); } catch { /* gone */ } });
    await waitFor("the apt cache to listen", 20, () => sh(`ss -ltn 'sport = :80' | grep -q '${NET.gateway4}:80'`).code === 0);
    const log = path.join(dir, "apt-cacher.log");
    return {
        warmAtStart,
        traffic: () => {
            // Each line: time|I or O|bytes|client|path — I: in from the mirror, O: out to a host.
            const lines = fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").map(l => l.split("|")) : [];
            const sum = (kind: string) => lines.filter(f => f[1] === kind).reduce((n, f) => n + Number(f[2]), 0);
            return { fetched: sum("I"), served: sum("O") };
        },
    };
}
