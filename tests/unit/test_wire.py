"""Wire types (dockyard/wire): HostConfig's resources decoded as typed structs, down to the runtime's."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.errors import InvalidParameter
from dockyard.services.containers import resources_of
from dockyard.wire.container import Resources


def test_decodes_the_apis_spelling_and_ignores_the_rest() -> None:
    r = Resources.of({"Memory": 67108864, "NanoCpus": 1_500_000_000, "CpusetCpus": "0", "PidsLimit": None,
                      "Binds": ["/a:/b"], "NetworkMode": "default"})
    assert (r.memory, r.nano_cpus, r.cpuset_cpus, r.pids_limit, r.cpu_quota) == (67108864, 1_500_000_000, "0", None, 0)


def test_a_bad_type_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"Memory"):
        Resources.of({"Memory": "lots"})
    with pytest.raises(InvalidParameter, match="invalid resources"):
        resources_of({"Memory": [1]})


def test_down_to_the_runtime() -> None:
    rt = resources_of({"Memory": 64 << 20, "MemorySwap": -1, "NanoCpus": 500_000_000, "PidsLimit": 10,
                       "OomKillDisable": None, "CpuShares": None})
    assert (rt.memory, rt.memory_swap, rt.cpu_period, rt.cpu_quota, rt.pids_limit, rt.cpu_shares) == \
        (64 << 20, -1, 100_000, 50_000, 10, 0)
    assert resources_of({}) == resources_of({"Memory": None, "CpuQuota": None})  # null is Docker's zero
