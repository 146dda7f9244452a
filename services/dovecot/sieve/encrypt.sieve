# selfhost: runs first at delivery. Mail to a mailbox with an OpenPGP key goes through the filter, which
# encrypts it (or declines, leaving it unchanged, when it already is); nobody else's mail starts a process.
# Later rules still see the outer headers.
require ["envelope", "subaddress", "vnd.dovecot.filter"];
if {{encryptedMailboxes}} {
  if filter "openpgp-encrypt" {
  }
}
