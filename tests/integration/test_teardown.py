"""A removed container's network (veth, netns, address) is released after its removal has answered,
in the background, and a --rm container's rootfs is unmounted then too (issue 20: the kernel's 20-50 ms
of deleting them were on every `run --rm`'s way to `removed`). What that must not break: no address
on two interfaces at once, a daemon stopped or killed meanwhile leaves nothing behind."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, own_daemon
from tests.subnets import free_subnet

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@contextlib.contextmanager
def followed(d: Daemon) -> Iterator[list[dict[str, Any]]]:
    """The daemon's trace records, streamed live into the yielded list while inside."""
    import httpx

    recs: list[dict[str, Any]] = []
    ready = threading.Event()
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.sock)), base_url="http://d", timeout=None)

    def read() -> None:
        with contextlib.suppress(httpx.HTTPError, RuntimeError), \
                client.stream("GET", "/dockyard/trace", params={"follow": "1", "mark": "t"}) as r:
            for line in r.iter_lines():
                rec = json.loads(line) if line.strip() else {}
                if rec.get("Mark"):
                    ready.set()
                elif rec and ready.is_set():  # (what came before the mark is the replay of older records)
                    recs.append(rec)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    with d.api() as c:  # the stream's mark: it is watching from here on
        for _ in range(100):
            c.post("/dockyard/trace/mark", params={"mark": "t"})
            if ready.wait(0.1):
                break
    assert ready.is_set(), "the trace stream did not start"
    try:
        yield recs
    finally:
        client.close()
        t.join(5)


