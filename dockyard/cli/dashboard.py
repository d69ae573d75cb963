"""`dockyard dashboard`: serve the web dashboard (dockyard/dashboard) for the daemon this CLI talks to."""

from __future__ import annotations

import argparse
import ipaddress
import socket

from dockyard.cli.common import CLIError, Command, Ctx


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", dest="listen", default="127.0.0.1",
                   help="Address to listen on (a non-loopback one needs --token or --tls-cert)")
    p.add_argument("--port", type=int, default=0, help="Port to listen on (default: a free one)")
    p.add_argument("--token", help="The access token (default: a random one, printed in the URL)")
    p.add_argument("--tls-cert", help="Serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", help="The certificate's private key (PEM)")
    p.add_argument("--open", action="store_true", help="Open the dashboard in a web browser")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dashboard(ctx: Ctx, args: argparse.Namespace) -> int | None:
    if args.listen and not is_loopback(args.listen) and not (args.token or args.tls_cert):
        raise CLIError(f"refusing to listen on {args.listen} (not loopback) without --token or --tls-cert: "
                       "anyone who can reach it could run containers as root")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CLIError("--tls-cert and --tls-key go together")
    import asyncio
    import secrets
    import ssl

    from dockyard.dashboard.engine import Engine
    from dockyard.dashboard.server import Dashboard, serve_connection

    client = ctx.client
    engine = Engine(client.host.url, client.tls or False)
    token = args.token or secrets.token_urlsafe(24)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    listen = args.listen.strip("[]")
    allowed = {"127.0.0.1", "localhost", "::1", listen}
    if listen in ("0.0.0.0", "::"):
        allowed = {"*"}

    async def run() -> None:
        app = Dashboard(engine, token, allowed)
        try:
            server = await asyncio.start_server(lambda r, w: serve_connection(app.handle, r, w), listen,
                                                args.port, ssl=tls, reuse_address=True)
        except OSError as e:
            raise CLIError(f"dashboard: cannot listen on {args.listen}:{args.port}: {e.strerror or e}") from None
        port = server.sockets[0].getsockname()[1]
        shown = f"[{listen}]" if ":" in listen else listen
        if listen in ("0.0.0.0", "::"):
            shown = socket.gethostname()
        url = f"{'https' if tls else 'http'}://{shown}:{port}/?token={token}"
        print(f"Dockyard dashboard for {engine.host}\n    {url}", flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(url)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


COMMANDS = [Command("dashboard", dashboard, setup, help="Serve a web dashboard of the engine's objects (Dockyard)")]
