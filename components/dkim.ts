import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

export interface DkimKeyArgs {
    /** Published at <selector>._domainkey.<domain>. */
    readonly selector: string;
}

/**
 * The domain's DKIM signing key. Made by the stack (secret in state) so the same key feeds the signer
 * on the server and the TXT record, and survives any server replacement.
 */
export class DkimKey extends pulumi.ComponentResource {
    readonly selector: string;
    readonly publicKeyPem: pulumi.Output<string>;
    /** PKCS#8/PEM private key for the signer; secret. */
    readonly privateKeyPem: pulumi.Output<string>;

    constructor(name: string, args: DkimKeyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("selfhost:index:DkimKey", name, {}, opts);
        // RSA 2048: what every verifier accepts and what fits a TXT record; ed25519 DKIM is not yet widely verified.
        const key = new tls.PrivateKey(`${name}-${args.selector}`, { algorithm: "RSA", rsaBits: 2048 }, { parent: this });
        this.selector = args.selector;
        this.publicKeyPem = key.publicKeyPem;
        this.privateKeyPem = pulumi.secret(key.privateKeyPem);
        this.registerOutputs({ selector: this.selector, publicKeyPem: this.publicKeyPem });
    }
}
