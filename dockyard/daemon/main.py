"""`dockyard daemon` / `dockyardd`: flags, lock, pid file, then serve the Engine API until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

from dockyard.daemon.config import DaemonConfig, load
from dockyard.errors import DockyardError

log = logging.getLogger("dockyard.daemon")


def _lock(data_root: Path) -> int:
    data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(data_root / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DockyardError(f"another dockyard daemon is already running with data root {data_root}") from None
    return fd


async def run(cfg: DaemonConfig) -> None:
    from dockyard.api.server import serve
    from dockyard.daemon.wiring import build

    tls = _tls_context(cfg)  # refuse a bad listener before anything touches the host
    engine = build(cfg)
    await engine.start()
    try:
        server = await serve(engine.router, cfg.hosts, socket_group=cfg.group, tls=tls, private=cfg.rootless)
    except BaseException:
        await engine.close()  # e.g. the address is in use: leave no bridge or nft table behind
        raise
    log.info("API listening on %s", ", ".join(cfg.hosts))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    failed: list[BaseException] = []

    async def recover() -> None:
        try:
            await engine.recover()
        except Exception as e:  # noqa: BLE001 - the daemon stops with it, as when start failed before the API
            failed.append(e)
            stop.set()
        else:
            log.info("recovered; answering every request")

    recovering = loop.create_task(recover())
    received: list[int] = []
    me = os.getpid()

    # Not loop.add_signal_handler: its wakeup fd is inherited by children that libraries fork (as
    # pyroute2's netns helpers did), and a SIGTERM to such a child would stop the daemon.
    def on_signal(signum: int, _frame: object) -> None:
        if os.getpid() != me:  # a forked helper: die as it would have by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    from dockyard.daemon.stackdump import install

    install(loop)  # SIGUSR1: every thread's and task's stack to the log
    await stop.wait()
    recovering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await recovering
    if not failed:
        log.info("%s: shutting down; containers keep running under their monitors",
                 signal.Signals(received[0]).name if received else "stop")
    await server.close()
    await engine.close()
    if failed:
        raise failed[0]


def _tls_context(cfg: DaemonConfig):  # type: ignore[no-untyped-def]
    from dockyard.api.listen import parse_listen_address

    if not (cfg.tls or cfg.tlsverify):
        # The parser the listener uses: what is checked here is what gets bound.
        for h in cfg.hosts:
            addr = parse_listen_address(h)
            if addr.loopback:
                continue
            if not cfg.insecure_tcp:
                raise DockyardError(
                    f"refusing to listen on {addr.display()} without TLS: anyone reaching it gets root. "
                    "Use --tlsverify, or pass --insecure-tcp if you really mean it"
                )
            log.warning("!!! LISTENING ON %s WITHOUT TLS: ANYONE ON THE NETWORK CAN CONTROL THIS HOST !!!",
                        addr.display())
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.tlscacert)
    ctx.load_cert_chain(cfg.tlscert or "", cfg.tlskey or None)
    if cfg.tlsverify:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _one_malloc_arena() -> None:
    """glibc gives each thread that mallocs an arena of its own (up to 8 per core); the daemon's
    worker threads (asyncio.to_thread) then keep freed memory spread over several. One arena: the
    GIL serialises Python anyway, and with 50 containers the daemon holds ~5 MiB less (47.7 -> 44.1
    MiB idle, 50.9 -> 46.0 with 50 running). Must run before the first thread starts."""
    try:
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


def main(argv: list[str] | None = None) -> int:
    _one_malloc_arena()
    try:
        cfg = load(argv if argv is not None else sys.argv[1:])
    except DockyardError as e:
        print(f"dockyard daemon: {e.message}", file=sys.stderr)
        return 1
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(cfg.log_level, cfg.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        # An ordinary user: rootless mode (issue 17). Come back as uid 0 of a user namespace of our own.
        from dockyard.daemon.rootless import exec_in_user_namespace

        try:
            exec_in_user_namespace(argv if argv is not None else sys.argv[1:])
        except (DockyardError, ValueError, OSError) as e:
            print(f"dockyard daemon: {(e.message if isinstance(e, DockyardError) else '') or e}", file=sys.stderr)
            return 1
    if cfg.rootless:
        log.info("rootless mode: uid %s on the host, data root %s, socket %s",
                 os.environ.get("DOCKYARD_ROOTLESS_UID", "?"), cfg.data_root, ", ".join(cfg.hosts))
    try:
        lock_fd = _lock(cfg.data_root)
    except DockyardError as e:
        print(f"dockyard daemon: {e.message}", file=sys.stderr)
        return 1
    if cfg.pidfile:
        cfg.pidfile.write_text(f"{os.getpid()}\n")
    try:
        asyncio.run(run(cfg))
    except DockyardError as e:
        print(f"dockyard daemon: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:  # a socket path or port that cannot be bound, a missing directory...
        print(f"dockyard daemon: {e}", file=sys.stderr)
        return 1
    finally:
        if cfg.pidfile:
            try:
                cfg.pidfile.unlink()
            except FileNotFoundError:
                pass
        os.close(lock_fd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
