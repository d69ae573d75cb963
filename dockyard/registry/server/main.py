"""`dockyard registry`: serve our registry, or collect its garbage.

`dockyard registry serve --addr 127.0.0.1:5000 --root DIR [--htpasswd FILE] [--tls-cert C --tls-key K]`
`dockyard registry garbage-collect --root DIR [--delete-untagged] [--dry-run]`
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl

from dockyard.http.server import Limits, Server, nofile_connections, raise_nofile_limit
from dockyard.registry.server.gc import garbage_collect
from dockyard.registry.server.handlers import Registry, load_htpasswd, registry_site


def _parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dockyard registry", description="OCI distribution registry")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the registry API")
    s.add_argument("--addr", default="127.0.0.1:5000")
    s.add_argument("--root", required=True)
    s.add_argument("--htpasswd")
    s.add_argument("--realm", default="Registry Realm")
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.add_argument("--header-timeout", type=float, default=30.0,
                   help="seconds a request head may take to arrive (default %(default)s)")
    s.add_argument("--idle-timeout", type=float, default=120.0,
                   help="seconds a kept-alive connection may wait for its next request (default %(default)s)")
    s.add_argument("--max-connections", type=int, default=0,
                   help="open connections; beyond it the longest idle one is closed (default: from ulimit -n)")
    g = sub.add_parser("garbage-collect", aliases=["gc"], help="delete blobs no manifest references (and no referrer of a kept one)")
    g.add_argument("--root", required=True)
    g.add_argument("--delete-untagged", action="store_true")
    g.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.cmd in ("garbage-collect", "gc"):
        removed = garbage_collect(args.root, args.delete_untagged, args.dry_run)
        for d in removed:
            print(("would delete " if args.dry_run else "deleted ") + d)
        return 0
    users = load_htpasswd(args.htpasswd) if args.htpasswd else None
    ctx = None
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    host, port = _parse_addr(args.addr)
    registry = Registry(args.root, users, args.realm)
    raise_nofile_limit()
    limits = Limits(args.header_timeout, args.idle_timeout, args.max_connections or nofile_connections(),
                    drain_limit=None)

    async def run() -> None:
        server = Server(registry_site(registry, limits))
        await server.listen_tcp(host, port, ctx)
        actual = server.sockets[0].getsockname()[1]
        print(f"registry listening on {'https' if ctx else 'http'}://{host}:{actual}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0
