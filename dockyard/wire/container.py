"""Container wire types. So far: the resource fields of HostConfig (moby's container.Resources),
used from the stored HostConfig down to the runtime's spec (runtime/spec.Resources)."""

from __future__ import annotations

from typing import Any

import msgspec


class Resources(msgspec.Struct, rename="pascal", kw_only=True):
    """HostConfig's resource limits, as the API spells them (`Memory`, `NanoCpus`, ...); a null or
    a missing field is Docker's zero (no limit)."""

    memory: int | None = 0
    memory_swap: int | None = 0
    memory_reservation: int | None = 0
    nano_cpus: int | None = 0
    cpu_shares: int | None = 0
    cpu_period: int | None = 0
    cpu_quota: int | None = 0
    cpuset_cpus: str | None = ""
    cpuset_mems: str | None = ""
    pids_limit: int | None = None
    blkio_weight: int | None = 0
    oom_kill_disable: bool | None = None

    @classmethod
    def of(cls, host_config: dict[str, Any]) -> Resources:
        """The resource fields of a HostConfig document (other fields are ignored); InvalidParameter-worthy
        type errors raise msgspec.ValidationError, which the caller words."""
        return msgspec.convert(host_config, cls, strict=False)
