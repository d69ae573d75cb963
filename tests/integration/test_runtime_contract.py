"""The ContainerRuntime seam (services/seams.py): what the real runtime (conmon + runc) does, the
fake that ContainerService's unit tests run on (tests/unit/fakes.py) must do too. One scenario,
both implementations: a fake that drifted from the real one fails here."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import Conflict
from dockyard.runtime import cgroups
from dockyard.runtime.monitor import Monitor
from dockyard.runtime.spec import SpecInput, build_spec
from dockyard.services.seams import ContainerRuntime
from tests.integration.test_runtime import RUNC, rootfs  # noqa: F401 - the busybox rootfs fixture
from tests.unit.fakes import FakeRuntime

pytestmark = pytest.mark.root
CGROUP = "/dockyard-contract/contract"  # a parent of its own: test_runtime.py cleans /dockyard-test


@pytest.fixture(params=["monitor", "fake"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContainerRuntime]:
    rt: ContainerRuntime = Monitor(tmp_path / "exec", {"runc": RUNC}) if request.param == "monitor" \
        else FakeRuntime(tmp_path / "exec" / "exits")
    yield rt
    asyncio.run(rt.delete("contract", force=True))
    assert cgroups.remove(CGROUP) == []
    for d in cgroups.dirs(CGROUP.rsplit("/", 1)[0]):
        d.rmdir()  # the parent runc made; fails loudly if a container cgroup leaked


def bundle(tmp: Path, root: Path, args: list[str]) -> Path:
    b = tmp / "bundle"
    b.mkdir()
    spec = build_spec(SpecInput(rootfs=str(root), args=args, cgroups_path=CGROUP))
    (b / "config.json").write_text(json.dumps(spec))
    return b


async def exited(rt: ContainerRuntime, cid: str) -> int:
    for _ in range(600):  # the exit file comes a moment after the process is gone
        code = rt.exit_code(cid)
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    raise AssertionError("no exit status reported")


def test_lifecycle(runtime: ContainerRuntime, tmp_path: Path, rootfs: Path) -> None:  # noqa: F811
    async def go() -> None:
        b = bundle(tmp_path, rootfs, ["sleep", "1000"])
        pid = await runtime.create("contract", b, log_path=str(b / "ctr.log"))
        assert pid > 0
        assert runtime.exit_code("contract") is None and runtime.conmon_alive("contract")
        await runtime.start("contract")
        await runtime.kill("contract", signal.SIGKILL)
        assert await exited(runtime, "contract") == 128 + signal.SIGKILL
        assert not runtime.oom_killed("contract")
        with pytest.raises(Conflict):
            await runtime.kill("contract", signal.SIGKILL)
        await runtime.delete("contract", force=True)
        assert runtime.exit_code("contract") is None and not runtime.conmon_alive("contract")  # gone with it
        await runtime.delete("contract", force=True)  # idempotent

    asyncio.run(go())
