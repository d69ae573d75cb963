"""Compose model: interpolation, .env, schema errors, normalisation, merging, extends, profiles, graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.compose.convert import config_hash, create_body, encode
from dockyard.compose.errors import ComposeError
from dockyard.compose.interpolate import Interpolator, parse_dotenv
from dockyard.compose.loader import Options, Project, load
from dockyard.compose.normalize import format_duration, normalize_ports, parse_duration, parse_size


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def project(d: Path, text: str, **kw: object) -> Project:
    write(d, "compose.yaml", text)
    return load(Options(**kw), d)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,expected", [
    ("${A}", "a"), ("$A-x", "a-x"), ("${U:-d}", "d"), ("${E:-d}", "d"), ("${E-d}", ""), ("${U-d}", "d"),
    ("${A:+r}", "r"), ("${U:+r}", ""), ("$$A", "$A"), ("${U:-${A}b}", "ab"), ("a$", "a$"), ("${U}", ""),
])
def test_interpolation(text: str, expected: str) -> None:
    assert Interpolator({"A": "a", "E": ""}, warn=False).string(text, "x") == expected


def test_required_variable_names_the_place(tmp_path: Path) -> None:
    with pytest.raises(ComposeError) as e:
        project(tmp_path, "services:\n  web:\n    image: ${IMG:?set IMG}\n")
    msg = str(e.value)
    assert "compose.yaml" in msg and "services.web.image" in msg and "IMG" in msg and "set IMG" in msg


def test_dotenv_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, ".env", "# c\nexport TAG=1.36\nQ='lit $TAG'\nD=\"x ${TAG}\"\nIN=v # comment\nOVER=file\n")
    env = parse_dotenv(tmp_path / ".env")
    assert env == {"TAG": "1.36", "Q": "lit $TAG", "D": "x 1.36", "IN": "v", "OVER": "file"}
    monkeypatch.setenv("OVER", "shell")
    p = project(tmp_path, "services:\n  web:\n    image: busybox:${TAG}\n    environment: ['O=${OVER}']\n")
    assert p.services["web"]["image"] == "busybox:1.36"
    assert p.services["web"]["environment"] == {"O": "shell"}


def test_schema_error_names_file_service_key(tmp_path: Path) -> None:
    with pytest.raises(ComposeError) as e:
        project(tmp_path, "services:\n  web:\n    image: busybox\n    portz: [80]\n")
    assert "compose.yaml" in str(e.value) and "services.web.portz" in str(e.value)
    with pytest.raises(ComposeError) as e:
        project(tmp_path, "services:\n  web:\n    image: busybox\n    ports: 80\n")
    assert "services.web.ports" in str(e.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match=r"compose.yaml.*line 3"):
        project(tmp_path, "services:\n  a: {image: busybox\n  b: 1\n")


def test_normalised_forms(tmp_path: Path) -> None:
    p = project(tmp_path, """
services:
  web:
    image: busybox
    command: sh -c "echo $$HOME"
    ports: ["8080:80", "127.0.0.1:9000-9001:90-91/udp", {target: 443, published: 8443}]
    environment: [A=1, B]
    volumes: [data:/data, ./src:/src:ro, /anon]
    healthcheck: {test: "true", interval: 90s, timeout: 500ms}
    mem_limit: 64m
    depends_on: [db]
    deploy: {replicas: 2}
  db:
    image: busybox
    networks: [back]
