# selfhost: at delivery, after encryption. rspamd marks spam: it is filed into Junk, never rejected,
# rewritten or forwarded. Other mail goes to each forward address of its mailbox (users[].forwards) as
# a copy; the mailbox keeps its own. Postfix gives a forwarded copy an SRS sender as it leaves.
require ["fileinto", "mailbox", "envelope", "subaddress", "copy"];
if anyof (header :is "X-Spam" "Yes", header :matches "X-Spam-Status" "Yes*") {
  fileinto :create "Junk";
  stop;
}
{{forwards}}
