# selfhost: runs first at delivery; the filter encrypts for users with an OpenPGP key and declines
# (leaving the message unchanged) for everyone else. Later rules still see the outer headers.
require ["vnd.dovecot.filter"];
if filter "openpgp-encrypt" {
}
