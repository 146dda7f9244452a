#!/bin/sh
# selfhost: the one deploy hook. certbot runs it after every issuance and renewal (and the tls step
# after installing a private-CA certificate); every running service that uses the certificate reloads.
set -u
for unit in {{consumers}}; do
    if systemctl is-active --quiet "$unit"; then
        systemctl reload "$unit" || echo "selfhost-tls-deployed: reloading $unit failed" >&2
    fi
done
