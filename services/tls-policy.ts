/**
 * The TLS every service speaks, written down once: Mozilla's "intermediate" configuration (guidelines
 * 5.7) — TLS 1.2 and 1.3, forward-secret AEAD ciphers only, the client's preference (every choice here is
 * strong). TLS 1.3's suites are OpenSSL's defaults, all of them strong. nginx, Dovecot, Prosody and
 * Postfix's submission ports take exactly this; Postfix's port 25 alone stays open to older mail servers
 * (TLS 1.0 and its ciphers: opportunistic TLS beats plaintext, which such a peer would fall back to) but
 * never offers what gives no secrecy or no authentication at all.
 */
export const TLS_POLICY = {
    minProtocol: "TLSv1.2",
    ciphers: [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].join(":"),
    /** Never, on any port: no encryption, no authentication, export-grade or broken primitives. */
    neverCiphers: ["aNULL", "eNULL", "EXPORT", "DES", "RC4", "MD5", "PSK", "SRP", "3DES"].join(", "),
    /** Port 25's floor (old peers): below it, mail goes in plaintext, which is worse. */
    mxMinProtocol: "TLSv1",
} as const;

/** The policy as template values, the names every service template uses. */
export const tlsValues = () => ({
    tlsMinProtocol: TLS_POLICY.minProtocol, tlsCiphers: TLS_POLICY.ciphers,
    tlsNeverCiphers: TLS_POLICY.neverCiphers, tlsMxMinProtocol: TLS_POLICY.mxMinProtocol,
});
