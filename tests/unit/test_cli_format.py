"""Pure parts of the CLI: Go templates, docker's units and tables, run flag parsing."""

from __future__ import annotations

import argparse
import json

import pytest

from dockyard.cli.formatting import human_duration, human_size, tabwrite, write_rows
from dockyard.cli.gotemplate import Template, TemplateError, render
from dockyard.cli.opts import (
    add_container_flags,
    build_create_body,
    encode,
    go_duration,
    parse_ports,
    ram_in_bytes,
)
from dockyard.cli.stdio import parse_detach_keys

DATA = {"Name": "/x", "State": {"Status": "running", "Pid": 12}, "M": None,
        "Config": {"Labels": {"b": "2", "a": "1"}, "Env": ["A=1", "B=2"]}}


@pytest.mark.parametrize("src,want", [
    ("{{.Name}} {{.State.Status}}", "/x running"),
    ("{{json .Config.Labels}}", '{"b":"2","a":"1"}'),
    ('{{index .Config.Labels "a"}}', "1"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
    ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
    ("{{if .M}}m{{else if .Name}}n{{else}}z{{end}}", "n"),
    ("{{with .State}}{{.Pid}}{{end}}", "12"),
    ('{{join .Config.Env ","}} {{len .Config.Env}}', "A=1,B=2 2"),
    ("{{.Name | upper}}", "/X"),
    ('{{printf "%s:%d" .Name .State.Pid}}', "/x:12"),
    ("a {{- .Name -}} b", "a/xb"),
    ("{{.M}} {{.Nope}}", "<nil> <no value>"),
])
def test_template(src: str, want: str) -> None:
    assert render(src, DATA) == want


def test_template_strict_and_errors() -> None:
    with pytest.raises(TemplateError, match='no entry for key "Nope"'):
        Template("{{.Nope}}", strict=True).render(DATA)
    with pytest.raises(TemplateError):
        Template("{{if .Name}}x")
    with pytest.raises(TemplateError):
        Template("{{nofunc .Name}}").render(DATA)


def test_units() -> None:
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(3) == "3 seconds"
    assert human_duration(90) == "About a minute"
    assert human_duration(3600 * 5) == "5 hours"
    assert human_size(1_980_000) == "1.98MB"
    assert human_size(0) == "0B"
    assert ram_in_bytes("512m") == 512 << 20
    assert go_duration("1m30s") == 90 * 10**9


def test_tabwrite_like_docker() -> None:
    out = tabwrite(["CONTAINER ID\tIMAGE\tNAMES", "abc\tbusybox\tx"])
    assert out == "CONTAINER ID   IMAGE     NAMES\nabc            busybox   x\n"


def test_write_rows_table_header(capsys: pytest.CaptureFixture[str]) -> None:
    write_rows("table {{.ID}}\\t{{.Name}}", [{"ID": "1", "Name": "n"}], {"ID": "CONTAINER ID", "Name": "NAME"}, "")
    assert capsys.readouterr().out == "CONTAINER ID   NAME\n1              n\n"


def test_run_flags_to_body() -> None:
    p = argparse.ArgumentParser(conflict_handler="resolve")  # -h is --hostname, as in docker
    p.add_argument("--rm", action="store_true")
    add_container_flags(p)
    a = p.parse_args(["--rm", "-e", "A=1", "-p", "127.0.0.1:8080:80/udp", "-v", "/h:/c:ro", "-v", "/anon",
                      "-m", "1g", "--cpus", "1.5", "--restart", "no", "--entrypoint", "", "--name", "n",
                      "--health-cmd", "true", "--health-interval", "5s", "--network", "net1",
                      "--network-alias", "al", "busybox", "ls", "-l"])
    req, name = build_create_body(a)
    body = json.loads(encode(req))  # what the daemon gets
    assert name == "n" and body["Cmd"] == ["ls", "-l"] and body["Entrypoint"] == [""]
    assert body["Env"] == ["A=1"] and body["Volumes"] == {"/anon": {}}
    hc = body["HostConfig"]
    assert hc["AutoRemove"] and hc["Binds"] == ["/h:/c:ro"] and hc["Memory"] == 1 << 30
    assert hc["NanoCpus"] == 1_500_000_000 and hc["NetworkMode"] == "net1"
    assert hc["PortBindings"] == {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5 * 10**9}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"net1": {"Aliases": ["al"]}}}


def test_ports_and_keys() -> None:
    exposed, bindings = parse_ports(["8000-8001:80-81", "53"])
    assert set(exposed) == {"80/tcp", "81/tcp", "53/tcp"}
    assert bindings["81/tcp"] == [{"HostIp": "", "HostPort": "8001"}]
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
