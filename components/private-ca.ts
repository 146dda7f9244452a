/**
 * The private CA's certificate (tlsMode private-ca), as a Pulumi dynamic provider. It exists because
 * the tls provider cannot write name constraints: this CA may vouch for the domain and its subdomains
 * only, and for no IP address, so a client that trusts it trusts nothing else by it (RFC 5280 §4.2.1.10).
 *
 * The certificate is DER written here and signed with Node's crypto: ECDSA P-256 with SHA-256, the
 * CA's key from the tls provider. It lives LIFE_DAYS and is replaced (same key and name) by the first
 * `up` or `preview` of its last RENEW_DAYS: clients that trust the old or the new certificate verify
 * the server through that time.
 *
 * The class is serialized into the state and run by Pulumi in a process of its own: it uses only Node's
 * modules and the functions and numbers of this file (a Buffer would not survive serialization).
 */
import * as pulumi from "@pulumi/pulumi";

export const LIFE_DAYS = 5 * 365;
export const RENEW_DAYS = 365;

export interface PrivateCaArgs {
    /** The CA's key (PEM), ECDSA P-256. */
    readonly privateKeyPem: string;
    /** The one DNS subtree the CA may vouch for. */
    readonly domain: string;
}

interface PrivateCaState extends PrivateCaArgs {
    readonly certPem: string;
    /** When the certificate ends, ISO 8601. */
    readonly notAfter: string;
}

/** Inputs whose change makes another certificate: another key or another domain. */
export const CA_REPLACED_ON = ["privateKeyPem", "domain"] as const;

// DER, as much of it as a certificate needs (X.690).
const tlv = (tag: number, content: Buffer): Buffer => {
    const n = content.length;
    const length = n < 0x80 ? [n] : (() => { const b: number[] = []; for (let v = n; v > 0; v >>= 8) b.unshift(v & 0xff); return [0x80 | b.length, ...b]; })();
    return Buffer.concat([Buffer.from([tag, ...length]), content]);
};
const seq = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat(items));
const integer = (bytes: Buffer) => tlv(0x02, bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
const oid = (dotted: string): Buffer => {
    const [a, b, ...rest] = dotted.split(".").map(Number);
    const arcs = rest.flatMap(v => { const out = [v & 0x7f]; for (v >>= 7; v > 0; v >>= 7) out.unshift(0x80 | (v & 0x7f)); return out; });
    return tlv(0x06, Buffer.from([40 * a + b, ...arcs]));
};
const utf8 = (text: string) => tlv(0x0c, Buffer.from(text, "utf8"));
const bitString = (bytes: Buffer, unused = 0) => tlv(0x03, Buffer.concat([Buffer.from([unused]), bytes]));
const octets = (bytes: Buffer) => tlv(0x04, bytes);
// A function, not a Buffer constant: the serializer would capture a Buffer as a plain object.
const TRUE = () => tlv(0x01, Buffer.from([0xff]));
/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
const time = (d: Date): Buffer => {
    const text = d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
    return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(text.slice(2))) : tlv(0x18, Buffer.from(text));
};
const extension = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [TRUE()] : []), octets(value));

/** A CA certificate for `domain`, signed by its own key, valid from `from` for LIFE_DAYS. */
export function caCertificate(a: PrivateCaArgs, from: Date): { certPem: string; notAfter: string } {
    const crypto: typeof import("crypto") = require("crypto");
    const key = crypto.createPrivateKey(a.privateKeyPem);
    const publicKey = crypto.createPublicKey(key);
    const spki = publicKey.export({ format: "der", type: "spki" });
    const jwk = publicKey.export({ format: "jwk" });
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]);
    const name = seq(set(seq(oid("2.5.4.3"), utf8(`${a.domain} private CA`))), set(seq(oid("2.5.4.10"), utf8(a.domain))));
    const until = new Date(from.getTime() + LIFE_DAYS * 86_400_000);
    const ecdsaWithSha256 = seq(oid("1.2.840.10045.4.3.2"));
    // Positive, and its first byte never 0: DER's INTEGER is minimal, and OpenSSL refuses a certificate whose
    // serial starts with a needless zero byte (1 in 256 serials did, before).
    const serial = crypto.randomBytes(16);
    serial[0] = 0x40 | (serial[0] & 0x3f);
    const tbs = seq(
        tlv(0xa0, integer(Buffer.from([2]))),
        integer(serial),
        ecdsaWithSha256,
        name,
        seq(time(from), time(until)),
        name,
        spki,
        tlv(0xa3, seq(
            // A CA for server certificates only: no CA below it.
            extension("2.5.29.19", true, seq(TRUE(), integer(Buffer.from([0])))),
            // keyCertSign and cRLSign.
            extension("2.5.29.15", true, bitString(Buffer.from([0x06]), 1)),
            extension("2.5.29.14", false, octets(crypto.createHash("sha1").update(point).digest())),
            // Permitted: the domain and every name below it. Excluded: every IPv4 and IPv6 address.
            extension("2.5.29.30", true, seq(
                tlv(0xa0, seq(tlv(0x82, Buffer.from(a.domain, "ascii")))),
                tlv(0xa1, Buffer.concat([seq(tlv(0x87, Buffer.alloc(8))), seq(tlv(0x87, Buffer.alloc(32)))])),
            )),
        )),
    );
    const der = seq(tbs, ecdsaWithSha256, bitString(crypto.sign("sha256", tbs, key)));
    const body = der.toString("base64").match(/.{1,64}/g)!.join("\n");
    return { certPem: `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`, notAfter: until.toISOString() };
}

/** Whether a certificate ending at `notAfter` is due for renewal at `now`. */
export const renewalDue = (notAfter: string, now: Date) => now.getTime() >= new Date(notAfter).getTime() - RENEW_DAYS * 86_400_000;

export class PrivateCaProvider implements pulumi.dynamic.ResourceProvider {
    async diff(_id: string, olds: PrivateCaState, news: PrivateCaArgs): Promise<pulumi.dynamic.DiffResult> {
        const replaces: string[] = CA_REPLACED_ON.filter(k => olds[k] !== news[k]);
        if (!replaces.length && renewalDue(olds.notAfter, new Date())) replaces.push("notAfter");
        return { changes: replaces.length > 0, replaces };
    }

    async create(a: PrivateCaArgs): Promise<pulumi.dynamic.CreateResult<PrivateCaState>> {
        // An hour early: a client whose clock is a little behind still accepts it.
        const cert = caCertificate(a, new Date(Date.now() - 3_600_000));
        return { id: `${a.domain} ${cert.notAfter}`, outs: { ...a, ...cert } };
    }
}

/** The private CA's certificate: `certPem`, name-constrained to the domain. */
export class PrivateCa extends pulumi.dynamic.Resource {
    declare readonly certPem: pulumi.Output<string>;

    constructor(name: string, args: { privateKeyPem: pulumi.Input<string>; domain: string }, opts?: pulumi.CustomResourceOptions) {
        super(new PrivateCaProvider(), name, { ...args, certPem: undefined, notAfter: undefined },
            { ...opts, additionalSecretOutputs: ["privateKeyPem"] }, "selfhost", "PrivateCa");
    }
}
