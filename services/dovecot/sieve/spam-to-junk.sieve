# selfhost: rspamd marks spam; it is filed into Junk, never rejected or rewritten.
require ["fileinto", "mailbox"];
if anyof (header :is "X-Spam" "Yes", header :matches "X-Spam-Status" "Yes*") {
  fileinto :create "Junk";
  stop;
}