def _eventually(pred: Any, what: str, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"not within {timeout} s: {what}"
        time.sleep(0.02)


def _links(recs: list[dict[str, Any]], cid: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The container's veth add and delete records."""
    mine = [r for r in recs if r["Object"] == f"container:{cid}" and r["Area"] == "link"]
    add = next((r for r in mine if r["Op"].startswith("ip link add veth")), None)
    rm = next((r for r in mine if r["Op"].startswith("ip link del veth")), None)
    return add, rm


def _veth(add: dict[str, Any]) -> str:
    return str(add["Op"].split()[3])


def _run_rm(d: Daemon, tmp: Path, *args: str) -> str:
    """`docker run --rm ARGS busybox true`; returns the container's id."""
    cidfile = tmp / f"cid-{os.urandom(4).hex()}"
    d.docker("run", "--rm", "--cidfile", str(cidfile), *args, "busybox", "true")
    return cidfile.read_text().strip()


def _bridge(d: Daemon) -> str:
    from dockyard.daemon.config import DaemonConfig
    from dockyard.daemon.wiring import instance_id

    return f"dy{instance_id(DaemonConfig(data_root=d.data_root))}"[:15]


def _on_bridge(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True)
    return [x["ifname"] for x in json.loads(out.stdout or "[]")] if out.returncode == 0 else []


def _exists(link: str) -> bool:
    return subprocess.run(["ip", "link", "show", link], capture_output=True).returncode == 0


def test_removed_is_answered_before_the_veth_is_deleted(clean_daemon: Daemon, tmp_path: Path) -> None:
    """`run --rm` waits for `wait?condition=removed`: the veth's deletion starts after the container's
    destroy (before the change it was deleted at the exit, before even the die event), and ends soon;
    the rootfs's unmount ends after it too."""
    d = clean_daemon
    t0 = time.time()
    with followed(d) as recs:
        cid = _run_rm(d, tmp_path)
        _eventually(lambda: _links(recs, cid)[1] is not None, "the veth's deletion is traced")
        _eventually(lambda: any(r["Object"] == f"container:{cid}" and r["Area"] == "mount" and "umount2" in r["Op"]
                                for r in recs), "the rootfs's unmount is traced")
    add, rm = _links(recs, cid)
    assert add is not None and rm is not None and rm["OK"], rm
    with d.api() as c:
        evs = [json.loads(x) for x in c.get("/events", params={"since": str(t0), "until": str(time.time() + 1),
                                                              "filters": json.dumps({"container": [cid]})}
                                          ).text.splitlines() if x.strip()]
    destroy = next(e for e in evs if e["Action"] == "destroy")
    assert destroy["timeNano"] / 1e9 <= rm["Start"], (destroy, rm)
    # The rootfs too: unmounted after the answer, in the trash (before the change: at the exit).
    (umount,) = [r for r in recs if r["Object"] == f"container:{cid}" and r["Area"] == "mount" and "umount2" in r["Op"]]
    assert destroy["timeNano"] / 1e9 <= umount["Time"] and "/trash/" in umount["Op"], (destroy, umount)
    assert not _exists(_veth(add))
    _eventually(lambda: not (d.exec_root / "netns" / cid).exists(), "the netns goes too")


def test_an_address_is_handed_out_again_only_once_its_veth_is_gone(clean_daemon: Daemon) -> None:
    """A network with one address: each container started right after a removed one (--rm, rm -f) gets
    that address, and only once the removed one's veth is gone: the attach waits for the release under
    way rather than failing with no address left, or the address being on two interfaces at once."""
    import httpx

    d = clean_daemon
    subnet = free_subnet(24)
    only = str(list(subnet.hosts())[9])
    net = f"one-addr-{os.urandom(3).hex()}"
    d.docker("network", "create", "--subnet", str(subnet), "--ip-range", f"{only}/32", net)
    cids: list[str] = []
    try:
        with followed(d) as recs, d.api() as c, \
                httpx.Client(transport=httpx.HTTPTransport(uds=str(d.sock)), base_url="http://d", timeout=60) as w:
            def create(cmd: list[str], auto_remove: bool = False) -> str:
                r = c.post("/containers/create", json={"Image": "busybox", "Cmd": cmd, "HostConfig": {
                    "NetworkMode": net, "AutoRemove": auto_remove}})
                assert r.status_code == 201, r.text
                cids.append(r.json()["Id"])
                return cids[-1]

            def start(cid: str, auto_removed: bool = False) -> None:
                r = c.post(f"/containers/{cid}/start")
                assert r.status_code == 204, r.text
                r = c.get(f"/containers/{cid}/json")
                if auto_removed and r.status_code == 404:
                    return  # `true` ran and its removal ended before this inspect: nothing left to look at
                assert r.status_code == 200, r.text
                assert r.json()["NetworkSettings"]["Networks"][net]["IPAddress"] == only

            for _ in range(3):
                gone, nxt = create(["true"], auto_remove=True), create(["sleep", "60"])
                with w.stream("POST", f"/containers/{gone}/wait", params={"condition": "removed"}) as r:
                    start(gone, auto_removed=True)
                    r.read()
                start(nxt)  # at once: the removed one's release is under way
                after = create(["sleep", "60"])
                assert c.delete(f"/containers/{nxt}", params={"force": "1"}).status_code == 204
                start(after)
                assert c.delete(f"/containers/{after}", params={"force": "1"}).status_code == 204
            # The network goes at once: its removal waits for the releases still under way.
            d.docker("network", "rm", net)
            _eventually(lambda: all(_links(recs, x)[1] is not None for x in cids), "every veth's deletion is traced")
        spans = []
        for x in cids:
            add, rm = _links(recs, x)
            assert add is not None and rm is not None, x
            spans.append((add["Start"], rm["Time"], x))
        spans.sort()
        for (_, end, a), (begin, _, b) in zip(spans, spans[1:], strict=False):
            assert end <= begin, f"{b[:12]}'s veth was made before {a[:12]}'s (same address) was gone"
    finally:
        d.docker("network", "rm", net, check=False)


def _api_run_rm(d: Daemon, n: int) -> None:
    """n `run --rm busybox true` at once, through the API; returns when all are answered removed."""
    import httpx

    def one() -> None:
        with d.api() as c:
            cid = c.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"],
                                                     "HostConfig": {"AutoRemove": True}}).json()["Id"]
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.sock)), base_url="http://d", timeout=60) as w:
                with w.stream("POST", f"/containers/{cid}/wait", params={"condition": "removed"}) as r:
                    assert c.post(f"/containers/{cid}/start").status_code == 204
                    r.read()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def _veths_made(recs: list[dict[str, Any]]) -> list[str]:
    return [_veth(r) for r in recs if r["Area"] == "link" and r["Op"].startswith("ip link add veth")]


