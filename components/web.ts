import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../config";
import { DATA_DIR } from "../cloud-init";
import { RemoteStep, Connection } from "./remote/step";
import { servedNames } from "./dns/records";
import { CERT_DIR } from "./tls";
import { renderTemplate } from "../services/template";

export const WEB_ROOT = `${DATA_DIR}/www/site`;
export const packages = ["nginx"];

export interface WebArgs {
    readonly settings: Settings;
    readonly connection: Connection;
    readonly dependsOn: pulumi.Input<pulumi.Resource>[];
}

/** nginx over HTTPS with the stack's certificate, serving the site from the data volume. */
export class Web extends pulumi.ComponentResource {
    readonly step: RemoteStep;

    constructor(name: string, args: WebArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:Web", name, {}, opts);
        const s = args.settings;
        this.step = new RemoteStep("web", {
            connection: args.connection,
            // A placeholder page until the owner publishes a site; never overwrites one.
            prepare: `install -d -m 0755 ${WEB_ROOT}\n[ -e ${WEB_ROOT}/index.html ] || echo '<!doctype html><title>${s.domain}</title><p>${s.domain}</p>' > ${WEB_ROOT}/index.html`,
            files: [{
                path: "/etc/nginx/conf.d/selfhost-https.conf",
                content: renderTemplate("nginx/https.conf", { serverNames: servedNames(s).join(" "), certDir: CERT_DIR, webRoot: WEB_ROOT }),
            }],
            check: "check nginx -t",
            run: "changed && systemctl reload nginx",
            dependsOn: args.dependsOn,
        }, { parent: this });
        this.registerOutputs({});
    }
}