volumes: {data: {}}
networks: {back: {}}
""")
    web = p.services["web"]
    assert web["command"] == ["sh", "-c", "echo $HOME"]
    assert web["ports"][0] == {"mode": "ingress", "target": 80, "protocol": "tcp", "published": "8080"}
    assert [x["published"] for x in web["ports"][1:3]] == ["9000", "9001"]
    assert web["ports"][1]["host_ip"] == "127.0.0.1" and web["ports"][1]["protocol"] == "udp"
    assert web["ports"][3]["published"] == "8443"
    assert web["environment"] == {"A": "1", "B": None}
    assert web["volumes"][0] == {"type": "volume", "source": "data", "target": "/data"}
    assert web["volumes"][1]["source"] == str(tmp_path / "src") and web["volumes"][1]["read_only"]
    assert web["volumes"][2] == {"type": "volume", "target": "/anon"}
    assert web["healthcheck"] == {"test": ["CMD-SHELL", "true"], "interval": "1m30s", "timeout": "500ms"}
    assert web["mem_limit"] == 64 * 1024 * 1024
    assert web["depends_on"] == {"db": {"condition": "service_started", "required": True}}
    assert web["scale"] == 2 and web["networks"] == {"default": None}
    assert p.networks["default"]["name"] == f"{p.name}_default" and p.networks["back"]["name"].endswith("_back")
    assert p.volumes["data"]["name"] == f"{p.name}_data"
    body = json.loads(encode(create_body(p, "web", web, 1)))
    assert body["Healthcheck"]["Interval"] == 90 * 10**9
    assert body["Labels"]["com.docker.compose.service"] == "web"
    assert body["Labels"]["com.docker.compose.oneoff"] == "False"
    assert body["HostConfig"]["Mounts"][0]["Source"] == f"{p.name}_data"
    assert body["NetworkingConfig"]["EndpointsConfig"][f"{p.name}_default"]["Aliases"] == [f"{p.name}-web-1", "web"]


def test_durations_and_sizes() -> None:
    assert parse_duration("1m30s", "x") == 90 * 10**9 and parse_duration("1.5h", "x") == 5400 * 10**9
    assert format_duration(parse_duration("90s", "x")) == "1m30s"
    assert parse_size("1g", "x") == 1 << 30 and parse_size("512", "x") == 512 and parse_size("2MB", "x") == 2 << 20
    with pytest.raises(ComposeError, match="services.a.healthcheck.interval"):
        parse_duration("5 parsecs", "services.a.healthcheck.interval")
    with pytest.raises(ComposeError):
        normalize_ports(["1:2:3:4"], "p")


def test_merge_override_files(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n    environment: {A: '1', B: '2'}\n"
          "    command: [a]\n    volumes: [v:/x]\nvolumes: {v: {}}\n")
    write(tmp_path, "over.yaml", "services:\n  web:\n    environment: {B: '3'}\n    command: [b]\n"
          "    volumes: [./y:/x]\n")
    p = load(Options(files=["compose.yaml", "over.yaml"]), tmp_path)
    web = p.services["web"]
    assert web["environment"] == {"A": "1", "B": "3"} and web["command"] == ["b"]
    assert len(web["volumes"]) == 1 and web["volumes"][0]["type"] == "bind"


def test_extends_and_profiles(tmp_path: Path) -> None:
    p = project(tmp_path, """
services:
  base: {image: busybox, environment: {A: '1'}, profiles: [tools]}
  web: {extends: base, environment: {B: '2'}, profiles: []}
  debug: {image: busybox, profiles: [debug]}
""")
    assert set(p.services) == {"web"}
    assert p.services["web"]["environment"] == {"A": "1", "B": "2"} and p.services["web"]["image"] == "busybox"
    p = load(Options(profiles=["debug"]), tmp_path)
    assert set(p.services) == {"web", "debug"}


def test_dependency_errors(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="dependency cycle detected: a -> b -> a"):
        project(tmp_path, "services:\n  a: {image: busybox, depends_on: [b]}\n  b: {image: busybox, depends_on: [a]}\n")
    with pytest.raises(ComposeError, match="'a' depends on undefined service 'nope'"):
        project(tmp_path, "services:\n  a: {image: busybox, depends_on: [nope]}\n")
    with pytest.raises(ComposeError, match="undefined volume"):
        project(tmp_path, "services:\n  a: {image: busybox, volumes: ['nope:/x']}\n")


def test_project_name_and_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "name: My_App\nservices:\n  a: {image: busybox, environment: [X=1]}\n"
    p = project(tmp_path, text)
    assert p.name == "my_app"
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "other")
    assert load(Options(), tmp_path).name == "other"
    assert load(Options(project_name="cli"), tmp_path).name == "cli"
    h1 = config_hash(p.services["a"])
    assert config_hash(project(tmp_path, text).services["a"]) == h1
    assert config_hash(project(tmp_path, text.replace("X=1", "X=2")).services["a"]) != h1
    assert config_hash(project(tmp_path, text.replace("}", ", scale: 3}")).services["a"]) == h1


def test_reset_and_override_tags(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n    ports: ['80:80']\n"
          "    environment: {A: '1', B: '2'}\n    command: [a]\n  base: {image: busybox, labels: {x: '1'}}\n"
          "  child:\n    extends: base\n    labels: !reset {}\n")
    write(tmp_path, "over.yaml", "services:\n  web:\n    ports: !reset []\n    environment: !override {C: '3'}\n")
    p = load(Options(files=["compose.yaml", "over.yaml"]), tmp_path)
    web = p.services["web"]
    assert "ports" not in web and web["environment"] == {"C": "3"} and web["command"] == ["a"]
    assert "labels" not in p.services["child"]  # !reset undoes what extends brought


def test_include_with_its_own_directory_and_env(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", "compose.yaml",
          "services:\n  db:\n    image: busybox:${DB_TAG}\n    volumes: ['./data:/data']\n")
    write(tmp_path / "lib", "db.env", "DB_TAG=1.36\n")
    p = project(tmp_path, "include:\n  - path: lib/compose.yaml\n    env_file: lib/db.env\n"
                "services:\n  web: {image: busybox, depends_on: [db]}\n")
    assert set(p.services) == {"db", "web"} and p.services["db"]["image"] == "busybox:1.36"
    # The included file's relative paths are its own directory's.
    assert p.services["db"]["volumes"][0]["source"] == str(tmp_path / "lib" / "data")
    with pytest.raises(ComposeError, match="defines conflicting service db"):
        project(tmp_path, "include: [lib/compose.yaml]\nservices:\n  db: {image: other}\n")


def test_extends_from_another_file(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    write(tmp_path / "common", "base.yaml", "services:\n  app:\n    image: busybox\n    env_file: app.env\n")
    write(tmp_path / "common", "app.env", "FROM_BASE=1\n")
    p = project(tmp_path, "services:\n  web:\n    extends: {file: common/base.yaml, service: app}\n"
                "    environment: {MINE: '2'}\n")
    assert p.services["web"]["environment"] == {"FROM_BASE": "1", "MINE": "2"}


def test_env_file_raw_and_optional(tmp_path: Path) -> None:
    write(tmp_path, "raw.env", "Q='kept quotes' $NOT\nPLAIN=x\n")
    p = project(tmp_path, "services:\n  a:\n    image: busybox\n    env_file:\n"
                "      - {path: raw.env, format: raw}\n      - {path: missing.env, required: false}\n")
    assert p.services["a"]["environment"] == {"Q": "'kept quotes' $NOT", "PLAIN": "x"}
    with pytest.raises(ComposeError, match="missing.env not found"):
        project(tmp_path, "services:\n  a: {image: busybox, env_file: [missing.env]}\n")


def test_deploy_resources_and_gpus(tmp_path: Path) -> None:
    p = project(tmp_path, """