def _netns_left(d: Daemon) -> list[str]:
    p = d.exec_root / "netns"
    return sorted(f.name for f in p.iterdir()) if p.is_dir() else []


def _endpoints(d: Daemon) -> list[Any]:
    with contextlib.closing(sqlite3.connect(d.data_root / "dockyard.db")) as db:
        return db.execute("SELECT cid, ip FROM net_endpoints UNION ALL SELECT cid, '' FROM net_sandboxes").fetchall()


def _mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [m for m in (line.split()[4] for line in f) if m.startswith(f"{base}/")]


def test_a_stop_with_releases_under_way_finishes_them() -> None:
    """SIGTERM right after removals answered: the daemon's stop waits for the releases they left
    running, so no veth, netns, address or row outlives it (then, with no container, the bridge goes)."""
    with own_daemon("dy-td-") as d:
        with followed(d) as recs:
            _api_run_rm(d, 4)
            d.stop()
        made = _veths_made(recs)
        assert len(made) == 4
        assert [v for v in made if _exists(v)] == []
        assert _netns_left(d) == []
        assert not _exists(_bridge(d)), "the stop keeps the bridge: it still saw a container's network"
        assert _endpoints(d) == []
        assert _mounts_under(d.base) == []  # the rootfs, unmounted in the trash after the answer, too


def test_a_kill_with_a_release_under_way_leaves_nothing_after_the_restart() -> None:
    """A daemon killed (SIGKILL) while a removed container's network was still being released: the
    next start releases what is left (veth, netns, address, rows). Made for sure by removing the row of
    a running container's under a killed daemon (a release that had not begun), then for real."""
    with own_daemon("dy-td-") as d:
        subnet = free_subnet(24)
        only = str(list(subnet.hosts())[9])
        d.docker("network", "create", "--subnet", str(subnet), "--ip-range", f"{only}/32", "one")
        cid = d.docker("run", "-d", "--network", "one", "busybox", "sleep", "600").stdout.decode().strip()
        pid = json.loads(d.docker("inspect", cid).stdout)[0]["State"]["Pid"]
        (add,) = _on_bridge(_net_bridge(d, "one"))
        d.kill()
        # The removal had answered: its process gone (runc delete), its row deleted; its network not yet.
        subprocess.run(["kill", "-9", str(pid)], check=True)
        _eventually(lambda: not Path(f"/proc/{pid}").exists(), "the container's process is gone")
        with contextlib.closing(sqlite3.connect(d.data_root / "dockyard.db")) as db:
            db.execute("DELETE FROM containers WHERE id=?", (cid,))
            db.commit()
        assert _exists(add) and (d.exec_root / "netns" / cid).exists()
        d.start()
        assert not _exists(add), "the veth of the removed container is left"
        assert _netns_left(d) == []
        assert _endpoints(d) == []
        # Its address is free again, and the network is in use by nobody.
        cid2 = d.docker("run", "-d", "--network", "one", "busybox", "sleep", "60").stdout.decode().strip()
        ip = json.loads(d.docker("inspect", cid2).stdout)[0]["NetworkSettings"]["Networks"]["one"]["IPAddress"]
        assert ipaddress.ip_address(ip) == ipaddress.ip_address(only)
        d.docker("rm", "-f", cid2)
        d.docker("network", "rm", "one")

        # For real: killed right after removals answered (what is left then depends on the timing).
        with followed(d) as recs:
            _api_run_rm(d, 4)
            d.kill()
        made = _veths_made(recs)
        d.start()
        assert [v for v in made if _exists(v)] == []
        assert _netns_left(d) == []
        assert _endpoints(d) == []
        assert [m for m in _mounts_under(d.base) if "/trash/" in m] == []


def _net_bridge(d: Daemon, net: str) -> str:
    n = json.loads(d.docker("network", "inspect", net).stdout)[0]
    return str(n["Options"].get("com.docker.network.bridge.name") or "br-" + n["Id"][:12])
