#!/bin/sh
# selfhost: the one deploy hook. certbot runs it after every issuance and renewal (and the tls step
# after installing a private-CA certificate); every running service that uses the certificate reloads.
set -u
# Prosody reads its certificate as its own user: it gets a copy it may read.
if [ -d /etc/prosody/certs ]; then
    install -m 0644 {{certDir}}/fullchain.pem /etc/prosody/certs/selfhost.crt
    install -m 0640 -g prosody {{certDir}}/privkey.pem /etc/prosody/certs/selfhost.key
fi
for unit in {{consumers}}; do
    if systemctl is-active --quiet "$unit"; then
        systemctl reload "$unit" || echo "selfhost-tls-deployed: reloading $unit failed" >&2
    fi
done
