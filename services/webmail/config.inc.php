<?php
// selfhost: Roundcube for {{domain}}, written by the stack's webmail step (components/webmail.ts);
// Debian's defaults are in defaults.inc.php. Edits here are undone by the next `pulumi up`.
$config = [];

// Settings, contacts, identities and sessions: SQLite on the data volume (in the backups, on the next server).
$config['db_dsnw'] = 'sqlite:///{{database}}?mode=0640';
// Encrypts the IMAP password kept in the session; made on the server, readable by this service alone.
$config['des_key'] = trim(file_get_contents('{{desKeyFile}}'));

// Our own IMAP and SMTP (ManageSieve: plugins/managesieve/config.inc.php), on loopback, over TLS verified
// against the server's name. (Loopback: failed logins through the webmail are counted by its own fail2ban
// jail, by the address they came from.)
$tls = {{tlsOptions}};
$config['imap_host'] = 'ssl://127.0.0.1:{{imapsPort}}';
$config['imap_conn_options'] = $tls;
$config['smtp_host'] = 'ssl://127.0.0.1:{{submissionsPort}}';
$config['smtp_conn_options'] = $tls;
$config['smtp_user'] = '%u';
$config['smtp_pass'] = '%p';
// The login is the full address, as for every other client; no domain is guessed.
$config['username_domain'] = '';
$config['login_lc'] = 2;
$config['mail_domain'] = '{{domain}}';

// HTTPS only: cookies are Secure and SameSite=Strict; a session ends after 30 idle minutes.
$config['use_https'] = true;
$config['session_samesite'] = 'Strict';
$config['session_lifetime'] = 30;
$config['login_autocomplete'] = 0;
$config['x_frame_options'] = 'sameorigin';
$config['enable_installer'] = false;
$config['useragent'] = '';
// Every login (and every failed one, with the address it came from) goes to the journal: fail2ban reads it.
$config['log_driver'] = 'syslog';
$config['syslog_id'] = 'roundcube';
$config['log_logins'] = true;
$config['temp_dir'] = '/var/lib/roundcube/temp/';

$config['product_name'] = '{{domain}} webmail';
$config['support_url'] = 'mailto:{{adminEmail}}';
$config['skin'] = 'elastic';
$config['plugins'] = ['managesieve', 'archive', 'zipdownload', 'markasjunk'];
// The folders Dovecot makes for every mailbox; Junk is where rspamd's verdicts and "mark as junk" go.
$config['drafts_mbox'] = 'Drafts';
$config['junk_mbox'] = 'Junk';
$config['sent_mbox'] = 'Sent';
$config['trash_mbox'] = 'Trash';
$config['archive_mbox'] = 'Archive';
$config['max_message_size'] = '{{messageMb}}M';
$config['enable_spellcheck'] = false;
// Remote images are never fetched (the CSP forbids them too): no tracking pixel reaches its sender.
$config['show_images'] = 0;
