"""build_spec: Docker's defaults and the SpecInput knobs (pure, no kernel)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from dockyard.errors import InvalidParameter
from dockyard.runtime import seccomp
from dockyard.runtime.spec import DEFAULT_CAPS, INIT_PATH, Resources, SpecInput, build_spec
from dockyard.runtime.users import resolve_in_root, resolve_user
from dockyard.wire.container import Ulimit


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nwheel:x:10:root\napp:x:1000:\nextra:x:2000:app,root\n")
    return tmp_path / "rootfs"


def spec(rootfs: Path, **kw: object) -> dict:
    return build_spec(SpecInput(rootfs=str(rootfs), args=["sh"], **kw))  # type: ignore[arg-type]


def test_defaults(rootfs: Path) -> None:
    s = spec(rootfs, hostname="abc")
    caps = s["process"]["capabilities"]
    assert set(caps["bounding"]) == set(DEFAULT_CAPS) == set(caps["effective"])
    assert "CAP_SYS_ADMIN" not in caps["bounding"]
    assert "/proc/kcore" in s["linux"]["maskedPaths"] and "/proc/sys" in s["linux"]["readonlyPaths"]
    dests = [m["destination"] for m in s["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert d in dests
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert "size=67108864" in shm["options"]
    assert {"type": "network"} in s["linux"]["namespaces"]
    assert s["process"]["env"][0].startswith("PATH=") and "HOSTNAME=abc" in s["process"]["env"]
    assert s["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    nofile = next(r for r in s["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert nofile["soft"] == nofile["hard"] <= hard


def test_default_seccomp(rootfs: Path) -> None:
    sec = spec(rootfs)["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO" and sec["defaultErrnoRet"] == 1
    allowed = {n for r in sec["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for n in r["names"]}
    assert {"read", "execve", "clone3"} - allowed == {"clone3"}
    for blocked in ("mount", "unshare", "kexec_load", "init_module", "keyctl", "bpf", "setns"):
        assert blocked not in allowed
    clone = [r for r in sec["syscalls"] if r["names"] == ["clone"]]
    assert clone and clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    # CAP_SYS_ADMIN opens mount/unshare like Docker's profile does.
    admin = seccomp.default_profile(list(DEFAULT_CAPS) + ["CAP_SYS_ADMIN"], machine="x86_64")
    assert any("mount" in r["names"] for r in admin["syscalls"])
    assert admin["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert seccomp.default_profile([], machine="aarch64")["architectures"][0] == "SCMP_ARCH_AARCH64"


def test_security_opts(rootfs: Path, tmp_path: Path) -> None:
    s = spec(rootfs, security_opt=["seccomp=unconfined", "no-new-privileges"])
    assert "seccomp" not in s["linux"] and s["process"]["noNewPrivileges"] is True
    # the profile's content, as the docker CLI sends it after reading the file
    prof = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'
    s = spec(rootfs, security_opt=[f"seccomp={prof}"])
    assert s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    # never a path on the daemon's host (dockerd refuses it too)
    (tmp_path / "p.json").write_text(prof)
    with pytest.raises(InvalidParameter):
        spec(rootfs, security_opt=[f"seccomp={tmp_path / 'p.json'}"])
    with pytest.raises(InvalidParameter):
        spec(rootfs, security_opt=["bogus=1"])


def test_caps_and_privileged(rootfs: Path) -> None:
    caps = spec(rootfs, cap_add=["sys_admin"], cap_drop=["CAP_NET_RAW"])["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_RAW" not in caps
    assert spec(rootfs, cap_drop=["ALL"])["process"]["capabilities"]["bounding"] == []
    with pytest.raises(InvalidParameter):
        spec(rootfs, cap_add=["NOPE"])
    p = spec(rootfs, privileged=True)
    assert "CAP_SYS_ADMIN" in p["process"]["capabilities"]["bounding"]
    assert "seccomp" not in p["linux"] and "maskedPaths" not in p["linux"]
    assert p["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" for d in p["linux"]["devices"])


def test_init_mounts_netns_resources(rootfs: Path) -> None:
    s = spec(rootfs, init=True, netns="/run/x/netns/abc", hosts_path="/tmp/h", resolv_conf_path="/tmp/r",
             resources=Resources(memory=1 << 26, cpu_shares=512, pids_limit=10), cgroups_path="/dockyard/x",
             mounts=[{"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind"]}],
             sysctls={"net.ipv4.ip_forward": "1"})
    assert s["process"]["args"] == [INIT_PATH, "--", "sh"]
    init = next(m for m in s["mounts"] if m["destination"] == INIT_PATH)
    assert init["source"] == "/usr/bin/catatonit" and "ro" in init["options"]
    assert {"type": "network", "path": "/run/x/netns/abc"} in s["linux"]["namespaces"]
    dests = {m["destination"]: m for m in s["mounts"]}
    assert dests["/etc/hosts"]["source"] == "/tmp/h" and "/data" in dests
    r = s["linux"]["resources"]
    assert r["memory"] == {"limit": 1 << 26, "swap": 2 << 26} and r["cpu"] == {"shares": 512}
    assert r["pids"] == {"limit": 10} and s["linux"]["cgroupsPath"] == "/dockyard/x"
    host = spec(rootfs, netns="host")
    assert all(n["type"] not in ("network", "uts") for n in host["linux"]["namespaces"])


def test_ulimits_capped(rootfs: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    s = spec(rootfs, ulimits=[Ulimit(name="nofile", soft=10, hard=hard + 1000)])
    nofile = next(r for r in s["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE")
    assert nofile == {"type": "RLIMIT_NOFILE", "soft": 10, "hard": hard}
    with pytest.raises(InvalidParameter):
        spec(rootfs, ulimits=[Ulimit(name="bogus", soft=1, hard=1)])


def test_user_resolution(rootfs: Path) -> None:
    assert spec(rootfs)["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [10, 2000]}
    assert spec(rootfs, user="app")["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    assert spec(rootfs, user="app:wheel")["process"]["user"] == {"uid": 1000, "gid": 10}
    assert spec(rootfs, user="4242:4343")["process"]["user"] == {"uid": 4242, "gid": 4343}
    assert "HOME=/home/app" in spec(rootfs, user="1000")["process"]["env"]
    with pytest.raises(InvalidParameter, match="unable to find user nobody"):
        spec(rootfs, user="nobody")
    with pytest.raises(InvalidParameter, match="unable to find group nogroup"):
        spec(rootfs, user="app:nogroup")


def test_user_lookup_stays_in_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "host-passwd"
    outside.write_text("evil:x:666:666::/:/bin/sh\n")
    os.symlink(str(outside), root / "etc" / "passwd")  # absolute: must resolve inside the rootfs
    os.symlink("../../../../../../host-passwd", root / "etc" / "group")
    assert resolve_in_root(root, "/etc/passwd") == root / str(outside).lstrip("/")
    assert resolve_in_root(root, "/etc/group") == root / "host-passwd"
    with pytest.raises(InvalidParameter):
        resolve_user(root, "evil")
    assert resolve_user(root, "0").uid == 0
