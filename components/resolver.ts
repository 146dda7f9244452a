/**
 * The server's own validating DNS resolver (unbound): blocklists answer it (they refuse big shared
 * resolvers such as a provider's), and its DNSSEC validation is what lets Postfix use DANE.
 * /etc/resolv.conf points at it only once it answers with validated data; until then, and if it ever
 * cannot, the server keeps the resolvers it came with.
 */
import * as pulumi from "@pulumi/pulumi";
import { RemoteStep, ServiceArgs } from "./remote/step";
import { renderTemplate } from "../services/template";
import { LOCAL_PORTS } from "../services/catalog";

/** dns-root-data is only Recommended by unbound, and its root servers and trust anchor are what unbound starts from. */
export const packages = ["unbound", "dns-root-data", "bind9-dnsutils"];
export const units = ["unbound"];

const STAGED = "/etc/selfhost/resolv.conf";
/** The resolvers the server came with (the provider's), kept when ours takes over. */
const PREVIOUS = "/etc/selfhost/resolv.conf.provider";

export class Resolver extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: ServiceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Resolver", name, {}, opts);
        this.step = new RemoteStep(name, {
            connection: args.connection,
            files: [
                { path: "/etc/unbound/unbound.conf.d/selfhost.conf", content: renderTemplate("unbound/selfhost.conf", {}) },
                { path: STAGED, content: renderTemplate("unbound/resolv.conf", { previous: PREVIOUS }) },
            ],
            check: "check unbound-checkconf",
            run: [
                "systemctl enable --quiet unbound",
                "changed_in /etc/unbound && systemctl restart unbound",
                "systemctl is-active --quiet unbound || systemctl start unbound",
                // Validated answers (the ad flag) for the root itself: only then does the server rely on it.
                "validates() { dig +time=3 +tries=2 +dnssec @127.0.0.1 . SOA 2>&1 | grep -q 'flags:[^;]* ad[ ;]'; }",
                "for _ in $(seq 20); do validates && break; sleep 1; done",
                "validates || { log \"unbound does not answer with validated data; /etc/resolv.conf is left as it was\"; dig +dnssec @127.0.0.1 . SOA >&2 || true; exit 1; }",
                `if ! cmp -s ${STAGED} /etc/resolv.conf; then`,
                `    [ -e ${PREVIOUS} ] || cp --dereference /etc/resolv.conf ${PREVIOUS} 2>/dev/null || true`,
                // A symlink (a resolver manager's file) is replaced by our own file.
                `    cp ${STAGED} /etc/resolv.conf.selfhost && mv -f /etc/resolv.conf.selfhost /etc/resolv.conf && log "resolv.conf: this server's own resolver"`,
                // rspamd reads resolv.conf once, when it starts (Postfix's processes read it as they come).
                "    systemctl try-restart rspamd",
                `    ! systemctl is-active --quiet rspamd || listening ${LOCAL_PORTS.rspamdMilter} rspamd`,
                "fi",
            ].join("\n"),
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
