"""docker-py's own integration suite against a throw-away Dockyard daemon, judged by the real dockerd's
results (../shared/conformance/docker-py; see its README and the README's Tests section).

Starts a registry (the stand-in images' Docker Hub mirror) and a daemon of this checkout, each on its
own temporary dirs and a free port, imports the stand-in images, runs the suite, then compares with
baseline-dockerd.txt: every test that passes on dockerd must pass here, except the ones listed in
tests/conformance/docker-py-gaps.txt (each with the reason; the list only shrinks). Everything it made
is removed at the end (containers, networks, the daemon's bridge, nft table and mounts, the registry).

Exit status: 0 when no baseline-passing test failed (gaps aside), 1 otherwise, 2 when it could not run.
With $DPY_READY_FILE set, that file is created once the daemon is up (scripts/test starts pytest
then, so the two daemons never race for the same default bridge subnet).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SHARED, Daemon  # noqa: E402 - the tests' daemon helper, cleanup included

SUITE = SHARED / "conformance" / "docker-py"
GAPS = ROOT / "tests" / "conformance" / "docker-py-gaps.txt"
CACHE = Path(os.environ.get("CONFORMANCE_CACHE", "/var/cache/dockyard/dockerpy-conformance"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def baseline_passed() -> list[str]:
    out = []
    for line in (SUITE / "baseline-dockerd.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "passed":
            out.append(parts[1])
    return out


def known_gaps() -> dict[str, str]:
    """test id -> why it still fails here."""
    gaps = {}
    for line in GAPS.read_text().splitlines() if GAPS.exists() else []:
        test, _, why = line.partition("#")
        if test.strip():
            gaps[test.strip()] = why.strip()
    return gaps


def results(junit: Path) -> dict[str, tuple[str, str]]:
    """test id (module.py::Class::test) -> (passed|failed|skipped, first line of the failure)."""
    out: dict[str, tuple[str, str]] = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        *_, module, cls = tc.get("classname", "").split(".")
        kids = {c.tag: c for c in tc}
        bad = kids.get("failure") if "failure" in kids else kids.get("error")
        state = "failed" if bad is not None else "skipped" if "skipped" in kids else "passed"
        why = ((bad.get("message") or "") if bad is not None else "").splitlines()[:1]
        # 600: an APIError's URL alone takes ~150, and the daemon's reason comes after it
        out[f"{module}.py::{cls}::{tc.get('name')}"] = (state, why[0][:600] if why else "")
    return out


def to_retry(junit: Path) -> list[str]:
    """Baseline-passing tests that failed here and are no known gap."""
    got, gaps = results(junit), known_gaps()
    return [t for t in baseline_passed() if got.get(t, ("failed", ""))[0] != "passed" and t not in gaps]


def judge(junit: Path, retried: dict[str, tuple[str, str, int]] | None = None) -> int:
    """retried: test -> (state, first line of the failure, which run of it) for the tests run again."""
    got = results(junit)
    for test, (state, why, run) in (retried or {}).items():
        if state == "passed":
            print(f"  passed on its run {run} (flaky here): {test}; first: {got[test][1] if test in got else ''}")
        got[test] = (state, why)
    gaps = known_gaps()
    broken, still_gaps, closed = [], [], []
    for test in baseline_passed():
        state, why = got.get(test, ("failed", "did not run"))
        if state == "passed":
            if test in gaps:
                closed.append(test)
        elif test in gaps:
            still_gaps.append(test)
        else:
            broken.append((test, state, why))
    counts = {s: sum(1 for v in got.values() if v[0] == s) for s in ("passed", "failed", "skipped")}
    print(f"\ndocker-py on Dockyard: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped; "
          f"baseline (dockerd) passes {len(baseline_passed())}")
    for test in still_gaps:
        print(f"  known gap: {test}  # {gaps[test]}")
    for test in closed:
        print(f"  now passes, drop it from {GAPS.relative_to(ROOT)}: {test}")
    for test, state, why in broken:
        print(f"  FAILED (passes on dockerd): {test}: {why or state}")
    return 1 if broken else 0


def print_warnings(log: Path, limit: int = 60) -> None:
    """The daemon log's last `limit` WARNING and ERROR lines (a failed start logs its whole reason there)."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if " WARNING " in line or " ERROR " in line]
    except OSError:
        return
    if lines:
        print("daemon log, warnings and errors:\n  " + "\n  ".join(lines[-limit:]))


