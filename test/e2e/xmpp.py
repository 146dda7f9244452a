#!/usr/bin/python3
"""XMPP checks for the local target with slixmpp (Debian's python3-slixmpp), TLS verified against a CA file.

  xmpp.py chat PORT TLS|STARTTLS FROM TO   -> FROM sends TO a message, TO must receive it (also across servers)
  xmpp.py room PORT ROOM JID                -> JID joins ROOM and sees its own post
  xmpp.py upload PORT JID NAME SIZE         -> asks the upload service for a slot: prints PUT and GET URLs, then the PUT's headers
  xmpp.py login PORT JID                    -> exit 0 when JID can log in
  xmpp.py services PORT JID [SERVER]        -> the server's external services (XEP-0215) as JSON, credentials included
  xmpp.py push PORT JID APP SENDER          -> JID registers APP (a full JID, the test's app server) for push
                                               (XEP-0357), goes away; SENDER writes; prints APP's notification as JSON
  xmpp.py compliance PORT JID               -> what the Conversations compliance suite asks of a server, as JSON
  xmpp.py avatar PORT JID                   -> JID publishes an avatar over PEP (XEP-0084) as today's clients do, then
                                               reads its vCard (XEP-0054) as older ones do: prints whether the photo came through
Standard input: JSON {"accounts": {jid: password}, "servers": {domain: [address, cafile]}}: where each
account's server is and which CA verifies it. Exit 0 on success; otherwise the reason.
"""
import asyncio
import json
import ssl
import sys
import uuid

import slixmpp
import slixmpp.exceptions
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from xml.etree import ElementTree as ET

