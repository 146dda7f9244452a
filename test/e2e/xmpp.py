#!/usr/bin/python3
"""XMPP checks for the local target with slixmpp (Debian's python3-slixmpp), TLS verified against a CA file.

  xmpp.py chat PORT TLS|STARTTLS FROM TO   -> FROM sends TO a message, TO must receive it (also across servers)
  xmpp.py room PORT ROOM JID                -> JID joins ROOM and sees its own post
  xmpp.py upload PORT JID NAME SIZE         -> asks the upload service for a slot: prints PUT and GET URLs, then the PUT's headers
  xmpp.py login PORT JID                    -> exit 0 when JID can log in
Standard input: JSON {"accounts": {jid: password}, "servers": {domain: [address, cafile]}}: where each
account's server is and which CA verifies it. Exit 0 on success; otherwise the reason.
"""
import asyncio
import json
import ssl
import sys
import uuid

import slixmpp

TIMEOUT = 30


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context(cafile=cafile)
        for plugin in ("xep_0030", "xep_0045", "xep_0363", "xep_0199"):
            self.register_plugin(plugin)
        self.ready = asyncio.Event()
        self.failed = None
        self.messages = asyncio.Queue()
        self.add_event_handler("session_start", self.started)
        self.add_event_handler("failed_all_auth", lambda _: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("groupchat_message", lambda m: self.messages.put_nowait(m))

    def fail(self, reason):
        self.failed = reason
        self.ready.set()

    async def started(self, _):
        self.send_presence()
        await self.get_roster()
        self.ready.set()

    async def online(self, server, port, direct_tls):
        # Debian 13's slixmpp picks STARTTLS or direct TLS by these flags (connect() no longer takes use_ssl).
        self.enable_direct_tls, self.enable_starttls = direct_tls, not direct_tls
        self.connect(server, port)
        await asyncio.wait_for(self.ready.wait(), TIMEOUT)
        if self.failed:
            raise SystemExit(f"{self.boundjid.bare}: {self.failed}")
        return self


async def main():
    command, port, *args = sys.argv[1:]
    given = json.loads(sys.stdin.read())
    port = int(port)

    class Account:
        """A client for the jid, connected to its own server."""
        def __init__(self, jid):
            self.server, cafile = given["servers"][jid.split("@")[1]]
            self.client = Client(jid, given["accounts"][jid], cafile)

        async def online(self, _server, port, direct_tls):
            return await self.client.online(self.server, port, direct_tls)

    client = Account

    if command == "login":
        await client(args[0]).online(None, port, port != 5222)
    elif command == "chat":
        mode, sender, recipient = args
        receiver = await client(recipient).online(None, port, mode == "TLS")
        sending = await client(sender).online(None, port, mode == "TLS")
        body = f"hello over {mode} {uuid.uuid4()}"
        sending.send_message(mto=recipient, mbody=body, mtype="chat")
        while True:
            message = await asyncio.wait_for(receiver.messages.get(), TIMEOUT)
            if message["body"] == body:
                print(f"received from {message['from'].bare}: {body}")
                break
    elif command == "room":
        room, jid = args
        member = await client(jid).online(None, port, False)
        muc = member.plugin["xep_0045"]
        joined = asyncio.get_running_loop().create_future()
        member.add_event_handler(f"muc::{room}::self-presence", lambda p: joined.done() or joined.set_result(p))
        muc.join_muc(slixmpp.JID(room), "e2e")
        presence = await asyncio.wait_for(joined, TIMEOUT)
        if 201 in presence["muc"]["status_codes"]:
            # A new room stays locked until its owner accepts a configuration: an instant room (XEP-0045 10.1.2),
            # as clients make one.
            await muc.set_room_config(room, member.plugin["xep_0004"].make_form(ftype="submit"))
        body = f"hello room {uuid.uuid4()}"
        member.send_message(mto=room, mbody=body, mtype="groupchat")
        while True:
            message = await asyncio.wait_for(member.messages.get(), TIMEOUT)
            if message["type"] == "groupchat" and message["body"] == body:
                print(f"posted in {room}")
                break
    elif command == "upload":
        # The HTTP part is curl's, so it verifies against the same CA file.
        jid, name, size = args
        sharing = await client(jid).online(None, port, False)
        # The service is found the way clients find it: among the server's disco items.
        items = await sharing.plugin["xep_0030"].get_items(jid=sharing.boundjid.domain, timeout=TIMEOUT)
        services = [i[0] for i in items["disco_items"]["items"] if i[0].startswith("upload.")]
        if not services:
            raise SystemExit("no upload service among the server's items")
        slot = await sharing.plugin["xep_0363"].request_slot(slixmpp.JID(services[0]), name, int(size), "text/plain", timeout=TIMEOUT)
        put = slot["http_upload_slot"]["put"]
        print(put["url"])
        print(slot["http_upload_slot"]["get"]["url"])
        for header in put["headers"]:
            print(f"{header['name']}: {header['value']}")
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    asyncio.run(main())
