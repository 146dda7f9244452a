-- selfhost: Prosody for {{domain}}. Every mail account is an XMPP account with the same address
-- and password; nobody can register. Data lives on the volume.
pidfile = "/run/prosody/prosody.pid"
data_path = "{{dataDir}}"
log = { info = "*syslog" }

modules_enabled = {
    "roster"; "saslauth"; "tls"; "dialback"; "disco";
    "carbons"; "pep"; "private"; "blocklist"; "bookmarks"; "vcard4"; "vcard_legacy";
    "mam"; "smacks"; "csi_simple"; "ping"; "time";
    "server_contact_info";
    -- Push (XEP-0357) for clients that register an app server (iOS clients, battery-saving Android ones).
    "cloud_notify";
    -- Calls: STUN/TURN credentials for logged-in users (XEP-0215), checked by coturn with the shared secret.
    "turn_external";
    -- prosodyctl shell: a unix socket for root only; the step manages accounts through it.
    "admin_shell";
    -- Failed logins with the client's address, for fail2ban (from prosody-modules).
    "log_auth";
}
-- No version disclosure: mod_version and mod_uptime are not loaded.
modules_disabled = { "version"; "uptime" }

allow_registration = false
authentication = "internal_hashed"
c2s_require_encryption = true
s2s_require_encryption = true
-- Federation only with servers whose certificate is valid for their domain.
s2s_secure_auth = true
archive_expires_after = "1y"

-- The stack's certificate, copied here (readable by prosody) by the TLS deploy hook.
ssl = {
    certificate = "{{certDir}}/selfhost.crt";
    key = "{{certDir}}/selfhost.key";
    -- services/tls-policy.ts
    protocol = "{{prosodyProtocol}}";
    ciphers = "{{tlsCiphers}}";
}
c2s_ports = { {{c2sPort}} }
c2s_direct_tls_ports = { {{c2sTlsPort}} }
s2s_ports = { {{s2sPort}} }
-- HTTP only on loopback; nginx serves it as https://upload.{{domain}}/.
http_ports = { {{httpPort}} }
http_interfaces = { "127.0.0.1", "::1" }
https_ports = { }

-- A push notification says that something arrived, never what or from whom: app servers are third parties.
push_notification_with_body = false
push_notification_with_sender = false

-- coturn on this server (services/coturn/turnserver.conf); credentials expire after {{turnTtl}} seconds.
turn_external_host = "{{hostname}}"
turn_external_port = {{turnPort}}
turn_external_tls_port = {{turnsPort}}
turn_external_ttl = {{turnTtl}}
turn_external_secret = FileLine("{{turnSecret}}")

-- SOCKS5 file transfer proxy (XEP-0065) at proxy.{{domain}}, for Jingle file transfers between clients that
-- cannot reach each other; only this server's users may start a transfer through it.
proxy65_ports = { {{proxyPort}} }

contact_info = {
    abuse = { "mailto:abuse@{{domain}}" };
    admin = { "mailto:{{adminEmail}}" };
}

VirtualHost "{{domain}}"

Component "conference.{{domain}}" "muc"
    modules_enabled = { "muc_mam" }
    restrict_room_creation = "local"

Component "upload.{{domain}}" "http_file_share"
    http_host = "upload.{{domain}}"
    http_external_url = "https://upload.{{domain}}/"
    http_file_share_size_limit = {{uploadLimit}}
    http_file_share_expires_after = {{uploadExpires}}
    http_file_share_global_quota = {{uploadQuota}}

Component "proxy.{{domain}}" "proxy65"
    proxy65_acl = { "{{domain}}" }
