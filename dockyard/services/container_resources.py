"""What runs in a container and what it uses: `top`, `stats`, and `update` of its limits."""

from __future__ import annotations

import asyncio
import functools
import subprocess
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, InvalidParameter
from dockyard.services.containers import ContainerService

if TYPE_CHECKING:
    from dockyard.services.stats import Subject
    from dockyard.wire.container import UpdateConfig


class ContainerResources:
    def __init__(self, containers: ContainerService) -> None:
        self.cs = containers
        self.runtime = containers.runtime

    async def top(self, cid: str, ps_args: str) -> dict[str, Any]:
        c = self.cs.get(cid)
        if c.state == "restarting":
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        from dockyard.runtime import cgroups

        path = self.cs.cgroup_path(c.id)  # "": rootless without a cgroup of its own
        pids = set(await asyncio.to_thread(cgroups.pids, path)) if path else set()
        args = ["ps"] + ps_args.split()
        proc = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InvalidParameter(f"ps: {proc.stderr.strip()}")
        lines = proc.stdout.splitlines()
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError:
            raise InvalidParameter("Couldn't find PID field in ps output") from None
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    async def stats(self, ref: str, stream: bool, one_shot: bool = False) -> AsyncIterator[dict[str, Any]]:
        """The container's stats documents; NotFound now, before the caller answers 200."""
        return self._stats(_stats_module().Subject(*self.cs.brief(ref)), stream, one_shot)

    async def _stats(self, c: Subject, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        container_stats = _stats_module().container_stats
        prev: dict[str, Any] | None = None
        # stream=false without one-shot primes precpu_stats with an earlier sample, so the CPU % has a
        # span to be computed over. dockerd's is its collector's tick, a second before; ours is taken
        # _PRIME_S before: CPU % is a ratio of the two deltas (cpuacct's ns over /proc/stat's 10 ms ticks
        # of all CPUs), so a fifth of a second still measures it to ~2.5 % here, and `stats --no-stream`
        # of all containers answers in a fraction of dockerd's floor of one to two seconds.
        prime = not stream and not one_shot and c.has_process
        path = self.cs.cgroup_path(c.id)
        first = True
        while True:
            if not first:  # its state and pid now (a sample needs no more of the row)
                now = self.cs.state_of(c.id)
                if now is None:
                    return
                c = c._replace(state=now[0], pid=now[1])
            first = False
            # Inline, not in a worker thread: a sample is ~15 reads of cgroupfs/procfs files, which never
            # block on a disk, and the thread hand-off cost more CPU than the reads (cProfile: ~0.4 ms
            # in the queue's put alone per sample under load).
            cur = container_stats(c, prev, path, cpu_only=prime)
            if prime:
                prime = False
            else:
                yield cur
                if not stream:
                    return
            await asyncio.sleep(_PRIME_S if prev is None and not stream else 1.0)
            prev = cur

    async def update(self, cid: str, upd: UpdateConfig) -> dict[str, Any]:
        """dockerd's update: each limit given non-zero (PidsLimit: given) replaces the container's."""
        import msgspec

        from dockyard.services import container_config as cc

        c = self.cs.get(cid)
        changes = {f: getattr(upd, f) for f in _UPDATED if getattr(upd, f)}
        if upd.pids_limit is not None:
            changes["pids_limit"] = upd.pids_limit
        if upd.restart_policy is not None and upd.restart_policy.name:
            changes["restart_policy"] = upd.restart_policy
        hc = cc.validate_host_config(msgspec.structs.replace(c.host_config, **changes))
        if self.cs.limits_refused is not None:
            cc.refuse_limits(upd, self.cs.limits_refused, self.cs.limit_controllers)
        if c.has_process:
            from dockyard.services.containers import resources_of

            await self.runtime.update(c.id, resources_of(hc))
        self.cs.save(c.id, host_config=hc)
        self.cs.emit(c, "update")
        return {"Warnings": []}


_PRIME_S = 0.2


@functools.cache
def _stats_module() -> Any:
    """dockyard.services.stats, imported at the first stats request (its procfs brings msgspec: not at daemon
    start, for the idle RSS), and once: a `from ... import` statement costs 5-8 µs each time it runs (Python
    3.11), and `docker stats` of 500 containers ran two per answer."""
    from dockyard.services import stats

    return stats

_UPDATED = ("memory", "memory_swap", "memory_reservation", "nano_cpus", "cpu_shares", "cpu_period", "cpu_quota",
            "cpuset_cpus", "cpuset_mems", "blkio_weight", "kernel_memory")
