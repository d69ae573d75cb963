"""The trace of host changes (GET /dockyard/trace, `dockyard trace`, `--explain`) against real containers:
what it recorded must be what `explain` then reads back from the kernel."""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Any

import pytest

from tests.conftest import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trace_of(d: Daemon, obj: str) -> list[dict[str, Any]]:
    with d.api() as c:
        r = c.get("/dockyard/trace", params={"object": obj})
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines()]


def one(records: list[dict[str, Any]], area: str, pattern: str) -> dict[str, Any]:
    found = [r for r in records if r["Area"] == area and re.search(pattern, r["Op"])]
    assert len(found) == 1, (area, pattern, [r["Op"] for r in records])
    return found[0]


def test_trace_names_what_explain_reads_back_from_the_kernel(clean_daemon: Daemon) -> None:
    d, port = clean_daemon, free_port()
    # The real docker CLI: the Engine API is unchanged, the trace is recorded all the same.
    cid = d.docker("run", "-d", "-p", f"127.0.0.1:{port}:80", "--memory", "64m", "--pids-limit", "50",
                   "--cap-drop", "NET_RAW", "busybox", "sleep", "300").stdout.decode().strip()
    recs = trace_of(d, cid)
    info = json.loads(d.dockyard("explain", "--format", "json", cid).stdout)
    assert all(r["Object"] == f"container:{cid}" and r["OK"] and r["Why"] for r in recs)
    assert [r["Seq"] for r in recs] == sorted(r["Seq"] for r in recs)

    # Lower dirs: the overlay mount's lowerdirs, top first, are those mounted at / now.
    mount = one(recs, "mount", r"mount -t overlay .*/rootfs ")
    assert mount["Result"] == "mount(2) = 0"
    assert [x.removeprefix("lowerdir ") for x in mount["Detail"]] == [x["Dir"] for x in info["Rootfs"]["Lower"]]

    # Limits: what runc wrote, read back right after create, is what the cgroup holds.
    limits = {lim["Name"]: lim["Value"] for lim in info["Cgroups"]["Limits"]}
    mem = one(recs, "cgroup", r"memory\.(limit_in_bytes|max) = ")
    pids = one(recs, "cgroup", r"pids\.max = ")
    assert mem["Result"] == f"reads back {limits['memory']}" == "reads back 67108864"
    assert pids["Result"] == f"reads back {limits['pids']}" == "reads back 50"
    assert "--memory" in mem["Why"] and "--pids-limit" in pids["Why"]

    # Veth and address: the host end the kernel shows on the bridge, the address inside the netns.
    (eth0,) = info["Network"]["Interfaces"]
    veth = one(recs, "link", r"type veth")
    assert veth["Result"].startswith(f"{eth0['Host']} ifindex ") and eth0["Bridge"] in veth["Result"]
    addr = one(recs, "addr", r"ip addr add ")
    assert set(eth0["Addresses"]) <= set(addr["Result"].split(": ", 1)[1].split())  # (v6 ones too, if any)
    ip = eth0["Addresses"][0].split("/")[0]

    # DNAT: the rule as the kernel echoed it when added is the rule nft lists now.
    (dnat,) = [r for r in info["Network"]["Rules"] if f"dport {port} dnat to {ip}:80" in r["Rule"]]
    nft = [r for r in recs if r["Area"] == "nft" and f"dport {port} dnat to {ip}:80" in r["Result"]]
    assert len(nft) == 1 and dnat["Rule"] in nft[0]["Result"] and "# handle" in nft[0]["Result"]

    # Capabilities: the bounding set the kernel gave the process runc made, and what it holds running.
    create = one(recs, "runtime", r"runc create --bundle")
    held = re.search(r"CapBnd: ([a-z_ ]+);", create["Result"])
    assert held is not None
    caps = [c.removeprefix("CAP_").lower() for c in info["Process"]["Capabilities"]]
    assert held.group(1).split() == caps and "net_raw" not in caps and "chown" in caps
    assert any("dropped net_raw" in x for x in create["Detail"])
    assert "own namespaces: mnt uts ipc pid net" in create["Result"]
    # The cgroup runc put the process in, as /proc/<pid>/cgroup said, is the one explain reads limits from.
    assert create["Result"].endswith(f"cgroup /dockyard/{cid}")
    assert set(info["Cgroups"]["Paths"].values()) == {f"/dockyard/{cid}"}

    # `dockyard trace` replays the same records; removing the container drops them.
    text = d.dockyard("trace", cid[:12]).stdout.decode()
    assert f"dnat to {ip}:80" in text and "why: " in text and eth0["Host"] in text
    as_json = [json.loads(x) for x in d.dockyard("trace", "--format", "json", cid).stdout.splitlines()]
    assert [r["Seq"] for r in as_json] == [r["Seq"] for r in recs]
    d.docker("rm", "-f", cid)
    assert trace_of(d, cid) == []


