#!/bin/sh
# selfhost: the one deploy hook. certbot runs it after every issuance and renewal (and the tls step
# after installing a private-CA certificate); every running service that uses the certificate reloads.
set -u
# Daemons that read their certificate as their own user (Prosody, coturn) get a copy their group may read.
for copy in {{copies}}; do
    group=${copy%%:*} dir=${copy#*:}
    [ -d "$dir" ] || continue
    install -m 0644 {{certDir}}/fullchain.pem "$dir/selfhost.crt"
    install -m 0640 -g "$group" {{certDir}}/privkey.pem "$dir/selfhost.key"
done
for unit in {{consumers}}; do
    if systemctl is-active --quiet "$unit"; then
        systemctl reload "$unit" || echo "selfhost-tls-deployed: reloading $unit failed" >&2
    fi
done
