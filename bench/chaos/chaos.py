"""Chaos harness (issue 25): clients doing a seeded random mix against a throw-away daemon of this
checkout while a chaos thread SIGKILLs the daemon (and restarts it) and kills its conmon/runc
processes; invariants checked after each restart and at the end.

    sudo DOCKYARD_SHARED=/work/shared .venv/bin/python bench/chaos/chaos.py --ops 400 --kills 5 --clients 4 --seed 7

Clients alternate between the real docker CLI and docker-py. An operation's error is expected (a
kill can land in it) and only counted; a violation is: an API call not answered within 30 s (the
daemon's stacks are dumped with SIGUSR1 first), a container whose daemon state the kernel does not
match after a restart (runc state, conmon, rootfs mount, netns, veths, cgroup), a kernel object of
the daemon's it does not know, an image it lists that is not whole, a log line a client already
read that is gone, and, after everything is removed, anything of the daemon's left on the host.
Each client's sequence of operations is fixed by the seed; the interleaving and the kill points'
landing (operations in flight) are not, so a replay reproduces the mix, not the exact timing.
Exit status 1 when a violation was found.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import DOCKER_CLI, Daemon, processes_named  # noqa: E402

from dockyard.runtime import cgroups  # noqa: E402

API_TIMEOUT = 30.0
HEX64 = re.compile(rb"[0-9a-f]{64}")


class Gate:
    """Clients pass it around each operation; the chaos thread closes it to restart and check."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.open = True
        self.inflight = 0

    def enter(self) -> None:
        with self.cv:
            self.cv.wait_for(lambda: self.open)
            self.inflight += 1

    def leave(self) -> None:
        with self.cv:
            self.inflight -= 1
            self.cv.notify_all()

    def close(self, timeout: float) -> bool:
        with self.cv:
            self.open = False
            return self.cv.wait_for(lambda: self.inflight == 0, timeout)

    def reopen(self) -> None:
        with self.cv:
            self.open = True
            self.cv.notify_all()


