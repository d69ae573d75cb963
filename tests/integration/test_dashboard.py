"""`dockyard dashboard` in a real browser: Debian's chromium, headless, driven by Playwright, against a
daemon of our own with real containers. Each check waits with Playwright's own expectations (a limit,
not a sleep). Screenshots go to $DASHBOARD_SCREENSHOTS (scripts/dashboard-screenshots sets docs/dashboard).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Daemon, own_daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or "/tmp/dashboard-screenshots")


class Dash:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url  # http://127.0.0.1:PORT/?token=...
        self.base, _, self.token = url.partition("/?token=")


@pytest.fixture(scope="module")
def daemon_() -> Iterator[Daemon]:
    with own_daemon("dy-dash-") as d:
        yield d


@pytest.fixture(scope="module")
def dash(daemon_: Daemon) -> Iterator[Dash]:
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "dashboard"], env=daemon_.env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Dockyard dashboard for"), first + proc.stdout.read()
        yield Dash(proc, proc.stdout.readline().strip())
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: run scripts/setup (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, dash: Dash) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, errors  # no script error on any page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def name() -> str:
    return "dash-" + secrets.token_hex(3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_wrong_or_missing_token_gets_401(dash: Dash, browser: Any) -> None:
    assert status(dash.url) == 200
    assert status(dash.base + "/") == 401
    assert status(dash.base + "/?token=wrong") == 401
    assert status(dash.base + "/api/containers/json?token=" + dash.token) == 200
    assert status(dash.base + "/static/app.js") == 401
    assert status(dash.base + "/sse/live?token=nope") == 401
    # The cookie alone does not change state: the header is needed (no CSRF from another site's form).
    cookie = {"Cookie": f"dockyard_dashboard={dash.token}"}
    assert status(dash.base + "/api/containers/none/start", "POST", cookie) == 401
    assert status(dash.base + "/api/containers/none/start", "POST", {"X-Dockyard-Token": "wrong"}) == 401
    assert status(dash.base + "/api/containers/none/start", "POST", {"X-Dockyard-Token": dash.token}) == 404
    # Another Host (a rebinding attacker's name) is refused even with the token.
    assert status(dash.url, headers={"Host": "evil.example:80"}) == 403
    ctx = browser.new_context()
    pg = ctx.new_page()
    resp = pg.goto(dash.base + "/?token=" + "x" * len(dash.token))
    assert resp.status == 401
    ctx.close()


def test_non_loopback_needs_a_token(daemon_: Daemon) -> None:
    p = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "dashboard", "--host", "0.0.0.0"],
                       env=daemon_.env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "without --token" in p.stderr
    # With a token it listens on every address (any Host: the token is the guard); asked on loopback here.
    token = secrets.token_hex(16)
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "dashboard", "--host", "0.0.0.0", "--token",
                             token], env=daemon_.env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        port = proc.stdout.readline().strip().split("/?")[0].rsplit(":", 1)[1]
        assert status(f"http://127.0.0.1:{port}/api/containers/json?token={token}") == 200
        assert status(f"http://127.0.0.1:{port}/api/containers/json") == 401
    finally:
        proc.terminate()
        proc.wait(10)


def test_https_with_a_certificate(daemon_: Daemon, tmp_path: Path) -> None:
    import ssl

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   capture_output=True, check=True)
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "dashboard", "--tls-cert", str(cert),
                             "--tls-key", str(key)], env=daemon_.env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:"), url
        ctx = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(url.replace("/?", "/api/containers/json?"), context=ctx, timeout=10) as r:
            assert r.status == 200 and isinstance(json.loads(r.read()), list)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.split("?")[0], context=ctx, timeout=10)
        assert e.value.code == 401
    finally:
        proc.terminate()
        proc.wait(10)


def test_container_from_cli_appears_and_stop_button_stops_it(daemon_: Daemon, dash: Dash, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(dash.url)
    expect(page.locator("#containers")).to_be_visible()
    expect(page.locator("#conn.up")).to_be_visible()
    n, port = name(), free_port()
    daemon_.dockyard("run", "-d", "--name", n, "-p", f"127.0.0.1:{port}:80", "--label",
                     "com.docker.compose.project=shop", "busybox", "sh", "-c",
                     "trap 'exit 0' TERM; while true; do sleep 0.2; done")
    row = page.locator(f'tr[data-name="{n}"]')
    expect(row).to_be_visible(timeout=2000)  # the limit: live, within 2 s
    expect(row).to_have_attribute("data-state", "running")
    expect(row.locator(f'a[href="http://127.0.0.1:{port}/"]')).to_be_visible()
    expect(page.locator('tr[data-project="shop"]')).to_be_visible()
    expect(row.locator(".spark.cpu")).to_contain_text("%", timeout=5000)  # a sample from the stats stream
    expect(row.locator(".spark.mem")).to_contain_text("KiB")
    expect(row.locator(".spark.cpu")).to_have_attribute("data-samples", re.compile(r"^([3-9]|\d\d+)$"), timeout=10000)
    shot(page, "containers")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "containers-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    row.locator('button[data-action="stop"]').click()
    expect(page.locator(f'tr[data-name="{n}"]')).to_have_attribute("data-state", "exited", timeout=15000)
    state = json.loads(daemon_.dockyard("inspect", n).stdout)[0]["State"]
    assert state["Running"] is False and state["Status"] == "exited"
    daemon_.dockyard("rm", "-f", n)
    expect(page.locator(f'tr[data-name="{n}"]')).to_have_count(0, timeout=5000)


def test_log_stream_of_a_stopped_container_says_it_ended(daemon_: Daemon, dash: Dash) -> None:
    n = name()
    daemon_.dockyard("run", "--name", n, "busybox", "sh", "-c", "echo once; echo twice >&2")
    try:
        with urllib.request.urlopen(f"{dash.base}/sse/logs/{n}?token={dash.token}", timeout=30) as r:
            body = r.read().decode()
        events = [b.splitlines() for b in body.strip().split("\n\n")]
        assert [e[0] for e in events] == ["event: log", "event: log", "event: end"], body
        lines = [json.loads(e[1][len("data: "):]) for e in events[:2]]
        assert sorted((x["s"], x["t"]) for x in lines) == [("err", "twice"), ("out", "once")]
    finally:
        daemon_.dockyard("rm", "-f", n)


def test_health_shows_and_token_leaves_the_address_bar(daemon_: Daemon, dash: Dash, page: Any) -> None:
    from playwright.sync_api import expect

    n = name()
    daemon_.dockyard("run", "-d", "--name", n, "--health-cmd", "true", "--health-interval", "1s", "busybox",
                     "sleep", "300")
    try:
        page.goto(dash.url)
        assert "token" not in page.url  # the cookie carries it now
        expect(page.locator(f'tr[data-name="{n}"] .health')).to_have_text("healthy", timeout=15000)
    finally:
        daemon_.dockyard("rm", "-f", n)


def test_new_log_line_shows_up_coloured_by_stream(daemon_: Daemon, dash: Dash, page: Any) -> None:
    from playwright.sync_api import expect

    n = name()
    cid = daemon_.dockyard("run", "-d", "--name", n, "busybox", "sh", "-c",
                           "echo started; while true; do if [ -f /say ]; then cat /say; cat /say >&2; rm /say; fi;"
                           " sleep 0.2; done").stdout.decode().strip()
    try:
        page.goto(dash.url + f"#/container/{cid}")
        expect(page.locator("#logs")).to_contain_text("started", timeout=5000)
        marker = "marker-" + secrets.token_hex(4)
        daemon_.dockyard("exec", n, "sh", "-c", f"echo {marker} > /say")
        expect(page.locator("#logs div.out", has_text=marker)).to_be_visible(timeout=5000)
        expect(page.locator("#logs div.err", has_text=marker)).to_be_visible(timeout=5000)
        page.fill("input[type=search]", "started")
        expect(page.locator("#logs div.out", has_text=marker)).to_be_hidden()
        expect(page.locator("#logs mark")).to_have_text("started")
        page.fill("input[type=search]", "")
        # Stopped and started again: follow ended with the stop ("end": the page closes its stream rather
        # than let EventSource reconnect and replay the tail) and picks up after the last line shown.
        daemon_.dockyard("stop", "-t", "1", n)
        expect(page.locator("#state")).to_have_text("exited", timeout=10000)
        daemon_.dockyard("start", n)
        expect(page.locator("#logs div.out", has_text="started")).to_have_count(2, timeout=15000)
        again = "again-" + secrets.token_hex(4)
        daemon_.dockyard("exec", n, "sh", "-c", f"echo {again} > /say")
        expect(page.locator("#logs div.out", has_text=again)).to_be_visible(timeout=5000)
        daemon_.dockyard("exec", n, "sh", "-c", f"echo {again}-2 > /say")
        expect(page.locator("#logs div.out", has_text=f"{again}-2")).to_be_visible(timeout=5000)
        expect(page.locator("#logs div.out", has_text="started")).to_have_count(2)
        expect(page.locator("#logs div.out", has_text=marker)).to_have_count(1)
        shot(page, "container-logs")
        page.click('button[data-tab="Top"]')
        expect(page.locator("main table")).to_contain_text("sh -c echo started", timeout=5000)  # PID 1
        page.click('button[data-tab="Inspect"]')
        expect(page.locator("pre.json")).to_contain_text(cid)
    finally:
        daemon_.dockyard("rm", "-f", n)


def host_veth(pid: int) -> str:
    """The host end of the container's eth0, from the kernel: `eth0@ifN` in its netns names the peer's index."""
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    peer = out.split("@if", 1)[1].split(":", 1)[0]
    for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines():
        index, dev = line.split(":")[:2]
        if index == peer:
            return dev.strip().split("@")[0]
    raise AssertionError(f"no host end for eth0 ({out!r})")


def test_anatomy_shows_the_real_veth_limits_and_trace(daemon_: Daemon, dash: Dash, page: Any) -> None:
    from playwright.sync_api import expect

    n, port = name(), free_port()
    cid = daemon_.dockyard("run", "-d", "--name", n, "-p", f"127.0.0.1:{port}:80", "--memory", "48m",
                           "--pids-limit", "77", "busybox", "sleep", "300").stdout.decode().strip()
    try:
        pid = json.loads(daemon_.dockyard("inspect", n).stdout)[0]["State"]["Pid"]
        veth = host_veth(pid)
        cgroup_limit = int(next(Path(p).read_text() for p in (
            f"/sys/fs/cgroup/memory/dockyard/{cid}/memory.limit_in_bytes", f"/sys/fs/cgroup/dockyard/{cid}/memory.max",
        ) if Path(p).exists()) or 0)
        assert cgroup_limit == 48 * 1024 * 1024
        page.goto(dash.url + f"#/container/{cid}")
        page.click('button[data-tab="Anatomy"]')
        pic = page.locator("svg.anatomy")
        expect(pic).to_contain_text(f"veth {veth}", timeout=5000)
        expect(pic.locator(".limit-memory")).to_contain_text("memory: 48 MiB")
        expect(pic.locator(".limit-pids")).to_contain_text("pids: 77")
        expect(pic).to_contain_text(f"published 127.0.0.1:{port}")
        expect(pic.locator(".ns.own")).to_have_count(5)  # mnt uts ipc pid net; cgroup and user shared
        expect(pic.locator(".limit-memory .usage")).to_contain_text("using", timeout=5000)
        shot(page, "container-anatomy")
        page.click('button[data-tab="Trace"]')
        expect(page.locator("svg.timeline rect").first).to_be_visible(timeout=5000)
        expect(page.locator("main table")).to_contain_text(veth)
        shot(page, "container-trace")
    finally:
        daemon_.dockyard("rm", "-f", n)


def test_images_networks_volumes_events_pages(daemon_: Daemon, dash: Dash, page: Any) -> None:
    from playwright.sync_api import expect

    n, vol, port = name(), name(), free_port()
    daemon_.dockyard("volume", "create", vol)
    daemon_.dockyard("run", "-d", "--name", n, "-v", f"{vol}:/data", "-p", f"127.0.0.1:{port}:80",
                     "busybox", "sh", "-c", "echo hi > /data/f; sleep 300")
    try:
        page.goto(dash.url + "#/images")
        expect(page.locator('tr[data-image="busybox:latest"]')).to_be_visible(timeout=5000)
        shot(page, "images")
        page.click('tr[data-image="busybox:latest"] a')
        expect(page.locator("#layers .layerbar")).to_have_count(1, timeout=5000)
        expect(page.locator("#layers")).to_contain_text("ADD busybox")
        page.click("#layers .layerbar button")
        expect(page.locator(".tree")).to_contain_text("bin/", timeout=15000)
        expect(page.locator(".tree .f.added", has_text="busybox")).to_be_visible()
        shot(page, "image-layers")

        page.goto(dash.url + "#/networks")
        expect(page.locator('svg.graph g.net[data-net="bridge"]')).to_be_visible(timeout=5000)
        expect(page.locator("svg.graph")).to_contain_text(n)
        shot(page, "networks")

        page.goto(dash.url + "#/volumes")
        expect(page.locator(f'tr[data-volume="{vol}"]')).to_contain_text(f"{n} at /data", timeout=5000)
        shot(page, "volumes")

        page.goto(dash.url + "#/events")
        expect(page.locator("#conn.up")).to_be_visible()
        daemon_.dockyard("restart", "-t", "1", n)
        expect(page.locator("#events .ev[data-action=restart]").first).to_be_visible(timeout=15000)
        expect(page.locator("svg.strip rect").first).to_be_visible()
        shot(page, "events")
    finally:
        daemon_.dockyard("rm", "-f", n)
        daemon_.dockyard("volume", "rm", vol)


def png_rows(data: bytes) -> tuple[int, list[bytes], int]:
    """(width, unfiltered rows, bytes per pixel) of an 8-bit RGB/RGBA PNG (stdlib only)."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    bpp = 3
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, _, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytes(width * bpp)
    for i in range(0, len(raw), stride + 1):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = bytes(line)
    return width, rows, bpp


