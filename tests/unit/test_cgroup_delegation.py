"""Rootless limits (issue 17 item 5): what a rootless daemon may limit, decided from the cgroup tree.

These hosts run cgroup v1, so a delegated cgroup v2 cannot be shown end to end here: the decision and the
preparation run against a made-up cgroup v2 tree in a temporary directory (files as the kernel shows
them), and the refusal on this host's real tree is checked as it is."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import msgspec
import pytest

from dockyard.errors import InvalidParameter
from dockyard.runtime import cgroup_delegation as cd
from dockyard.services import container_config as cc
from dockyard.wire.container import HostConfig

OWN = "/user.slice/user-1000.slice/user@1000.service/app.slice/dockyard.service"


def _tree(tmp_path: Path, offered: str, owner: int | None = None) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    own = root / OWN.lstrip("/")
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(offered + "\n")
    (own / "cgroup.subtree_control").write_text("")
    (own / "cgroup.procs").write_text("101\n102\n103\n")
    if owner is not None:
        os.chown(own, owner, owner)
    return root


def test_cgroup_v1_refuses_every_limit_saying_why(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "unified").mkdir(parents=True)  # hybrid: a v2 mount without controllers, as on these hosts
    (root / "memory").mkdir()
    d = cd.decide(root, f"4:memory:/\n0::{OWN}\n", uid=0)
    assert d.parent == "" and d.controllers == frozenset()
    assert "cgroup v1" in d.refused and "hybrid" in d.refused and "Delegate=" in d.refused


def test_a_cgroup_not_the_users_is_not_delegated(tmp_path: Path) -> None:
    root = _tree(tmp_path, "cpuset cpu io memory pids", owner=65534)  # root's, seen from the userns
    d = cd.decide(root, f"0::{OWN}\n", uid=0)
    assert d.parent == "" and not d.controllers
    assert "not delegated" in d.refused and "systemd-run --user" in d.refused


def test_the_root_cgroup_is_never_delegated(tmp_path: Path) -> None:
    root = _tree(tmp_path, "cpuset cpu io memory pids")
    assert cd.decide(root, "0::/\n", uid=0).parent == ""


def test_fully_delegated_cgroup_gives_every_controller_and_prepares_it(tmp_path: Path) -> None:
    root = _tree(tmp_path, "cpuset cpu io memory pids")
    d = cd.decide(root, f"0::{OWN}\n", uid=0)
    assert d.parent == OWN
    assert d.controllers == frozenset({"cpu", "cpuset", "io", "memory", "pids"})
    assert d.refused == cd.NOT_FOR_USERS
    own = root / OWN.lstrip("/")
    assert cd.prepare(d, root) == d
    # the daemon's processes leave for the leaf (cgroup v2: no controllers handed down past processes);
    # a regular file keeps only the last write, the kernel's cgroup.procs takes each pid alone
    assert (own / cd.LEAF).is_dir() and (own / cd.LEAF / "cgroup.procs").read_text() == "103"
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +cpuset +io +memory +pids"


def test_partial_delegation_names_the_missing_controllers_and_the_fix(tmp_path: Path) -> None:
    root = _tree(tmp_path, "memory pids")  # systemd's default Delegate= before 252
    d = cd.decide(root, f"0::{OWN}\n", uid=0)
    assert d.controllers == frozenset({"memory", "pids"})
    assert "the cpu cpuset io controllers are not delegated" in d.refused
    assert "Delegate=cpu cpuset io memory pids" in d.refused
    cd.prepare(d, root)
    assert (root / OWN.lstrip("/") / "cgroup.subtree_control").read_text() == "+memory +pids"
    # create: limits of delegated controllers pass, the others are refused by flag
    hc = msgspec.convert({"Memory": 64 << 20, "PidsLimit": 10}, HostConfig)
    cc.refuse_limits(hc, d.refused, d.controllers)
    hc = msgspec.convert({"Memory": 64 << 20, "NanoCpus": 500_000_000, "DeviceCgroupRules": ["c 1:3 r"]},
                         HostConfig)
    with pytest.raises(InvalidParameter) as e:
        cc.refuse_limits(hc, d.refused, d.controllers)
    assert "--cpus, --device-cgroup-rule:" in e.value.message and "--memory" not in e.value.message


def test_a_failed_preparation_means_no_limits(tmp_path: Path) -> None:
    root = _tree(tmp_path, "memory pids")
    d = cd.decide(root, f"0::{OWN}\n", uid=0)
    (root / OWN.lstrip("/") / "cgroup.procs").unlink()  # e.g. a cgroup gone meanwhile
    after = cd.prepare(d, root)
    assert after.parent == "" and not after.controllers and "could not prepare" in after.refused


def test_prepare_moves_the_processes_on_the_kernels_cgroup2() -> None:
    # The hybrid hosts here mount a cgroup v2 hierarchy without controllers: enough to run the move into
    # the leaf against the kernel's own cgroup.procs (which takes one pid per write).
    unified = Path("/sys/fs/cgroup/unified")
    if not (unified / "cgroup.controllers").exists():
        pytest.skip("no controller-less cgroup2 mount at /sys/fs/cgroup/unified")
    own = unified / f"dyrl-deleg-{os.getpid()}"
    own.mkdir()
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        (own / "cgroup.procs").write_text(str(sleeper.pid))
        d = cd.decide(unified, f"0::/{own.name}\n", uid=0)
        assert d.parent == f"/{own.name}" and not d.controllers  # the user's, but nothing offered
        assert "the cpu cpuset io memory pids controllers are not delegated" in d.refused
        assert cd.prepare(d, unified) == d
        assert (own / "cgroup.procs").read_text().split() == []
        assert (own / cd.LEAF / "cgroup.procs").read_text().split() == [str(sleeper.pid)]
    finally:
        sleeper.kill()
        sleeper.wait()
        for d in (own / cd.LEAF, own):
            if d.is_dir():
                d.rmdir()
    assert not own.exists()


def test_this_cgroup_v1_host_refuses() -> None:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("a cgroup v2 host: the made-up trees above stand for it")
    d = cd.decide()
    assert "cgroup v1" in d.refused and d.parent == "" and not d.controllers