def main() -> int:
    # scripts/test's timeout or ^C: clean up (the finally below) before going
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (SUITE / "run").exists():
        print(f"docker-py conformance: no {SUITE}; not run")
        return 0
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="dy-dpy-", dir="/tmp"))
    port = free_port()
    reg = base / "registry"
    daemon = Daemon(base / "daemon")
    registry_up = False
    try:
        r = subprocess.run([str(SHARED / "images" / "serve-registry"), "--port", str(port), "--dir", str(reg),
                            "--no-build", "--no-push"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            print(f"docker-py conformance: the registry did not start: {r.stderr.strip()[-600:]}")
            return 2
        registry_up = True
        daemon.base.mkdir()
        # Its own default bridge subnet, and the host's cgroup mount left as found (pytest's daemons
        # tune it and put it back themselves).
        daemon.start("--registry-mirror", f"http://127.0.0.1:{port}", "--insecure-registry", f"127.0.0.1:{port}",
                     "--bip", "172.30.0.1/16", "--cgroup-favordynmods", "false")
        if os.environ.get("DPY_READY_FILE"):
            Path(os.environ["DPY_READY_FILE"]).touch()
        env = {**os.environ, "DOCKER_HOST": daemon.host, "CONFORMANCE_CACHE": str(CACHE)}
        env.pop("DOCKER_CONTEXT", None)
        env["DOCKER_CONFIG"] = str(base / "docker-config")
        CACHE.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([str(SUITE / "mkimages"), f"127.0.0.1:{port}"], env=env, capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            print(f"docker-py conformance: mkimages failed: {(r.stdout + r.stderr).strip()[-1200:]}")
            return 2
        junit = base / "junit.xml"
        r = subprocess.run([str(SUITE / "run"), "-q"], env={**env, "JUNIT": str(junit)},
                           capture_output=True, text=True, timeout=3000)
        # The runner's per-module lines ("  api_build_test  22 0 0"); pytest's own indented lines
        # (warnings, blank "  " lines) are not among them.
        tail = [line for line in r.stdout.splitlines()
                if line.startswith("  ") and line.split() and line.split()[0].endswith("_test")]
        print("per module (passed/failed/skipped):\n" + "\n".join(tail))
        if not junit.exists():
            print(f"docker-py conformance: the suite did not run:\n{(r.stdout + r.stderr).strip()[-2000:]}")
            return 2
        retried: dict[str, tuple[str, str, int]] = {}
        again = to_retry(junit)
        # Up to twice more, on their own (images back first: the suite prunes them). Four api_build tests
        # read a container's logs right after `start`, with no wait: a race with the container's `ls` on
        # any engine, lost more often the sooner `start` answers (~1 in 5 at load 9, session 8). A test
        # that fails three runs in a row is a failure.
        for attempt in (2, 3):
            if not again:
                break
            subprocess.run([str(SUITE / "mkimages"), f"127.0.0.1:{port}"], env=env, capture_output=True, timeout=900)
            junit2 = base / f"junit-retry{attempt}.xml"
            modules = " ".join(sorted({t.split("::")[0] for t in again}))
            names = " or ".join(sorted({t.rsplit("::", 1)[1] for t in again}))
            subprocess.run([str(SUITE / "run"), "-q", "-k", names], capture_output=True, text=True, timeout=1800,
                           env={**env, "JUNIT": str(junit2), "ONLY": modules})
            got = results(junit2) if junit2.exists() else {}
            for t in again:
                state, why = got.get(t, ("failed", "did not run"))
                retried[t] = (state, why, attempt)
            again = [t for t in again if retried[t][0] != "passed"]
        rc = judge(junit, retried)
        if retried:  # the daemon's side of those failures (its log goes with the daemon's dirs)
            print_warnings(daemon.log)
        print(f"docker-py stage: {time.monotonic() - started:.0f} s")
        return rc
    finally:
        if daemon.proc is not None:
            daemon.teardown()
        else:
            shutil.rmtree(daemon.base, ignore_errors=True)
        if registry_up:
            subprocess.run([str(SHARED / "images" / "stop-registry"), "--port", str(port), "--dir", str(reg)],
                           capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