class Run:
    def __init__(self, args: argparse.Namespace, d: Daemon, registry: str) -> None:
        self.args, self.d, self.registry = args, d, registry
        self.gate = Gate()
        self.lock = threading.Lock()
        self.ops_done = 0
        self.kills_done = 0
        self.proc_kills = Counter[str]()
        self.outcomes = Counter[str]()
        self.errors: dict[str, str] = {}
        self.violations: list[str] = []
        self.latencies: list[float] = []
        self.seen_ids: set[str] = set()
        self.log_marks: dict[str, str] = {}  # container -> a line a client has read from its logs
        self.stop = threading.Event()
        rng = random.Random(args.seed)
        span = range(max(1, args.ops // 20), max(args.ops * 9 // 10, args.ops // 20 + args.kills + 1))
        points = sorted(rng.sample(span, args.kills)) if args.kills else []
        self.kill_points = points
        self.tmp = Path(tempfile.mkdtemp(prefix="chaos-files-", dir="/tmp"))
        (self.tmp / "payload").write_bytes(os.urandom(2048))

    def violation(self, what: str) -> None:
        with self.lock:
            self.violations.append(what)
        print(f"VIOLATION: {what}", flush=True)

    def stack_dump(self, why: str) -> None:
        if self.d.proc is not None and self.d.proc.poll() is None:
            os.kill(self.d.proc.pid, signal.SIGUSR1)
            time.sleep(1)
        self.violation(f"no answer within {API_TIMEOUT:.0f} s: {why} (stacks in {self.d.log})")

    def count(self) -> int:
        with self.lock:
            self.ops_done += 1
            return self.ops_done


class Client(threading.Thread):
    def __init__(self, run: Run, k: int) -> None:
        super().__init__(name=f"client-{k}", daemon=True)
        self.run_, self.k = run, k
        self.rng = random.Random(f"{run.args.seed}-{k}")
        self.cli = k % 2 == 0
        self.n = 0
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []
        self.images: list[str] = []
        self.py: Any = None

    # -- the two front ends -------------------------------------------------------------------
    def docker(self, *argv: str, stdin: bytes | None = None) -> str:
        env = self.run_.d.env
        env["DOCKER_BUILDKIT"] = "0"
        try:
            p = subprocess.run([DOCKER_CLI, *argv], env=env, input=stdin, capture_output=True, timeout=API_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.run_.stack_dump(f"docker {' '.join(argv)}")
            raise RuntimeError("timeout") from None
        if p.returncode != 0:
            raise RuntimeError(p.stderr.decode(errors="replace").strip()[-200:] or f"exit {p.returncode}")
        return p.stdout.decode(errors="replace")

    def client(self) -> Any:
        import docker

        if self.py is None:
            self.py = docker.DockerClient(base_url=self.run_.d.host, version="1.41", timeout=API_TIMEOUT)
        return self.py

    def name(self, kind: str) -> str:
        self.n += 1
        return f"chaos-{self.k}-{kind}{self.n}"

    def pick(self, xs: list[str]) -> str:
        if not xs:
            raise LookupError("nothing to pick")
        return self.rng.choice(xs)

    # -- operations ----------------------------------------------------------------------------
    def op_create(self) -> None:
        name = self.name("c")
        cmd = ["sh", "-c", f"echo mark-{name}; exec sleep 3600"]
        run = self.rng.random() < 0.5
        if self.cli:
            out = self.docker("run" if run else "create", *(["-d"] if run else []), "--name", name, "-v",
                              f"/tmp/{name}", "busybox", *cmd)
            cid = out.strip()
        elif run:
            cid = self.client().containers.run("busybox", cmd, name=name, detach=True).id
        else:
            cid = self.client().containers.create("busybox", cmd, name=name).id
        self.containers.append(cid)
        with self.run_.lock:
            self.run_.seen_ids.add(cid)

    def op_start(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            self.docker("start", cid)
        else:
            self.client().api.start(cid)

    def op_exec(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            out = self.docker("exec", cid, "echo", "ex-ok")
        else:
            out = self.client().containers.get(cid).exec_run(["echo", "ex-ok"]).output.decode()
        if "ex-ok" not in out:
            raise RuntimeError(f"exec output {out!r}")

    def op_logs(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            out = self.docker("logs", cid)
        else:
            out = self.client().api.logs(cid).decode(errors="replace")
        with self.run_.lock:
            mark = self.run_.log_marks.get(cid)
        if mark is not None and mark not in out:
            self.run_.violation(f"log line {mark!r} a client read from {cid[:12]} is gone: {out[-200:]!r}")
        found = re.search(r"mark-\S+", out)
        if found:
            with self.run_.lock:
                self.run_.log_marks[cid] = found.group(0)

    def op_stop(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            self.docker("stop", "-t", "1", cid)
        else:
            self.client().api.stop(cid, timeout=1)

    def op_kill(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            self.docker("kill", cid)
        else:
            self.client().api.kill(cid)

    def op_rm(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            self.docker("rm", "-f", "-v", cid)
        else:
            self.client().api.remove_container(cid, force=True, v=True)
        self.containers.remove(cid)
        with self.run_.lock:
            self.run_.log_marks.pop(cid, None)

    def op_commit(self) -> None:
        cid = self.pick(self.containers)
        ref = self.name("img")
        if self.cli:
            self.docker("commit", cid, ref)
        else:
            self.client().api.commit(cid, repository=ref)
        self.images.append(ref)

    def op_rmi(self) -> None:
        ref = self.pick(self.images)
        if self.cli:
            self.docker("rmi", "-f", ref)
        else:
            self.client().api.remove_image(ref, force=True)
        self.images.remove(ref)

    def op_network(self) -> None:
        r = self.rng.random()
        if r < 0.3 or not self.networks:
            name = self.name("net")
            if self.cli:
                self.docker("network", "create", name)
            else:
                self.client().api.create_network(name)
            self.networks.append(name)
        elif r < 0.6:
            net, cid = self.pick(self.networks), self.pick(self.containers)
            if self.cli:
                self.docker("network", "connect", net, cid)
            else:
                self.client().api.connect_container_to_network(cid, net)
        elif r < 0.85:
            net, cid = self.pick(self.networks), self.pick(self.containers)
            if self.cli:
                self.docker("network", "disconnect", "-f", net, cid)
            else:
                self.client().api.disconnect_container_from_network(cid, net, force=True)
        else:
            net = self.pick(self.networks)
            if self.cli:
                self.docker("network", "rm", net)
            else:
                self.client().api.remove_network(net)
            self.networks.remove(net)

    def op_volume(self) -> None:
        if self.rng.random() < 0.5 or not self.volumes:
            name = self.name("vol")
            if self.cli:
                self.docker("volume", "create", name)
            else:
                self.client().api.create_volume(name)
            self.volumes.append(name)
        else:
            vol = self.pick(self.volumes)
            if self.cli:
                self.docker("volume", "rm", vol)
            else:
                self.client().api.remove_volume(vol)
            self.volumes.remove(vol)

    def op_cp(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            self.docker("cp", str(self.run_.tmp / "payload"), f"{cid}:/tmp/payload")
            self.docker("cp", f"{cid}:/tmp/payload", str(self.run_.tmp / f"back-{self.k}"))
            if (self.run_.tmp / f"back-{self.k}").read_bytes() != (self.run_.tmp / "payload").read_bytes():
                self.run_.violation(f"cp round trip through {cid[:12]} changed the file")
        else:
            import io
            import tarfile

            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                tf.add(str(self.run_.tmp / "payload"), arcname="payload")
            self.client().api.put_archive(cid, "/tmp", buf.getvalue())

    def op_pause(self) -> None:
        cid = self.pick(self.containers)
        if self.cli:
            self.docker("pause", cid)
            self.docker("unpause", cid)
        else:
            self.client().api.pause(cid)
            self.client().api.unpause(cid)

    def op_pull(self) -> None:
        ref = f"{self.run_.registry}/chaos/busybox:latest"
        if self.cli:
            self.docker("pull", "-q", ref)
        else:
            self.client().api.pull(f"{self.run_.registry}/chaos/busybox", tag="latest")
        self.images.append(ref)

    def op_build(self) -> None:
        ref = self.name("build")
        dockerfile = f"FROM busybox\nRUN echo {ref} > /built\n".encode()
        if self.cli:
            self.docker("build", "-q", "-t", ref, "-", stdin=dockerfile)
        else:
            import io

            self.client().images.build(fileobj=io.BytesIO(dockerfile), tag=ref, rm=True)
        self.images.append(ref)

    OPS = [("create", 10), ("start", 10), ("exec", 8), ("logs", 8), ("stop", 5), ("kill", 3), ("rm", 6),
           ("commit", 2), ("rmi", 2), ("network", 8), ("volume", 4), ("cp", 4), ("pause", 4), ("pull", 2),
           ("build", 2)]

    def run(self) -> None:
        names, weights = zip(*self.OPS, strict=True)
        while not self.run_.stop.is_set():
            op = self.rng.choices(names, weights)[0]
            self.run_.gate.enter()
            t0 = time.monotonic()
            try:
                getattr(self, f"op_{op}")()
                outcome = "ok"
            except LookupError:
                outcome = "skip"
            except Exception as e:  # noqa: BLE001 - a kill may land in any call: count, go on
                outcome = "err"
                msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                with self.run_.lock:
                    self.run_.errors.setdefault(f"{op}: {msg[:60]}", msg)
            finally:
                self.run_.gate.leave()
            with self.run_.lock:
                self.run_.outcomes[f"{op}:{outcome}"] += 1
                if outcome != "skip":
                    self.run_.latencies.append(time.monotonic() - t0)
            if outcome != "skip" and self.run_.count() >= self.run_.args.ops:
                self.run_.stop.set()


# -- the kernel's view ----------------------------------------------------------------------------
def api_json(d: Daemon, path: str, **params: str) -> Any:
    with d.api() as c:
        r = c.get(path, params=params, timeout=API_TIMEOUT)
        r.raise_for_status()
        return r.json()


def runc_states(d: Daemon) -> dict[str, str]:
    root = d.exec_root / "runtime" / "runc"
    if not root.exists():
        return {}
    p = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"], capture_output=True, text=True)
    return {s["id"]: s["status"] for s in json.loads(p.stdout or "null") or []}


def procs_of(d: Daemon, exe: str) -> dict[int, list[bytes]]:
    """Processes named `exe` whose command line mentions the daemon's directories."""
    return processes_named(exe, d.base)


def cgroup_dirs(cid: str) -> list[Path]:
    return [p for p in cgroups.dirs(f"/dockyard/{cid}") if p.is_dir()]


def mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [m for m in (line.split()[4] for line in f) if m.startswith(f"{base}/")]


def bridge_links(master: str) -> list[str]:
    p = subprocess.run(["ip", "-o", "link", "show", "master", master], capture_output=True, text=True)
    return [line.split(": ")[1].split("@")[0] for line in p.stdout.splitlines() if ": " in line]


def kernel_mismatches(d: Daemon, ever: set[str]) -> list[str]:
    """What the daemon's containers say against what the kernel holds (the daemon quiet meanwhile)."""
    bad: list[str] = []
    ctrs = {c["Id"]: api_json(d, f"/containers/{c['Id']}/json") for c in api_json(d, "/containers/json", all="1")}
    runc = runc_states(d)
    conmons = {HEX64.search(b" ".join(cmd)) for cmd in procs_of(d, "conmon").values()}
    conmon_ids = {m.group(0).decode() for m in conmons if m}
    mounts = mounts_under(d.base)
    netns_dir = d.exec_root / "netns"
    netns = set(os.listdir(netns_dir)) if netns_dir.exists() else set()
    endpoints: dict[str, int] = Counter()
    for cid, c in ctrs.items():
        st = c["State"]
        want = "paused" if st["Paused"] else "running" if st["Running"] else None
        have = runc.get(cid)
        if want and have != want:
            bad.append(f"{cid[:12]}: daemon says {want}, runc says {have}")
        if not want and have in ("running", "paused"):
            bad.append(f"{cid[:12]}: daemon says {st['Status']}, runc says {have}")
        if want and cid not in conmon_ids:
            bad.append(f"{cid[:12]}: {want} without a conmon")
        if want:
            merged = (c.get("GraphDriver") or {}).get("Data", {}).get("MergedDir")
            if merged and merged not in mounts:
                bad.append(f"{cid[:12]}: {want} but its rootfs {merged} is not mounted")
            if not cgroup_dirs(cid):
                bad.append(f"{cid[:12]}: {want} without its cgroup")
            mode = c["HostConfig"].get("NetworkMode", "")
            if mode not in ("host", "none") and not mode.startswith("container:") and cid not in netns:
                bad.append(f"{cid[:12]}: {want} without its netns")
            for net in (c["NetworkSettings"].get("Networks") or {}).values():
                endpoints[net.get("NetworkID", "")] += 1
    for cid, status in runc.items():
        if cid not in ctrs:
            bad.append(f"runc has {cid[:12]} ({status}), the daemon does not")
    for cid in conmon_ids - set(ctrs):
        bad.append(f"a conmon for {cid[:12]}, a container the daemon does not know")
    for name in netns - set(ctrs):
        bad.append(f"netns {name[:12]} of no container the daemon knows")
    for m in mounts:
        ids = HEX64.findall(m.encode())
        if any(i.decode() in ever and i.decode() not in ctrs for i in ids):
            bad.append(f"mount {m} of a removed container")
    for cid in ever - set(ctrs):
        if cgroup_dirs(cid):
            bad.append(f"cgroup {cgroup_dirs(cid)[0]} of a removed container")
    for net in api_json(d, "/networks"):
        if net["Driver"] != "bridge":
            continue
        full = api_json(d, f"/networks/{net['Id']}")
        bridge = full["Options"].get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}"
        links = [x for x in bridge_links(bridge) if x.startswith("veth")]
        if len(links) != endpoints.get(net["Id"], 0):
            bad.append(f"network {net['Name']}: {len(links)} veths on {bridge}, {endpoints.get(net['Id'], 0)} "
                       "running endpoints")
    ips = {net["IPAddress"] for c in ctrs.values() if c["State"]["Running"]
           for net in (c["NetworkSettings"].get("Networks") or {}).values() if net.get("IPAddress")}
    for ip in sorted(nft_container_addresses(d) - ips):
        bad.append(f"nft rules name {ip}, the address of no running container")
    return bad


def nft_container_addresses(d: Daemon) -> set[str]:
    """The container addresses the daemon's nft tables name (DNAT targets, per-address rules)."""
    from dockyard.daemon.config import DaemonConfig
    from dockyard.daemon.wiring import instance_id

    iid = instance_id(DaemonConfig(data_root=d.data_root))
    subnets = []
    for net in api_json(d, "/networks"):
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                subnets.append(ipaddress.ip_network(cfg["Subnet"]))
    gateways = {str(next(s.hosts())) for s in subnets}
    out = set()
    for family in ("ip", "inet"):
        text = subprocess.run(["nft", "list", "table", family, f"dockyard_{iid}"], capture_output=True,
                              text=True).stdout
        for a in re.findall(r"\b(\d+\.\d+\.\d+\.\d+)\b(?!/)", text):
            addr = ipaddress.ip_address(a)
            if any(addr in s for s in subnets) and a not in gateways:
                out.add(a)
    return out


def image_problems(d: Daemon) -> list[str]:
    bad = []
    for img in api_json(d, "/images/json", all="1"):
        iid = img["Id"]
        try:
            full = api_json(d, f"/images/{iid}/json")
            api_json(d, f"/images/{iid}/history")
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            bad.append(f"image {iid[:19]} listed but not readable: {e}")
            continue
        for key, path in (full.get("GraphDriver") or {}).get("Data", {}).items():
            for p in str(path).split(":"):
                if p.startswith("/") and not Path(p).exists():
                    bad.append(f"image {iid[:19]} {key} {p} missing")
    return bad


def host_snapshot() -> dict[str, set[str]]:
    def lines(*argv: str) -> set[str]:
        return set(subprocess.run(argv, capture_output=True, text=True).stdout.splitlines())

    with open("/proc/self/mountinfo") as f:
        mounts = {line.split()[4] for line in f}
    links = {x.split(": ")[1].split("@")[0] for x in lines("ip", "-o", "link") if ": " in x}
    cgs = {str(c) for p in cgroups.dirs("/dockyard") for c in p.iterdir() if c.is_dir()}
    return {"mounts": mounts, "netns": lines("ip", "netns", "list"), "links": links,
            "nft tables": lines("nft", "list", "tables"), "cgroups": cgs}


# -- chaos ----------------------------------------------------------------------------------------
def settle_and_check(run: Run, when: str) -> None:
    deadline = time.monotonic() + 20
    bad: list[str] = []
    while time.monotonic() < deadline:
        try:
            with run.lock:
                ever = set(run.seen_ids)
            bad = kernel_mismatches(run.d, ever) + image_problems(run.d)
        except Exception as e:  # noqa: BLE001
            bad = [f"check failed: {e}"]
        if not bad:
            return
        time.sleep(2)  # the daemon may still be reconciling: ask again before calling it a violation
    for b in bad:
        run.violation(f"{when}: {b}")


def chaos(run: Run, rng: random.Random) -> None:
    while not run.stop.is_set():
        time.sleep(rng.uniform(0.2, 1.0))
        with run.lock:
            done = run.ops_done
        if run.kill_points and done >= run.kill_points[0]:
            run.kill_points.pop(0)
            run.d.kill()  # SIGKILL wherever the clients are
            run.kills_done += 1
            if not run.gate.close(API_TIMEOUT * 2):
                run.violation("client operations still in flight 60 s after the daemon died")
            print(f"kill {run.kills_done} at op {done}", flush=True)
            try:
                run.d.start()
            except RuntimeError as e:
                run.violation(f"restart after kill {run.kills_done} failed: {str(e)[-600:]}")
                run.stop.set()
                run.gate.reopen()
                return
            settle_and_check(run, f"after kill {run.kills_done}")
            run.gate.reopen()
        elif rng.random() < run.args.proc_kill_rate:
            kind = rng.choice(["conmon", "runc"])
            pids = sorted(procs_of(run.d, kind))
            if pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(pids), signal.SIGKILL)
                run.proc_kills[kind] += 1


def start_registry(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
                             "--root", str(base / "registry")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            cwd=ROOT)
    assert proc.stdout is not None and "listening" in proc.stdout.readline().decode()
    return proc, f"127.0.0.1:{port}"


def remove_everything(d: Daemon) -> None:
    with d.api() as c:
        for ctr in c.get("/containers/json", params={"all": "1"}).json():
            c.delete(f"/containers/{ctr['Id']}", params={"force": "1", "v": "1"}, timeout=120)
        for net in c.get("/networks").json():
            if net["Name"] not in ("bridge", "host", "none"):
                c.delete(f"/networks/{net['Id']}")
        for vol in c.get("/volumes").json().get("Volumes") or []:
            c.delete(f"/volumes/{vol['Name']}")
        for img in c.get("/images/json").json():
            c.delete(f"/images/{img['Id']}", params={"force": "1"}, timeout=120)


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=400)
    ap.add_argument("--kills", type=int, default=5, help="daemon SIGKILLs, at random operation counts")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--proc-kill-rate", type=float, default=0.05,
                    help="chance per chaos tick (0.2-1 s) to SIGKILL one of the daemon's conmon/runc processes")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    print(f"seed {args.seed} (replay: --ops {args.ops} --kills {args.kills} --clients {args.clients} "
          f"--seed {args.seed})", flush=True)
    if os.geteuid() != 0:
        print("needs root (real containers)", file=sys.stderr)
        return 2
    before = host_snapshot()
    d = Daemon(Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp")))
    reg_proc, registry = start_registry(d.base)
    run: Run | None = None
    t0 = time.monotonic()
    try:
        d.start()
        d.load_busybox()
        d.docker("tag", "busybox", f"{registry}/chaos/busybox:latest")
        d.docker("push", f"{registry}/chaos/busybox:latest")
        run = Run(args, d, registry)
        clients = [Client(run, k) for k in range(args.clients)]
        for c in clients:
            c.start()
        chaos_thread = threading.Thread(target=chaos, args=(run, random.Random(f"{args.seed}-chaos")), daemon=True)
        chaos_thread.start()
        for c in clients:
            c.join()
        run.stop.set()
        chaos_thread.join()
        if d.proc is None:
            d.start()
        settle_and_check(run, "at the end")
        remove_everything(d)
        settle_and_check(run, "after removing everything")
        left = {"mounts": [m for m in mounts_under(d.base) if "/overlay" in m or "/containers/" in m],
                "conmon": list(procs_of(d, "conmon")), "runc": list(procs_of(d, "runc")),
                "cgroups": [i for i in run.seen_ids if cgroup_dirs(i)]}
        for kind, xs in left.items():
            if xs:
                run.violation(f"after removing everything, {kind} left: {xs[:5]}")
    finally:
        d.teardown()
        reg_proc.terminate()
        reg_proc.wait(10)
        if run is not None:
            import shutil

            shutil.rmtree(run.tmp, ignore_errors=True)
    after = host_snapshot()
    elapsed = time.monotonic() - t0
    assert run is not None
    for kind in before:
        new = after[kind] - before[kind]
        ours = [x for x in new if str(d.base) in x or any(i in x for i in run.seen_ids)]
        if ours:
            run.violation(f"host not as before: {kind} added {ours[:5]}")
        elif new:
            print(f"(host {kind} changed by others meanwhile: {len(new)} added)")
    lat = run.latencies
    print(f"\nseed {args.seed}: {run.ops_done} operations by {args.clients} clients in {elapsed:.0f} s, "
          f"{run.kills_done} daemon kills survived, proc kills {dict(run.proc_kills)}")
    print(f"latency p50 {percentile(lat, .5):.2f} s, p95 {percentile(lat, .95):.2f} s, max {max(lat or [0]):.2f} s")
    oks = Counter[str]()
    errs = Counter[str]()
    for key, n in run.outcomes.items():
        op, outcome = key.split(":")
        (oks if outcome == "ok" else errs if outcome == "err" else Counter())[op] += n
    print("ok:   " + ", ".join(f"{k} {v}" for k, v in sorted(oks.items())))
    print("err:  " + ", ".join(f"{k} {v}" for k, v in sorted(errs.items())))
    for key in sorted(run.errors)[:40]:
        print(f"  e.g. {run.errors[key]}")
    print(f"violations: {len(run.violations)}")
    for v in run.violations:
        print(f"  {v}")
    return 1 if run.violations else 0


if __name__ == "__main__":
    sys.exit(main())