def test_firefox_esr_renders_the_live_page(dash: Dash, tmp_path: Path) -> None:
    """Firefox ESR, headless, as the issue asks: the page's modules run and its live stream connects
    (the dot in the header turns from red to green only in EventSource's onopen)."""
    firefox = "/usr/bin/firefox-esr"
    if not os.path.exists(firefox):
        pytest.fail("firefox-esr is not installed: run scripts/setup")
    out = tmp_path / "ff.png"
    green = (0x22, 0xC5, 0x5E)

    def connected() -> bool:
        subprocess.run([firefox, "--headless", "--window-size=1280,800", "--screenshot", str(out), dash.url],
                       env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, timeout=120, check=True)
        width, rows, bpp = png_rows(out.read_bytes())
        header = [row[x:x + 3] for row in rows[:40] for x in range(0, width * bpp, bpp)]
        return any(all(abs(p[i] - green[i]) < 12 for i in range(3)) for p in header)

    # Firefox shoots at the load event, which does not wait for the stream to open: on a loaded machine
    # the first shot can come a moment early, so up to three loads (a page that never connects fails).
    assert any(connected() for _ in range(3)), "the live dot never turned green"
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "firefox.png").write_bytes(out.read_bytes())


def test_pull_with_progress_then_remove(daemon_: Daemon, dash: Dash, page: Any, tmp_path: Path) -> None:
    """An image whose layer is not here: pushed to a registry of our own, removed, then pulled from the
    images page (the bar fills from the pull's progress), and removed with its button."""
    from playwright.sync_api import expect

    port = free_port()
    reg = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr",
                            f"127.0.0.1:{port}", "--root", str(tmp_path / "reg")], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    n, ref = name(), f"127.0.0.1:{port}/dash/big:1"
    try:
        assert reg.stdout is not None and "listening" in reg.stdout.readline().decode()
        daemon_.dockyard("run", "--name", n, "busybox", "sh", "-c", "head -c 3000000 /dev/urandom > /blob")
        daemon_.dockyard("commit", n, ref)
        daemon_.dockyard("rm", n)
        daemon_.dockyard("push", ref)
        daemon_.dockyard("rmi", ref)
        page.on("dialog", lambda d: d.accept())
        page.goto(dash.url + "#/images")
        page.fill('input[type=text]', ref)
        page.click("#pull")
        expect(page.locator("progress")).to_have_attribute("value", "1", timeout=30000)
        expect(page.locator("#pull-status")).to_contain_text(" / 2.9 MiB")  # the layer's bytes, counted
        row = page.locator(f'tr[data-image="{ref}"]')
        expect(row).to_be_visible(timeout=5000)
        shot(page, "images-pull")
        assert daemon_.dockyard("image", "inspect", ref, check=False).returncode == 0
        row.locator("button").click()
        expect(row).to_have_count(0, timeout=10000)
        assert daemon_.dockyard("image", "inspect", ref, check=False).returncode != 0
    finally:
        daemon_.dockyard("rm", "-f", n, check=False)
        daemon_.dockyard("rmi", "-f", ref, check=False)
        reg.terminate()
        reg.wait(10)


