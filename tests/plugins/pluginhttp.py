"""The HTTP side of a test plugin: stdlib http.server on a unix socket (or 127.0.0.1:PORT).

A plugin script builds a dict {"/Interface.Method": handler(body) -> answer dict} and calls
`serve(address, handlers)`. Every call is appended to `--log FILE` as one JSON line (name, path,
body), so tests read what the daemon asked, in order. The process removes its socket on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

Handler = Callable[[Any], Any]


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


def args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--name", required=True)
    p.add_argument("--socket", help="unix socket path")
    p.add_argument("--tcp", type=int, help="listen on 127.0.0.1:PORT (0: any free one, printed)")
    p.add_argument("--log", help="append each call here as a JSON line")
    p.add_argument("--root", help="the plugin's own data dir (volume and log drivers)")
    return p.parse_known_args()[0]


def serve(a: argparse.Namespace, implements: list[str], handlers: dict[str, Handler],
          streams: dict[str, Callable[[Any, Any], None]] | None = None) -> None:
    """Serve until SIGTERM. `streams[path](body, wfile)` write their own answer body (ReadLogs)."""
    table: dict[str, Handler] = {"/Plugin.Activate": lambda _b: {"Implements": implements}, **handlers}
    streams = streams or {}

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                body = None
            if a.log:
                with open(a.log, "a") as f:
                    f.write(json.dumps({"plugin": a.name, "path": self.path, "body": body}) + "\n")
            if self.path in streams:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-json-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    streams[self.path](body, self.wfile)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            fn = table.get(self.path)
            if fn is None:
                out, status = {"Err": f"{self.path}: not implemented by {a.name}"}, 404
            else:
                try:
                    out, status = fn(body), 200
                except Exception as e:  # noqa: BLE001 - the plugin's error goes back as Err
                    out, status = {"Err": str(e)}, 500
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server: socketserver.BaseServer
    if a.socket:
        if os.path.exists(a.socket):
            os.unlink(a.socket)
        os.makedirs(os.path.dirname(a.socket), exist_ok=True)
        server = _UnixHTTPServer(a.socket, H)
    else:
        server = _TCPServer(("127.0.0.1", a.tcp or 0), H)
        print(server.server_address[1], flush=True)

    def stop(*_: Any) -> None:
        if a.socket and os.path.exists(a.socket):
            os.unlink(a.socket)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    sys.stdout.flush()
    server.serve_forever()
