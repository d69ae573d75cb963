"""scripts/docker_py_conformance.py keeps enough of a failure to tell why (a trial CI's 500 at start was cut
off at 200 characters, before the daemon's reason), and prints the daemon's warnings."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docker_py_conformance.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_py_conformance", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_failure_keeps_the_daemons_reason(tmp_path: Path) -> None:
    reason = "failed to set up the network of container 0123456789ab: [Errno 17] File exists"
    message = (f"docker.errors.APIError: 500 Server Error for http+docker://localhost/v1.47/containers/{'a' * 64}"
               f'/start: Internal Server Error ("{reason}")')
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="tests.integration.models_containers_test.ContainerTest" '
        f'name="test_ports_target_list"><failure message="{message.replace(chr(34), "&quot;")}">trace</failure>'
        "</testcase></testsuite></testsuites>")
    state, why = _script().results(junit)["models_containers_test.py::ContainerTest::test_ports_target_list"]
    assert state == "failed"
    assert reason in why


def test_the_daemons_warnings_are_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "daemon.log"
    log.write_text("2026-12-04 10:00:00,000 DEBUG dockyard.api: GET /_ping -> 200\n"
                   "2026-12-04 10:00:01,000 WARNING dockyard.services.containers: start of 0123456789ab failed: x\n")
    _script().print_warnings(log)
    out = capsys.readouterr().out
    assert "start of 0123456789ab failed: x" in out
    assert "GET /_ping" not in out
