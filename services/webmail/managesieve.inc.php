<?php
// selfhost: Settings → Filters writes each user's Sieve script over ManageSieve: our own Dovecot, on
// loopback, STARTTLS verified against the server's name as for IMAP and SMTP (config.inc.php).
$config = [];
$config['managesieve_host'] = 'tls://127.0.0.1:{{sievePort}}';
$config['managesieve_conn_options'] = {{tlsOptions}};
$config['managesieve_vacation'] = 1;
$config['managesieve_forward'] = 1;