def test_run_explain_prints_every_step_before_the_output_and_the_teardown_after(clean_daemon: Daemon) -> None:
    p = clean_daemon.dockyard("run", "--rm", "--explain", "busybox", "echo", "hello")
    assert p.stdout == b"hello\n"  # the command's own output is untouched
    err = p.stderr.decode()
    order = ["mount -t overlay", "runc create --bundle", "runc start", "rm -rf"]
    where = [err.find(x) for x in order]
    assert -1 not in where and where == sorted(where), (where, err)
    # The teardown's runc delete is between start and rm; the rootfs goes mounted into the trash with
    # the container's dirs and is unmounted after the answer (printed if the CLI is still reading).
    assert where[2] < err.find("runc delete") < where[3], err
    assert err.find("umount2") == -1 or err.find("umount2") > where[3], err
    assert "why: " in err and "\x1b[" not in err  # plain when stderr is not a terminal


def test_exec_and_stop_explain_show_their_own_steps(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "busybox", "sleep", "300").stdout.decode().strip()
    p = d.dockyard("exec", "--explain", cid, "echo", "in")
    assert p.stdout == b"in\n" and "runc exec --process" in p.stderr.decode() and "── container" in p.stderr.decode()
    p = d.dockyard("stop", "--explain", "-t", "1", cid)
    err = p.stderr.decode()
    assert "runc kill" in err and " 15" in err and "runc delete" in err and "ip link del veth" in err


