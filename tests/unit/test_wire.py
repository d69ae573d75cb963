"""Wire types (dockyard/wire): the create and update bodies decoded once, Go's way (names matched
case-insensitively, unknown fields ignored, null as the zero value, a wrong type refused in Go's words),
old stored records still loading, and HostConfig's resources down to the runtime's."""

from __future__ import annotations

import json

import pytest

from dockyard.errors import InvalidParameter
from dockyard.services.containers import resources_of
from dockyard.wire.container import (
    Config,
    HostConfig,
    PortBinding,
    Resources,
    convert,
    create_request,
    exec_request,
    exec_start_request,
    stored,
    update_request,
)


def test_decodes_the_apis_spelling_and_ignores_the_rest() -> None:
    r = convert({"Memory": 67108864, "NanoCpus": 1_500_000_000, "CpusetCpus": "0", "PidsLimit": None,
                 "Binds": ["/a:/b"], "NetworkMode": "default"}, Resources)
    assert (r.memory, r.nano_cpus, r.cpuset_cpus, r.pids_limit, r.cpu_quota) == (67108864, 1_500_000_000, "0", None, 0)


def test_names_match_as_go_matches_them() -> None:
    """docker-py sends CPURealtimePeriod; Go folds case, and an exact spelling wins over a folded one."""
    req = create_request({"image": "busybox", "CMD": ["true"], "hostconfig": {
        "CPURealtimePeriod": 1000, "memory": 1, "Memory": 67108864, "portbindings": {
            "80/tcp": [{"hostport": "8080"}]}, "NoSuchField": {"x": 1}}})
    assert (req.image, req.cmd) == ("busybox", ["true"])
    hc = req.host_config
    assert hc is not None
    assert (hc.cpu_realtime_period, hc.memory) == (1000, 67108864)
    assert hc.port_bindings == {"80/tcp": [PortBinding(host_port="8080")]}
    exact_first = create_request({"HostConfig": {"Memory": 67108864, "MEMORY": 1}}).host_config
    assert exact_first is not None and exact_first.memory == 67108864


def test_null_is_the_zero_value() -> None:
    req = create_request({"Image": None, "Tty": None, "Env": None, "HostConfig": {
        "Memory": None, "Privileged": None, "RestartPolicy": None, "PidsLimit": None, "LogConfig": None}})
    assert (req.image, req.tty, req.env) == ("", False, None)
    assert req.host_config == HostConfig()
    assert create_request({"HostConfig": None}).host_config is None
    assert create_request({"Cmd": "echo hi there"}).cmd == ["echo", "hi", "there"]  # the shell form, split


@pytest.mark.parametrize(("body", "message"), [
    ({"HostConfig": {"Memory": 2**70}},
     "json: cannot unmarshal number 1180591620717411303424 into Go struct field HostConfig.Memory of type int64"),
    ({"HostConfig": {"Memory": 1.5}}, "json: cannot unmarshal number 1.5 into Go struct field HostConfig.Memory of type int64"),
    ({"HostConfig": {"Memory": "lots"}}, "json: cannot unmarshal string into Go struct field HostConfig.Memory of type int64"),
    ({"HostConfig": {"CapAdd": "NET_ADMIN"}},
     "json: cannot unmarshal string into Go struct field HostConfig.CapAdd of type []string"),
    ({"Env": "A=1"}, "json: cannot unmarshal string into Go struct field ContainerCreateRequest.Env of type []string"),
    ({"Tty": "yes"}, "json: cannot unmarshal string into Go struct field ContainerCreateRequest.Tty of type bool"),
    ({"HostConfig": []}, "json: cannot unmarshal array into Go struct field ContainerCreateRequest.HostConfig of type HostConfig"),
    ({"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": "x"}]}},
     "json: cannot unmarshal string into Go struct field Ulimit.Soft of type int64"),
])
def test_a_wrong_type_is_refused_in_gos_words(body: dict, message: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        create_request(body)
    assert e.value.message == message


def test_update_body() -> None:
    upd = update_request({"memory": 67108864, "RestartPolicy": {"Name": "always"}, "Binds": ["x"]})
    assert (upd.memory, upd.restart_policy and upd.restart_policy.name) == (67108864, "always")
    with pytest.raises(InvalidParameter, match="UpdateConfig.CpuShares of type int64"):
        update_request({"CpuShares": 2**63})


def test_records_stored_by_older_versions_load() -> None:
    """What json.dumps of the old dicts left in the containers table: nulls, the request's unknown
    fields, _NetworkingConfig, and a value of a wrong type (dropped, not fatal)."""
    old_hc = json.dumps({"Binds": None, "Memory": None, "MemorySwappiness": None, "PidsLimit": None,
                         "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}, "LogConfig": {"Type": "json-file",
                         "Config": {}}, "NetworkMode": "default", "Runtime": "runc", "ShmSize": 67108864,
                         "KernelMemory": 0, "SomethingOld": [1], "CpuShares": "x",
                         "_NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": ["a"]}}}})
    hc = stored(old_hc, HostConfig)
    assert (hc.runtime, hc.shm_size, hc.memory, hc.cpu_shares, hc.network_mode) == ("runc", 67108864, 0, 0, "default")
    assert hc.networking is not None and hc.networking.endpoints_config is not None
    assert hc.networking.endpoints_config["n1"].aliases == ["a"]
    cfg = stored(json.dumps({"Hostname": "abc", "Env": None, "Cmd": ["sh"], "Tty": None, "Labels": {}}), Config)
    assert (cfg.hostname, cfg.cmd, cfg.tty, cfg.labels) == ("abc", ["sh"], False, {})
    # and what the store writes now reads back the same
    assert stored(hc.doc() and json.dumps(hc.doc()), HostConfig) == hc


def test_internal_fields_are_not_read_from_a_request() -> None:
    req = create_request({"HostConfig": {"_NetworkingConfig": {"EndpointsConfig": {"x": {}}}}})
    assert req.host_config is not None and req.host_config.networking is None


def test_down_to_the_runtime() -> None:
    rt = resources_of(convert({"Memory": 64 << 20, "MemorySwap": -1, "NanoCpus": 500_000_000, "PidsLimit": 10,
                               "OomKillDisable": None, "CpuShares": None}, Resources))
    assert (rt.memory, rt.memory_swap, rt.cpu_period, rt.cpu_quota, rt.pids_limit, rt.cpu_shares) == \
        (64 << 20, -1, 100_000, 50_000, 10, 0)
    assert resources_of(Resources()) == resources_of(convert({"Memory": None, "CpuQuota": None}, Resources))


def test_exec_bodies() -> None:
    """docker-py sends the exec's `detachKeys` so; Cmd is a list of strings (no shell form), as Go's."""
    cfg = exec_request({"Cmd": ["ls", "-l"], "detachKeys": "ctrl-a,x", "AttachStdout": True, "Env": None,
                        "User": None, "Bogus": 1})
    assert (cfg.cmd, cfg.detach_keys, cfg.attach_stdout, cfg.env, cfg.user) == (["ls", "-l"], "ctrl-a,x", True, None, "")
    with pytest.raises(InvalidParameter) as e:
        exec_request({"Cmd": "ls"})
    assert e.value.message == "json: cannot unmarshal string into Go struct field ExecConfig.Cmd of type []string"
    start = exec_start_request({"detach": True, "TTY": True})
    assert (start.detach, start.tty) == (True, True)
