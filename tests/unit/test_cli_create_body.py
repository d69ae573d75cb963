"""The CLI's create body (cli/opts.py) is plain JSON laid out as the daemon's wire structs encode one,
without importing them (issue 20: msgspec and the structs are ~12 ms of `run`'s start-up). Here the
layout is checked against the structs: their fields, order and defaults, and for each flag the body
is what encoding the same request as a CreateRequest gives, byte for byte."""

from __future__ import annotations

import argparse

import msgspec
import pytest

from dockyard.cli import opts
from dockyard.wire.container import (
    ENCODER,
    CreateRequest,
    EndpointIPAMConfig,
    EndpointSettings,
    HealthConfig,
    HostConfig,
)


def fields(struct: type[msgspec.Struct]) -> tuple[tuple[str, object], ...]:
    return tuple((f.encode_name, f.default) for f in msgspec.structs.fields(struct))


def test_tables_are_the_structs_fields() -> None:
    assert opts.CONFIG == fields(CreateRequest)
    # _NetworkingConfig: the store's, never in a request
    assert opts.HOST_CONFIG == tuple(f for f in fields(HostConfig) if f[0] != "_NetworkingConfig")
    assert opts.HEALTH_CONFIG == fields(HealthConfig)
    assert opts.ENDPOINT == fields(EndpointSettings)[:len(opts.ENDPOINT)]
    assert opts.ENDPOINT_IPAM == fields(EndpointIPAMConfig)


ARGVS = [
    ["busybox"],
    ["--rm", "busybox", "true"],
    ["-d", "--name", "n", "busybox", "sleep", "1"],
    ["-it", "busybox", "sh"],
    ["-a", "stdout", "-a", "STDERR", "busybox"],
    ["--rm", "-e", "A=1", "-e", "B=é", "-p", "127.0.0.1:8080:80/udp", "-p", "8000-8001:80-81", "-p", "53",
     "--expose", "90-91/udp", "-v", "/h:/c:ro", "-v", "/anon", "-m", "1g", "--memory-swap", "-1",
     "--memory-reservation", "512m", "--shm-size", "64m", "--cpus", "1.5", "-c", "512", "--cpuset-cpus", "0",
     "--cpuset-mems", "0", "--pids-limit", "10", "--restart", "no", "--entrypoint", "", "--name", "n",
     "--health-cmd", "true", "--health-interval", "5s", "--health-timeout", "1s", "--health-retries", "3",
     "--health-start-period", "2s", "--health-start-interval", "1s", "--network", "net1",
     "--network-alias", "al", "--ip", "10.0.0.2", "busybox", "ls", "-l"],
    ["--entrypoint", "/bin/sh", "-w", "/tmp", "-u", "1:1", "-h", "host", "--domainname", "d", "--stop-signal",
     "SIGUSR1", "--stop-timeout", "3", "--mac-address", "02:42:ac:11:00:02", "-l", "a=b", "-l", "c",
     "--init", "--runtime", "runc", "-P", "--privileged", "--read-only", "--cap-add", "NET_ADMIN",
     "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--dns", "1.1.1.1", "--dns-search", "x",
     "--dns-option", "ndots:1", "--add-host", "h:1.2.3.4", "--volumes-from", "o", "--link", "o:a",
     "--group-add", "10", "--device", "/dev/null:/dev/n:r", "--device", "/dev/zero",
     "--ulimit", "nofile=10:20", "--ulimit", "nproc=5", "--ipc", "host", "--pid", "host", "--uts", "host",
     "--userns", "host", "--cgroupns", "private", "--cgroup-parent", "p", "--isolation", "default",
     "--oom-kill-disable", "--sysctl", "net.ipv4.ip_forward=1", "--log-driver", "json-file",
     "--log-opt", "max-size=1m", "--tmpfs", "/t:size=1m", "--tmpfs", "/u", "busybox"],
    ["--restart", "on-failure:3", "--no-healthcheck", "--network", "n", "--ip6", "fd00::2", "--log-opt", "a=b",
     "busybox"],
    ["--mount", "type=bind,source=/a,target=/b,readonly,bind-propagation=rshared",
     "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777",
     "--mount", "type=volume,source=v,target=/v,volume-driver=local,volume-nocopy", "busybox"],
    ["--health-retries", "0", "busybox"],
]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(conflict_handler="resolve")  # -h is --hostname, as in docker
    p.add_argument("--rm", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    opts.add_container_flags(p)
    return p.parse_args(argv)


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a)[:40])
def test_body_is_what_the_structs_encode(argv: list[str]) -> None:
    body = opts.encode(opts.build_create_body(parse(argv))[0])
    # Decoded into the structs and encoded again: a field misnamed, out of order, missing from the
    # Config or at its default in the HostConfig would come back different.
    assert ENCODER(msgspec.json.decode(body, type=CreateRequest)) == body


def test_restart_conflicts_with_rm() -> None:
    with pytest.raises(opts.OptError, match="Conflicting options: --restart and --rm"):
        opts.build_create_body(parse(["--rm", "--restart", "always", "busybox"]))
