"""runtime/procfs.py: capability masks and which mounts a process can see."""

from __future__ import annotations

import os
import subprocess

from dockyard.runtime.procfs import Mount, cap_names, children, visible


def test_cap_names_decode_the_mask_in_kernel_order() -> None:
    assert cap_names("0000000000000001") == ["CAP_CHOWN"]
    assert cap_names("00000000a80425fb")[:3] == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]
    assert cap_names("0") == []


def _m(mid: int, parent: int, target: str) -> Mount:
    return Mount(target, "tmpfs", "tmpfs", "rw", "", "/", mid, parent)


def test_visible_drops_over_mounted_entries_and_their_children() -> None:
    mounts = [_m(1, 0, "/"), _m(2, 1, "/sys/fs/cgroup"), _m(3, 2, "/sys/fs/cgroup/pids"),
              _m(4, 2, "/sys/fs/cgroup"), _m(5, 4, "/sys/fs/cgroup/pids"), _m(6, 1, "/data")]
    assert [m.mount_id for m in visible(mounts)] == [1, 4, 5, 6]


def test_children_lists_a_process_children_and_nothing_for_a_gone_one() -> None:
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert p.pid in children(os.getpid())
    finally:
        p.kill()
        p.wait()
    assert p.pid not in children(os.getpid())
    assert children(2 ** 22 + 1) == []  # above pid_max's ceiling: no such process