def test_network_volume_image_and_build_steps_are_traced(clean_daemon: Daemon, tmp_path: Any) -> None:
    d = clean_daemon
    net = "trace-net-" + os.urandom(3).hex()
    vol = "trace-vol-" + os.urandom(3).hex()
    err = d.dockyard("network", "create", "--explain", net).stderr.decode()
    assert "── network" in err and "ip link add br-" in err and "type bridge" in err and "ip addr add" in err
    try:
        err = d.dockyard("volume", "create", "--explain", vol).stderr.decode()
        assert f"── volume {vol}" in err and f"volumes/{vol}/_data" in err
        assert "type bridge" in d.dockyard("trace", net).stdout.decode()  # replayed by name
        assert f"volumes/{vol}/_data" in d.dockyard("trace", vol).stdout.decode()
        cid = d.docker("run", "-d", "-v", f"{vol}:/etc", "busybox", "sleep", "300").stdout.decode().strip()
        copy = one(trace_of(d, cid), "volume", r"copy /etc of the image into ")
        assert copy["OK"] and vol in copy["Op"]
        err = d.dockyard("network", "connect", "--explain", net, cid).stderr.decode()
        assert "type veth" in err and "dev eth1" in err and "── container" in err
        err = d.dockyard("network", "disconnect", "--explain", net, cid).stderr.decode()
        assert "ip link del veth" in err

        # commit: the upper dir tarred into a layer blob, extracted as a new snapshot
        d.docker("exec", cid, "touch", "/committed")
        tag = "trace-commit:" + os.urandom(3).hex()
        err = d.dockyard("commit", "--explain", cid, tag).stderr.decode()
        assert "tar the changes in" in err and "into a layer blob" in err and "new snapshot" in err
        d.docker("rm", "-f", cid)
        d.docker("save", "-o", str(tmp_path / "committed.tar"), tag)
        err = d.dockyard("rmi", "--explain", tag).stderr.decode()
        assert "rm -rf" in err and "no image uses this layer chain" in err
        # load: the layer the image lacks is extracted into a new snapshot (busybox's is there already)
        err = d.dockyard("load", "--explain", "-i", str(tmp_path / "committed.tar")).stderr.decode()
        assert "── image sha256:" in err and err.count("extract layer") == 1 and "new snapshot" in err
        d.docker("rmi", tag)

        # build: each RUN step's container, and its upper dir renamed into the layer store
        (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\n")
        tag = "trace-build:" + os.urandom(3).hex()
        p = d.dockyard("build", "--explain", "-t", tag, str(tmp_path))
        err = p.stderr.decode()
        assert "runc create --bundle" in err and "runc start" in err and "rm -rf" in err
        assert re.search(r"rename .*/upper -> .*/fs", err), err
        d.docker("rmi", tag)
    finally:
        d.cleanup_containers()
        err = d.dockyard("volume", "rm", "--explain", vol).stderr.decode()
        assert "rm -rf" in err and vol in err
        err = d.dockyard("network", "rm", "--explain", net).stderr.decode()
        assert "ip link del br-" in err


def test_each_lifecycle_command_explains_its_own_steps(clean_daemon: Daemon) -> None:
    d = clean_daemon

    def explain(*args: str) -> str:
        p = d.dockyard(*args)
        return p.stderr.decode()

    p = d.dockyard("create", "--explain", "busybox", "sleep", "300")
    cid, err = p.stdout.decode().strip(), p.stderr.decode()
    assert "(init layer)" in err and "upper" in err and "runc" not in err  # create makes files, runs nothing
    err = explain("start", "--explain", cid)
    assert "mount -t overlay" in err and "runc create --bundle" in err and "runc start" in err
    err = explain("pause", "--explain", cid)
    assert f"runc pause {cid[:12]}" in err and "freezer" in err
    err = explain("unpause", "--explain", cid)
    assert f"runc resume {cid[:12]}" in err
    err = explain("restart", "--explain", "-t", "0", cid)
    assert err.find("runc kill") < err.find("runc delete") < err.find("runc create") < err.find("runc start")
    err = explain("kill", "--explain", cid)
    assert f"runc kill {cid[:12]} 9" in err and "SIGKILL" in err
    err = explain("rm", "--explain", cid)
    assert "rm -rf" in err and "runc" not in err  # already stopped: only the files go


def test_pull_explain_names_the_snapshot_each_layer_is_unpacked_into(clean_daemon: Daemon, tmp_path: Any) -> None:
    import subprocess
    import sys

    d, port = clean_daemon, free_port()
    reg = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
                            "--root", str(tmp_path / "registry")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert reg.stdout is not None and "listening" in reg.stdout.readline().decode()
        # An image with a layer the daemon lacks: busybox plus one committed file.
        cid = d.docker("run", "-d", "busybox", "sh", "-c", "echo pulled > /pulled; sleep 300").stdout.decode().strip()
        d.docker("exec", cid, "true")
        ref = f"127.0.0.1:{port}/trace/pulled:1"
        d.docker("commit", cid, ref)
        d.docker("rm", "-f", cid)
        d.docker("push", ref)
        d.docker("rmi", ref)
        p = d.dockyard("pull", "--explain", ref)
        err = p.stderr.decode()
        assert f"── image {ref}" in err and err.count("extract layer") == 1, err  # busybox's layer is there
        done = re.search(r"→ new snapshot: (\S+) \(diff (sha256:\w+), (\d+) bytes\)", err)
        assert done is not None, err
        info = json.loads(d.dockyard("explain", "--format", "json", "--type", "image", ref).stdout)
        top = info["Layers"][-1]
        assert done.group(1) == top["Dir"] and top["DiffID"].startswith(done.group(2)) and top["Exists"]
        d.docker("rmi", ref)
    finally:
        reg.terminate()
        reg.wait(10)


def test_update_and_prune_explain_their_steps(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "--memory", "64m", "busybox", "sleep", "300").stdout.decode().strip()
    err = d.dockyard("update", "--explain", "--memory", "96m", "--memory-swap", "192m", cid).stderr.decode()
    assert "runc update -r" in err and "docker update" in err
    assert any(r["Op"].startswith("runc update") for r in trace_of(d, cid))  # kept with the container
    d.docker("rm", "-f", cid)
    vol = "trace-prune-" + os.urandom(3).hex()
    d.docker("volume", "create", vol)
    err = d.dockyard("volume", "prune", "--explain", "-f", "-a").stderr.decode()
    assert f"── volume {vol}" in err and "rm -rf" in err
