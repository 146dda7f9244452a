#!/usr/bin/env python3
"""A small IMAP client for the local target's checks (Python's imaplib, TLS verified against a CA file).

  imap.py HOST CAFILE USER list MAILBOX            -> one "Subject" line per message
  imap.py HOST CAFILE USER move FROM TO SUBJECT    -> moves the messages with that subject
  imap.py HOST CAFILE USER show MAILBOX SUBJECT    -> the headers of the messages with that subject
  imap.py HOST CAFILE USER raw MAILBOX SUBJECT     -> the whole messages with that subject, as stored
  imap.py HOST CAFILE USER mailboxes               -> mailbox names with their special-use flags
  imap.py HOST CAFILE USER quota                   -> the INBOX's quota root line (RFC 2087: usage and limit in KB)
The password is read from standard input.
"""
import email
import imaplib
import ssl
import sys


def main() -> int:
    host, cafile, user, command, *args = sys.argv[1:]
    password = sys.stdin.read().strip()
    context = ssl.create_default_context(cafile=cafile)
    with imaplib.IMAP4_SSL(host, 993, ssl_context=context) as imap:
        imap.login(user, password)
        if command == "mailboxes":
            _, lines = imap.list()
            for line in lines:
                print(line.decode())
            return 0
        if command == "quota":
            _, data = imap.getquotaroot("INBOX")
            for line in data[1]:
                print(line.decode())
            return 0
        mailbox = args[0]
        imap.select(f'"{mailbox}"')
        _, data = imap.uid("search", None, "ALL")
        uids = data[0].split()
        if command == "list":
            for uid in uids:
                _, parts = imap.uid("fetch", uid, "(BODY.PEEK[HEADER])")
                headers = email.message_from_bytes(parts[0][1])
                print(f"Subject: {headers['Subject']}")
            return 0
        if command in ("show", "raw"):
            part = "BODY.PEEK[HEADER]" if command == "show" else "BODY.PEEK[]"
            for uid in uids:
                _, parts = imap.uid("fetch", uid, f"({part})")
                if args[1] in parts[0][1].decode(errors="replace"):
                    print(parts[0][1].decode(errors="replace"))
            return 0
        if command == "move":
            target, subject = args[1], args[2]
            moved = 0
            for uid in uids:
                _, parts = imap.uid("fetch", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                if subject in parts[0][1].decode(errors="replace"):
                    status, _ = imap.uid("move", uid, f'"{target}"')
                    moved += status == "OK"
            print(f"moved {moved}")
            return 0 if moved else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