services:
  a:
    image: busybox
    deploy:
      resources:
        limits: {cpus: '0.5', memory: 64m, pids: 50}
        reservations:
          memory: 32m
          devices: [{capabilities: [gpu], count: 1}]
  b: {image: busybox, gpus: all}
""")
    hc = json.loads(encode(create_body(p, "a", p.services["a"], 1)))["HostConfig"]
    assert (hc["NanoCpus"], hc["Memory"], hc["PidsLimit"], hc["MemoryReservation"]) == (
        500_000_000, 64 << 20, 50, 32 << 20)
    assert hc["DeviceRequests"] == [{"Driver": "", "Count": 1, "DeviceIDs": None, "Capabilities": [["gpu"]],
                                     "Options": {}}]
    b = create_body(p, "b", p.services["b"], 1).host_config
    assert b is not None and b.device_requests is not None and b.device_requests[0].count == -1


def test_nested_defaults_and_required_message() -> None:
    i = Interpolator({"A": "a"}, warn=False)
    assert i.string("${U:-${V:-${A}}}", "x") == "a"
    with pytest.raises(ComposeError, match="required variable U is missing a value: say why"):
        i.string("${U:?say why}", "services.a.image")


def test_env_files_accumulate_and_deploy_restart(tmp_path: Path) -> None:
    write(tmp_path, "a.env", "A=1\nB=from-a\n")
    write(tmp_path, "b.env", "B=from-b\nC=${A}2\n")
    p = project(tmp_path, "services:\n  s:\n    image: busybox\n    environment: [A=$A, B=$B, C=$C]\n"
                "    deploy: {restart_policy: {condition: on-failure, max_attempts: 3}}\n",
                env_files=[str(tmp_path / "a.env"), str(tmp_path / "b.env")])
    assert p.services["s"]["environment"] == {"A": "1", "B": "from-b", "C": "12"}
    assert json.loads(encode(create_body(p, "s", p.services["s"], 1)))["HostConfig"]["RestartPolicy"] == {
        "Name": "on-failure", "MaximumRetryCount": 3}


def test_numbers_in_yaml_reach_the_api_as_its_strings(tmp_path: Path) -> None:
    """YAML reads `1000` as a number; GroupAdd and Sysctls are strings to the daemon, which refuses a
    number there as Go does (the body decodes: wire.container.create_request)."""
    from dockyard.wire.container import create_request

    p = project(tmp_path, """
services:
  a:
    image: busybox
    group_add: [1000, audio]
    sysctls: {net.core.somaxconn: 1024}
  b:
    image: busybox
    sysctls: [net.ipv4.ip_forward=1]
""")
    hc = json.loads(encode(create_body(p, "a", p.services["a"], 1)))["HostConfig"]
    assert (hc["GroupAdd"], hc["Sysctls"]) == (["1000", "audio"], {"net.core.somaxconn": "1024"})
    req = create_request(json.loads(encode(create_body(p, "a", p.services["a"], 1)))).host_config
    assert req is not None and req.group_add == ["1000", "audio"]
    b = create_body(p, "b", p.services["b"], 1).host_config
    assert b is not None and b.sysctls == {"net.ipv4.ip_forward": "1"}
