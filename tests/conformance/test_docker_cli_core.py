"""The real docker CLI (v28) against our daemon: the engine core's everyday commands."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable

from tests.conftest import Daemon


def until(cond: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Wait for what a container does in its own time (a loaded host runs it late), not for a fixed sleep."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.1)


def test_version_and_info(clean_daemon: Daemon) -> None:
    out = clean_daemon.docker("version", "--format", "{{.Server.APIVersion}}").stdout.decode().strip()
    assert out >= "1.44"
    info = json.loads(clean_daemon.docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "overlay2"


def test_run_rm_echo(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker("run", "--rm", "busybox", "echo", "hi")
    assert p.stdout == b"hi\n"
    assert clean_daemon.docker("ps", "-aq").stdout == b""


def test_exit_code_passthrough(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3
    assert p.stdout == b"out\n"
    assert p.stderr == b"err\n"


def test_command_not_found_is_127(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker("run", "--rm", "busybox", "nosuchcommand", check=False)
    assert p.returncode == 127, p.stderr
    assert b"nosuchcommand" in p.stderr


def test_run_options(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker(
        "run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000", "--hostname", "box", "--label", "a=b",
        "busybox", "sh", "-c", 'echo "$FOO $(pwd) $(id -u):$(id -g) $(hostname)"',
    )
    assert p.stdout == b"bar /tmp 1000:1000 box\n"


def test_entrypoint_override(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker("run", "--rm", "--entrypoint", "echo", "busybox", "via", "entrypoint")
    assert p.stdout == b"via entrypoint\n"


def test_detached_logs_stop_rm(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                   "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done").stdout.decode().strip()
    assert len(cid) == 64
    until(lambda: len(d.docker("logs", "ticker").stdout.splitlines()) >= 3, "three lines logged")
    ps = d.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout.decode()
    assert "ticker Up" in ps
    logs = d.docker("logs", "--tail", "2", "ticker").stdout.decode().splitlines()
    assert len(logs) == 2 and logs[0].startswith("line")
    assert d.docker("inspect", "-f", "{{.State.Running}}", "ticker").stdout == b"true\n"
    d.docker("stop", "-t", "1", "ticker")
    state = json.loads(d.docker("inspect", "ticker").stdout)[0]["State"]
    assert state["Running"] is False and state["Status"] == "exited"
    d.docker("rm", "ticker")
    assert d.docker("ps", "-aq").stdout == b""


def test_logs_follow_ends_at_exit(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "shortlived", "busybox", "sh", "-c", "echo a; sleep 1; echo b")
    p = d.docker("logs", "-f", "shortlived", timeout=30)
    assert p.stdout == b"a\nb\n"


def test_rm_running_needs_force(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "busy", "busybox", "sleep", "100")
    p = d.docker("rm", "busy", check=False)
    assert p.returncode != 0
    assert b"stop the container before removing or force remove" in p.stderr
    d.docker("rm", "-f", "busy")


def test_duplicate_name_conflict(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("create", "--name", "dup", "busybox", "true")
    p = d.docker("create", "--name", "dup", "busybox", "true", check=False)
    assert p.returncode == 1  # `docker create` exits 1 on a daemon error (only `run` uses 125)
    assert b"is already in use" in p.stderr


def test_invalid_name(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker("create", "--name", "bad name!", "busybox", "true", check=False)
    assert p.returncode == 1
    assert b"Invalid container name" in p.stderr


def test_unknown_image_404(clean_daemon: Daemon) -> None:
    with clean_daemon.api() as c:
        r = c.post("/containers/create", json={"Image": "nosuchimage:tag"})
    assert r.status_code == 404
    assert "No such image" in r.json()["message"]


def test_malformed_json_400(clean_daemon: Daemon) -> None:
    with clean_daemon.api() as c:
        r = c.post("/containers/create", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_create_start_wait_rename_restart(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("create", "--name", "c1", "busybox", "sh", "-c", "exit 7")
    d.docker("rename", "c1", "c2")
    d.docker("start", "c2")
    assert d.docker("wait", "c2").stdout == b"7\n"
    d.docker("restart", "c2")
    assert d.docker("wait", "c2").stdout == b"7\n"
    assert d.docker("inspect", "-f", "{{.State.ExitCode}} {{.Name}}", "c2").stdout == b"7 /c2\n"


def test_kill_signal(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "killme", "busybox", "sleep", "100")
    d.docker("kill", "killme")
    assert d.docker("wait", "killme").stdout == b"137\n"
    p = d.docker("kill", "killme", check=False)
    assert p.returncode != 0 and b"is not running" in p.stderr


def test_stop_timeout_then_sigkill(clean_daemon: Daemon) -> None:
    d = clean_daemon
    # sh as PID 1 ignores SIGTERM without a handler, so stop must escalate to SIGKILL.
    d.docker("run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; sleep 100")
    d.docker("stop", "-t", "1", "stubborn")
    assert d.docker("inspect", "-f", "{{.State.ExitCode}}", "stubborn").stdout == b"137\n"


def test_ps_filters_and_format(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "lab1", "--label", "team=a", "busybox", "sleep", "100")
    d.docker("create", "--name", "lab2", "--label", "team=b", "busybox", "true")
    assert d.docker("ps", "--format", "{{.Names}}").stdout == b"lab1\n"
    assert set(d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()) == {b"lab1", b"lab2"}
    assert d.docker("ps", "-a", "--filter", "label=team=b", "--format", "{{.Names}}").stdout == b"lab2\n"
    assert d.docker("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").stdout == b"lab2\n"
    assert d.docker("ps", "-a", "--filter", "name=lab1", "-q").stdout.strip() != b""
    assert d.docker("ps", "-l", "--format", "{{.Names}}").stdout == b"lab2\n"
    assert len(d.docker("ps", "-a", "--no-trunc", "-q").stdout.split()[0]) == 64


def test_ps_shows_each_change_at_once(clean_daemon: Daemon) -> None:
    """The list keeps its entries encoded between lists: a rename, a network connect and disconnect, a
    pause, a link and a stop must each show at the very next `docker ps`."""
    d = clean_daemon

    def ps(*args: str) -> dict[str, str]:
        """Names (all of them: --no-trunc) -> "State Networks"."""
        out = d.docker("ps", "--no-trunc", *args, "--format", "{{.Names}} {{.State}} {{.Networks}}").stdout
        return {line.split()[0]: line.split(" ", 1)[1] for line in out.decode().splitlines()}

    net = "psnet" + str(time.monotonic_ns())[-6:]
    d.docker("network", "create", net)
    try:
        d.docker("run", "-d", "--name", "ps1", "busybox", "sleep", "100")
        d.docker("run", "-d", "--name", "ps2", "busybox", "sleep", "100")
        assert ps() == {"ps1": "running bridge", "ps2": "running bridge"}
        assert ps() == {"ps1": "running bridge", "ps2": "running bridge"}  # kept entries now
        d.docker("rename", "ps1", "ps1b")
        assert ps() == {"ps1b": "running bridge", "ps2": "running bridge"}
        d.docker("network", "connect", net, "ps2")
        assert ps()["ps2"] in (f"running bridge,{net}", f"running {net},bridge")
        d.docker("network", "disconnect", net, "ps2")
        assert ps()["ps2"] == "running bridge"
        d.docker("pause", "ps2")
        assert ps()["ps2"] == "paused bridge"
        assert d.docker("ps", "--filter", "name=ps2", "--format", "{{.Status}}").stdout.strip().endswith(b"(Paused)")
        d.docker("unpause", "ps2")
        d.docker("run", "-d", "--name", "ps3", "--link", "ps2:db", "busybox", "sleep", "100")
        assert ps() == {"ps1b": "running bridge", "ps2,ps3/db": "running bridge", "ps3": "running bridge"}
        d.docker("stop", "-t", "0", "ps2")
        assert ps() == {"ps1b": "running bridge", "ps3": "running bridge"}
        assert ps("-a")["ps2,ps3/db"] == "exited bridge"
        d.docker("rm", "-f", "ps3")
        assert ps("-a") == {"ps1b": "running bridge", "ps2": "exited bridge"}
    finally:
        d.docker("rm", "-f", "ps1b", "ps2", "ps3", check=False)
        d.docker("network", "rm", net, check=False)


def test_cp_both_ways_and_export_diff(clean_daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = clean_daemon
    d.docker("run", "-d", "--name", "files", "busybox", "sh", "-c", "echo inside > /tmp/in.txt; rm /etc/group; sleep 100")
    until(lambda: d.docker("exec", "files", "test", "!", "-e", "/etc/group", check=False).returncode == 0,
          "the container wrote its file and removed /etc/group")
    d.docker("cp", "files:/tmp/in.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "inside\n"
    (tmp_path / "up.txt").write_text("from host\n")
    d.docker("cp", str(tmp_path / "up.txt"), "files:/up.txt")
    assert d.docker("exec", "files", "cat", "/up.txt").stdout == b"from host\n"
    diff = d.docker("diff", "files").stdout.decode().splitlines()
    assert "A /up.txt" in diff and "D /etc/group" in diff and "C /tmp" in diff
    d.docker("export", "-o", str(tmp_path / "fs.tar"), "files")
    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = set(tf.getnames())
    assert "up.txt" in names and "bin/busybox" in names and "etc/group" not in names


def test_init_layer_like_dockerd(clean_daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What dockerd shows for busybox (which has no /etc/hosts of its own): /.dockerenv and the mount
    points live in an init layer, so `diff` and `commit` show only the container's own changes."""
    d = clean_daemon
    d.docker("run", "--name", "init", "busybox", "sh", "-c", "test -f /.dockerenv && readlink /etc/mtab")
    assert d.docker("logs", "init").stdout == b"/proc/mounts\n"
    assert d.docker("diff", "init").stdout == b""
    d.docker("export", "-o", str(tmp_path / "fs.tar"), "init")
    with tarfile.open(tmp_path / "fs.tar") as tf:
        env = tf.getmember(".dockerenv")
        assert env.isfile() and env.size == 0 and env.mode == 0o755
        assert tf.getmember("etc/hosts").size == 0  # the empty mount point, as in dockerd's export
    d.docker("commit", "init", "init-commit:1")
    try:
        hist = json.loads(d.docker("image", "inspect", "init-commit:1").stdout)[0]["RootFS"]["Layers"]
        base = json.loads(d.docker("image", "inspect", "busybox").stdout)[0]["RootFS"]["Layers"]
        assert len(hist) == len(base) + 1
        # The committed layer is empty: no /.dockerenv, no mount points.
        d.docker("save", "-o", str(tmp_path / "img.tar"), "init-commit:1")
        with tarfile.open(tmp_path / "img.tar") as img:
            top = json.load(img.extractfile("manifest.json"))[0]["Layers"][-1]  # type: ignore[arg-type]
            with tarfile.open(fileobj=img.extractfile(top)) as layer:
                assert layer.getnames() == []
    finally:
        d.docker("rmi", "init-commit:1")