def test_against_the_real_dockerd(daemon_: Daemon, real_dockerd: str, browser: Any) -> None:
    """The dashboard is a client: pointed at dockerd, its containers show live and its image's layers
    list their files (from docker save); the anatomy says it needs Dockyard."""
    from playwright.sync_api import expect

    from tests.conftest import DOCKER_CLI

    env = {**os.environ, "DOCKER_HOST": real_dockerd}
    env.pop("DOCKER_CONTEXT", None)

    def docker(*args: str, input: bytes | None = None, check: bool = True) -> str:
        return subprocess.run([DOCKER_CLI, *args], env=env, input=input, capture_output=True, check=check,
                              timeout=120).stdout.decode().strip()

    image = "dash-busybox:" + secrets.token_hex(3)
    daemon_.docker("tag", "busybox:latest", image)
    try:
        docker("load", input=daemon_.docker("save", image).stdout)
    finally:
        daemon_.docker("rmi", image)
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "-H", real_dockerd, "dashboard"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)
    n = name()
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        url = proc.stdout.readline().strip()
        pg = ctx.new_page()
        pg.goto(url)
        expect(pg.locator("#conn.up")).to_be_visible()
        cid = docker("run", "-d", "--network", "none", "--name", n, image, "sleep", "300")
        expect(pg.locator(f'tr[data-name="{n}"]')).to_have_attribute("data-state", "running", timeout=2000)
        expect(pg.locator(f'tr[data-name="{n}"] .spark.mem')).to_contain_text("KiB", timeout=10000)
        pg.goto(url + f"#/container/{cid}")
        pg.click('button[data-tab="Anatomy"]')
        expect(pg.locator("main")).to_contain_text("needs a Dockyard daemon", timeout=5000)
        pg.goto(url + f"#/image/{image}")
        pg.click("#layers .layerbar button")
        expect(pg.locator(".tree")).to_contain_text("bin/", timeout=30000)
    finally:
        ctx.close()
        proc.terminate()
        proc.wait(10)
        docker("rm", "-f", n, check=False)
        docker("rmi", image, check=False)
