/**
 * A daemon that runs only while it is used (services/on-demand/). systemd holds the socket its clients
 * connect to; the first connection starts a proxy (systemd-socket-proxyd), which starts the daemon, waits
 * until it is ready and passes the connection on. Idle for IDLE, the proxy exits and the daemon, needed by
 * nothing else, stops with it. Clients see one more hop and, after an idle spell, the daemon's start-up.
 */
import { StepFile } from "../components/remote/step";
import { renderTemplate } from "./template";

/** How long a daemon outlives its last connection. */
const IDLE = "5min";

export interface OnDemand {
    /** The socket's and its proxy's unit (selfhost-…). */
    readonly name: string;
    readonly description: string;
    /** Why it runs only when used (the socket file says so). */
    readonly why: string;
    /** Where clients connect (ListenStream=), and what else the socket needs (its owner and mode). */
    readonly listen: string;
    readonly socketOptions?: readonly string[];
    /** The daemon's unit, and where it listens for the proxy. */
    readonly daemon: string;
    readonly daemonSocket: string;
    /** Who the proxy runs as: one who may connect to the daemon's socket. */
    readonly proxyUser: string;
}

/** The socket, its proxy and the daemon's drop-in. */
export function onDemandFiles(o: OnDemand): StepFile[] {
    const values = { name: o.name, description: o.description, why: o.why, daemon: o.daemon, daemonSocket: o.daemonSocket,
        socket: [`ListenStream=${o.listen}`, ...o.socketOptions ?? []].join("\n"), user: o.proxyUser, idle: IDLE };
    return [
        { path: `/etc/systemd/system/${o.name}.socket`, content: renderTemplate("on-demand/socket", values) },
        { path: `/etc/systemd/system/${o.name}.service`, content: renderTemplate("on-demand/proxy.service", values) },
        { path: `/etc/systemd/system/${o.daemon}.service.d/selfhost-on-demand.conf`, content: renderTemplate("on-demand/stop-when-unneeded.conf", values) },
    ];
}

/** The unit that must be up: the socket (the daemon itself is down while idle). */
export const onDemandUnit = (o: OnDemand) => `${o.name}.socket`;

/** New settings: the next connection starts the daemon with them, and the socket listens with its own. */
export const restartOnDemand = (o: OnDemand) =>
    `{ systemctl stop ${o.name}.socket ${o.name}.service ${o.daemon}; systemctl start ${o.name}.socket; }`;