def test_save_load_roundtrip(clean_daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = clean_daemon
    d.docker("tag", "busybox:latest", "roundtrip:1")
    d.docker("save", "-o", str(tmp_path / "rt.tar"), "roundtrip:1")
    d.docker("rmi", "roundtrip:1")
    out = d.docker("load", "-i", str(tmp_path / "rt.tar")).stdout.decode()
    assert "roundtrip:1" in out
    assert d.docker("run", "--rm", "roundtrip:1", "echo", "ok").stdout == b"ok\n"
    d.docker("rmi", "roundtrip:1")


def test_import_with_change(clean_daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = clean_daemon
    d.docker("create", "--name", "src", "busybox", "true")
    d.docker("export", "-o", str(tmp_path / "fs.tar"), "src")
    d.docker("import", "-c", "CMD [\"echo\", \"imported\"]", str(tmp_path / "fs.tar"), "imported:1")
    assert d.docker("run", "--rm", "imported:1").stdout == b"imported\n"
    d.docker("rmi", "imported:1")


def test_rmi_in_use_conflict(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("tag", "busybox:latest", "inuse:1")
    d.docker("create", "--name", "user", "inuse:1", "true")
    # Untagging one of several names is fine; deleting the image by id is a conflict.
    iid = d.docker("inspect", "-f", "{{.Id}}", "inuse:1").stdout.decode().strip()
    p = d.docker("rmi", iid, check=False)
    assert p.returncode != 0 and b"conflict" in p.stderr.lower()
    d.docker("rm", "user")
    d.docker("rmi", "inuse:1")


def test_events_stream(clean_daemon: Daemon) -> None:
    d = clean_daemon
    since = str(int(time.time()) - 1)
    d.docker("run", "--rm", "--name", "evt", "busybox", "true")
    until = str(int(time.time()) + 1)
    p = d.docker("events", "--since", since, "--until", until, "--filter", "container=evt",
                 "--format", "{{.Action}}", timeout=30)
    actions = p.stdout.decode().split()
    for a in ("create", "start", "die", "destroy"):
        assert a in actions, actions


def test_history_and_image_inspect(clean_daemon: Daemon) -> None:
    d = clean_daemon
    info = json.loads(d.docker("image", "inspect", "busybox").stdout)[0]
    assert info["RootFS"]["Type"] == "layers" and info["Config"]["Cmd"] == ["sh"]
    assert d.docker("history", "-q", "busybox").stdout.strip()


def test_archive_put_rejects_escape(clean_daemon: Daemon) -> None:
    """A tar with ../ entries cannot write outside the container."""
    d = clean_daemon
    d.docker("create", "--name", "tgt", "busybox", "true")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"pwned\n"
        ti = tarfile.TarInfo("../../../../../../tmp/dockyard-escape-test")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    with d.api() as c:
        r = c.put("/containers/tgt/archive", params={"path": "/"}, content=buf.getvalue())
    assert r.status_code >= 400
    import os

    assert not os.path.exists("/tmp/dockyard-escape-test")


def test_our_cp_archive_and_follow_link(clean_daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`dockyard cp -a` chowns to the container's user; `-L` copies what a link points at."""
    d = clean_daemon
    d.docker("run", "-d", "--name", "cpflags", "-u", "1000:1000", "busybox", "sh", "-c",
             "echo target > /tmp/real; ln -s /tmp/real /tmp/link; sleep 100")
    until(lambda: d.docker("exec", "cpflags", "test", "-L", "/tmp/link", check=False).returncode == 0, "the link made")
    (tmp_path / "f.txt").write_text("x\n")
    d.dockyard("cp", "-a", str(tmp_path / "f.txt"), "cpflags:/tmp/f.txt")
    assert d.docker("exec", "cpflags", "stat", "-c", "%u:%g", "/tmp/f.txt").stdout == b"1000:1000\n"
    d.dockyard("cp", "-L", "cpflags:/tmp/link", str(tmp_path / "out"))
    out = tmp_path / "out"
    assert not out.is_symlink() and out.read_text() == "target\n"
