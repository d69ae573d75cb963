"""Why dockyard/wire uses msgspec: decode a `docker run -p 8080:80 --memory 64m nginx` create body
with msgspec structs, pydantic 2 models or json.loads into dicts; prints the import's RSS growth and
the time per decode (median of 5 x 20000). Needs msgspec and pydantic (a scratch venv:
`python3 -m venv /tmp/w && /tmp/w/bin/pip install msgspec pydantic`), then
`for w in json msgspec pydantic; do /tmp/w/bin/python bench/wire_decode.py $w; done`.

`bench/wire_decode.py dockyard` times what the daemon does with that body (json.loads, then
wire.container.create_request; in a tree from before the wire types, api/validate's name folding
and type checks): `PYTHONPATH=. .venv/bin/python bench/wire_decode.py dockyard` in each tree."""

import json
import statistics
import sys
import time

BODY = json.dumps(
    {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "ExposedPorts": {"80/tcp": {}},
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": None,
        "Image": "nginx",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {},
        "HostConfig": {
            "Binds": None,
            "ContainerIDFile": "",
            "LogConfig": {"Type": "", "Config": {}},
            "NetworkMode": "default",
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "AutoRemove": False,
            "VolumeDriver": "",
            "VolumesFrom": None,
            "CapAdd": None,
            "CapDrop": None,
            "Dns": [],
            "DnsOptions": [],
            "DnsSearch": [],
            "ExtraHosts": None,
            "Privileged": False,
            "PublishAllPorts": False,
            "ReadonlyRootfs": False,
            "ShmSize": 0,
            "Memory": 67108864,
            "MemorySwap": 0,
            "NanoCpus": 0,
            "CpuShares": 0,
            "CpuPeriod": 0,
            "CpuQuota": 0,
            "CpusetCpus": "",
            "CpusetMems": "",
            "PidsLimit": None,
            "BlkioWeight": 0,
            "OomKillDisable": False,
            "Ulimits": None,
            "Init": None,
        },
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
).encode()


def rss_kib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])


def timeit(f):
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20000):
            f()
        runs.append((time.perf_counter() - t) / 20000 * 1e6)
    return statistics.median(runs)


which = sys.argv[1]
before = rss_kib()
if which == "msgspec":

    import msgspec

    class PortBinding(msgspec.Struct, rename="pascal", omit_defaults=True):
        host_ip: str = ""
        host_port: str = ""

    class RestartPolicy(msgspec.Struct, rename="pascal"):
        name: str = "no"
        maximum_retry_count: int = 0

    class HostConfig(msgspec.Struct, rename="pascal"):
        network_mode: str = "default"
        port_bindings: dict[str, list[PortBinding] | None] | None = None
        restart_policy: RestartPolicy | None = None
        auto_remove: bool = False
        privileged: bool = False
        memory: int = 0
        memory_swap: int = 0
        nano_cpus: int = 0
        cpu_shares: int = 0
        cpu_period: int = 0
        cpu_quota: int = 0
        cpuset_cpus: str = ""
        cpuset_mems: str = ""
        pids_limit: int | None = None
        blkio_weight: int = 0
        oom_kill_disable: bool | None = None
        shm_size: int = 0
        binds: list[str] | None = None
        cap_add: list[str] | None = None
        cap_drop: list[str] | None = None
        dns: list[str] | None = None
        readonly_rootfs: bool = False
        init: bool | None = None

    class ContainerConfig(msgspec.Struct, rename="pascal"):
        image: str = ""
        cmd: list[str] | None = None
        entrypoint: list[str] | None = None
        env: list[str] | None = None
        exposed_ports: dict[str, dict] | None = None
        tty: bool = False
        open_stdin: bool = False
        labels: dict[str, str] | None = None
        working_dir: str = ""
        user: str = ""
        host_config: HostConfig | None = None

    dec = msgspec.json.Decoder(ContainerConfig)
    after = rss_kib()
    def f():
        return dec.decode(BODY)
elif which == "pydantic":

    from pydantic import BaseModel, ConfigDict
    from pydantic.alias_generators import to_pascal

    class M(BaseModel):
        model_config = ConfigDict(alias_generator=to_pascal, extra="ignore")

    class PortBinding(M):
        host_ip: str = ""
        host_port: str = ""

    class RestartPolicy(M):
        name: str = "no"
        maximum_retry_count: int = 0

    class HostConfig(M):
        network_mode: str = "default"
        port_bindings: dict[str, list[PortBinding] | None] | None = None
        restart_policy: RestartPolicy | None = None
        auto_remove: bool = False
        privileged: bool = False
        memory: int = 0
        memory_swap: int = 0
        nano_cpus: int = 0
        cpu_shares: int = 0
        cpu_period: int = 0
        cpu_quota: int = 0
        cpuset_cpus: str = ""
        cpuset_mems: str = ""
        pids_limit: int | None = None
        blkio_weight: int = 0
        oom_kill_disable: bool | None = None
        shm_size: int = 0
        binds: list[str] | None = None
        cap_add: list[str] | None = None
        cap_drop: list[str] | None = None
        dns: list[str] | None = None
        readonly_rootfs: bool = False
        init: bool | None = None

    class ContainerConfig(M):
        image: str = ""
        cmd: list[str] | None = None
        entrypoint: list[str] | None = None
        env: list[str] | None = None
        exposed_ports: dict[str, dict] | None = None
        tty: bool = False
        open_stdin: bool = False
        labels: dict[str, str] | None = None
        working_dir: str = ""
        user: str = ""
        host_config: HostConfig | None = None

    after = rss_kib()
    def f():
        return ContainerConfig.model_validate_json(BODY)
elif which == "dockyard":
    try:
        from dockyard.wire.container import create_request
    except ImportError:  # before the wire types: names folded and types checked on the dicts
        from dockyard.api import validate

        def create_request(doc):
            doc = validate.create_body(doc)
            validate.check(doc, validate.CREATE, "ContainerCreateRequest")
            return doc
    after = rss_kib()
    def f():
        return create_request(json.loads(BODY))
else:
    after = rss_kib()
    def f():
        return json.loads(BODY)
x = f()
print(f"{which}: import+define RSS +{(after - before) / 1024:.1f} MiB, decode {timeit(f):.1f} us")
