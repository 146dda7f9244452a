#!/usr/bin/env python3
"""A stand-in local web app for the proxy checks: answers GET with what it was asked and how, and
completes a websocket handshake (RFC 6455) then echoes one text frame. Usage: app.py NAME PORT"""
import base64
import hashlib
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
NAME, PORT = sys.argv[1], int(sys.argv[2])


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.write(bytes([0x81, len(NAME) + 3]) + f"hi {NAME}".encode())
            self.wfile.flush()
            return
        body = f"app {NAME} path={self.path} host={self.headers['Host']} proto={self.headers.get('X-Forwarded-Proto')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


socketserver.TCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", PORT), App) as server:
    server.serve_forever()