TIMEOUT = 30
STREAM_FEATURES = "{http://etherx.jabber.org/streams}features"


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
        # The stream features offered last (after login), as the compliance suite reads them.
        self.offered = []
        self.register_handler(Callback("record features", MatchXPath(STREAM_FEATURES),
                                       lambda f: setattr(self, "offered", [child.tag for child in f.xml])))

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
            address = slixmpp.JID(jid)
            self.server, cafile = given["servers"][address.domain]
            self.client = Client(jid, given["accounts"][address.bare], cafile)

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
    elif command == "services":
        # Of the account's own server, or of the server named (a stranger asking): the list, or the error's condition.
        asking = await client(args[0]).online(None, port, False)
        iq = asking.make_iq_get(ito=args[1] if len(args) > 1 else asking.boundjid.domain)
        iq.xml.append(ET.Element("{urn:xmpp:extdisco:2}services"))
        try:
            answer = await iq.send(timeout=TIMEOUT)
        except slixmpp.exceptions.IqError as refused:
            print(json.dumps({"error": refused.iq["error"]["condition"]}))
            return
        print(json.dumps([dict(s.attrib) for s in answer.xml.iter("{urn:xmpp:extdisco:2}service")]))
    elif command == "push":
        jid, app, sender = args
        # The app server: a client of its own that records what it is sent (a real one relays to Apple or Google).
        app_server = await client(app).online(None, port, False)
        notified = asyncio.get_running_loop().create_future()

        def publish(iq):
            iq.reply().send()
            notified.done() or notified.set_result(iq)
        app_server.register_handler(Callback("push", MatchXPath("{jabber:client}iq/{http://jabber.org/protocol/pubsub}pubsub"), publish))
        node = str(uuid.uuid4())
        phone = await client(jid).online(None, port, False)
        enable = phone.make_iq_set()
        ET.SubElement(enable.xml, "{urn:xmpp:push:0}enable", {"jid": app, "node": node})
        await enable.send(timeout=TIMEOUT)
        phone.disconnect()
        await asyncio.sleep(1)
        writer = await client(sender).online(None, port, False)
        body = f"while you were away {uuid.uuid4()}"
        writer.send_message(mto=jid, mbody=body, mtype="chat")
        iq = await asyncio.wait_for(notified, TIMEOUT)
        publish_node = iq.xml.find(".//{http://jabber.org/protocol/pubsub}publish")
        fields = {f.get("var"): [v.text for v in f.iter("{jabber:x:data}value")]
                  for f in iq.xml.iter("{jabber:x:data}field")}
        print(json.dumps({"from": str(iq["from"]), "node": publish_node.get("node") if publish_node is not None else None,
                          "registered": node, "notification": iq.xml.find(".//{urn:xmpp:push:0}notification") is not None,
                          "fields": fields, "carries_body": body in ET.tostring(iq.xml, encoding="unicode")}))
    elif command == "compliance":
        me = await client(args[0]).online(None, port, False)
        disco = me.plugin["xep_0030"]
        domain, account = me.boundjid.domain, me.boundjid.bare

        async def info(jid):
            found = await disco.get_info(jid=jid, timeout=TIMEOUT)
            return found.xml.find("{http://jabber.org/protocol/disco#info}query")

        features = lambda query: {f.get("var") for f in query.iter("{http://jabber.org/protocol/disco#info}feature")}
        identities = lambda query: {(i.get("category"), i.get("type")) for i in query.iter("{http://jabber.org/protocol/disco#info}identity")}
        server, own = await info(domain), await info(account)
        items = await disco.get_items(jid=domain, timeout=TIMEOUT)
        services = {}
        for item in items["disco_items"]["items"]:
            services[item[0]] = features(await info(item[0]))
        # A group chat as a client makes one: does it archive (MAM for MUC)?
        room = f"compliance-{uuid.uuid4().hex[:8]}@" + next(j for j, f in services.items() if "http://jabber.org/protocol/muc" in f)
        joined = asyncio.get_running_loop().create_future()
        me.add_event_handler(f"muc::{room}::self-presence", lambda p: joined.done() or joined.set_result(p))
        me.plugin["xep_0045"].join_muc(slixmpp.JID(room), "compliance")
        presence = await asyncio.wait_for(joined, TIMEOUT)
        if 201 in presence["muc"]["status_codes"]:
            await me.plugin["xep_0045"].set_room_config(room, me.plugin["xep_0004"].make_form(ftype="submit"))
        abuse = [v.text for f in server.iter("{jabber:x:data}field") if f.get("var") == "abuse-addresses" for v in f.iter("{jabber:x:data}value")]
        print(json.dumps({
            "stream_features": me.offered,
            "server": sorted(features(server)), "account": sorted(features(own)),
            "account_identities": sorted(map(list, identities(own))),
            "services": {j: sorted(f) for j, f in services.items()}, "room": sorted(features(await info(room))),
            "abuse": abuse,
        }))
    elif command == "avatar":
        import base64, hashlib, os
        me = await client(args[0]).online(None, port, False)
        me.register_plugin("xep_0084")
        # An image's bytes (clients send PNG); random, so an earlier run's avatar cannot pass for this one.
        picture = b"\x89PNG\r\n\x1a\n" + os.urandom(200)
        avatars = me.plugin["xep_0084"]
        await avatars.publish_avatar(picture, timeout=TIMEOUT)
        await avatars.publish_avatar_metadata({"id": hashlib.sha1(picture).hexdigest(), "type": "image/png", "bytes": len(picture)}, timeout=TIMEOUT)
        # Prosody's mod_vcard_legacy answers vcard-temp from the PEP avatar (XEP-0398).
        iq = me.make_iq_get(ito=me.boundjid.bare)
        iq.xml.append(ET.Element("{vcard-temp}vCard"))
        answer = await iq.send(timeout=TIMEOUT)
        binval = answer.xml.find(".//{vcard-temp}PHOTO/{vcard-temp}BINVAL")
        kind = answer.xml.find(".//{vcard-temp}PHOTO/{vcard-temp}TYPE")
        photo = base64.b64decode("".join((binval.text or "").split())) if binval is not None else b""
        print(json.dumps({"same_photo": photo == picture, "type": kind.text if kind is not None else None, "bytes": len(photo)}))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    asyncio.run(main())
