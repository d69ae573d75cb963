"""Starting and stopping the daemons under test. Only what we started is stopped."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib.core import BenchError, Target

REPO = Path(__file__).resolve().parents[2]
PEERS = Path(os.environ.get("BENCH_PEERS", REPO.parent / "shared" / "peers"))
# Our daemon's command line; {sock}, {root} are filled in. Override with BENCH_DOCKYARD_CMD.
DOCKYARD_CMD = ("{venv}/bin/dockyard daemon --host unix://{sock} --data-root {root}/data "
                "--exec-root {root}/exec")


def ping(sock: str) -> bool:
    r = subprocess.run(["curl", "-s", "-m", "2", "--unix-socket", sock, "http://localhost/_ping"],
                       capture_output=True, text=True)
    return r.stdout == "OK"


class Managed:
    """A daemon this run may have started; stop() ends it only if we did."""

    def __init__(self) -> None:
        self.target: Target | None = None
        self.started = False

    def stop(self) -> None:
        raise NotImplementedError


class Peer(Managed):
    """A reference engine started by ../shared/peers/start-<name> (reused if already up)."""

    name = ""
    stop_args: tuple[str, ...] = ()

    def __init__(self, state: str) -> None:
        super().__init__()
        self.state = os.path.realpath(state)

    def start(self) -> Target:
        was_up = ping(self.state + ".sock")
        out = subprocess.run([str(PEERS / f"start-{self.name}"), self.state], check=True, stdout=subprocess.PIPE,
                             text=True).stdout.strip().splitlines()[-1]
        self.started = not was_up
        pid = int(Path(self.state + ".pid").read_text())
        self.target = Target(self.name, out, pid)
        return self.target

    chains: tuple[str, ...] = ()  # iptables chain prefixes it leaves behind when stopped
    others = ""  # pgrep -f pattern of processes that may still use those chains (another engine)
    links: tuple[str, ...] = ()  # bridges it makes and leaves

    def stop(self) -> None:
        if self.started:
            subprocess.run([str(PEERS / f"stop-{self.name}"), *self.stop_args, self.state], check=False)
            with open("/proc/self/mountinfo") as f:  # podman's storage keeps its overlay dir mounted
                mounts = [line.split()[4] for line in f]
            # dockerd also bind-mounts its data root onto itself
            for m in sorted((m for m in mounts if m == self.state or m.startswith(self.state + "/")), key=len,
                            reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
            others = subprocess.run(["pgrep", "-af", self.others], capture_output=True, text=True).stdout
            # an engine told to leave the firewall alone (dockerd --iptables=false) does not use those rules
            if not [ln for ln in others.splitlines() if "--iptables=false" not in ln]:
                drop_iptables(self.chains)
                for link in self.links:
                    subprocess.run(["ip", "link", "del", link], capture_output=True)


def drop_iptables(prefixes: tuple[str, ...]) -> None:
    """Remove the rules and chains a stopped reference engine left (dockerd and netavark never do), so a
    bench run leaves the host's firewall as it found it."""
    for table in ("filter", "nat"):
        rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
        for rule in rules:
            words = rule.split()
            if rule.startswith("-A ") and not words[1].startswith(prefixes) and (
                    any(w.startswith(prefixes) for w in words) or "docker0" in words):
                subprocess.run(["iptables", "-t", table, "-D", *shlex.split(rule)[1:]], capture_output=True)
        for rule in rules:
            if rule.startswith("-N ") and rule.split()[1].startswith(prefixes):
                subprocess.run(["iptables", "-t", table, "-F", rule.split()[1]], capture_output=True)
        for rule in rules:
            if rule.startswith("-N ") and rule.split()[1].startswith(prefixes):
                subprocess.run(["iptables", "-t", table, "-X", rule.split()[1]], capture_output=True)


class Dockerd(Peer):
    name = "dockerd"
    chains = ("DOCKER",)
    links = ("docker0",)
    others = "^(/usr/bin/)?dockerd( |$)"  # the host's own dockerd, if any, keeps its rules


class Podman(Peer):
    """podman 4.3's Docker-compatible service (netavark, conmon + runc), for a third opinion.

    stop() also removes its containers: they outlive the service under their conmon, and so do
    their netavark rules.
    """

    name = "podman"
    stop_args = ("--rm-all",)
    chains = ("NETAVARK",)
    others = "conmon .*libpod"  # podman containers of anyone else


class Dockyard(Managed):
    def __init__(self, root: str | None) -> None:
        super().__init__()
        self.root = root or tempfile.mkdtemp(prefix="dockyard-bench-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Target:
        sock = os.path.join(self.root, "dockyard.sock")
        tmpl = os.environ.get("BENCH_DOCKYARD_CMD", DOCKYARD_CMD)
        cmd = shlex.split(tmpl.format(venv=REPO / ".venv", sock=sock, root=self.root))
        log = open(os.path.join(self.root, "daemon.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO,
                                     start_new_session=True)
        self.started = True
        for _ in range(300):
            if ping(sock):
                break
            if self.proc.poll() is not None:
                tail = Path(self.root, "daemon.log").read_text(errors="replace").splitlines()[-10:]
                raise BenchError(f"dockyard daemon exited ({self.proc.returncode}):\n" + "\n".join(tail))
            time.sleep(0.1)
        else:
            raise BenchError(f"dockyard daemon did not answer on {sock}; see {self.root}/daemon.log")
        self.target = Target("dockyard", "unix://" + sock, self.proc.pid)
        return self.target

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # never rm -rf through a mount the daemon left behind
        with open("/proc/self/mountinfo") as f:
            mounted = any(line.split()[4].startswith(self.root + "/") for line in f)
        if mounted:
            print(f"bench: mounts left under {self.root}; not removing it", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
