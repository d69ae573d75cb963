"""The one signal parser (runtime/signals.py) and the one reading of runtime failures (runtime/failures.py)."""

from __future__ import annotations

import re
import signal

import pytest

from dockyard.errors import InvalidParameter
from dockyard.runtime.failures import exit_code_of, is_exec_failure
from dockyard.runtime.monitor import ExecNotFound, RuntimeError_, classify
from dockyard.runtime.signals import parse_signal


@pytest.mark.parametrize("text,num", [
    ("SIGTERM", 15), ("TERM", 15), ("term", 15), (" kill ", 9), ("9", 9), (10, 10),
    ("SIGRTMIN+3", int(signal.SIGRTMIN) + 3), ("RTMIN+1", int(signal.SIGRTMIN) + 1), ("SIGRTMAX", int(signal.SIGRTMAX)),
])
def test_parse_signal(text: str | int, num: int) -> None:
    assert parse_signal(text) == num


@pytest.mark.parametrize("text", ["", "NOPE", "SIG", "RTMIN+x", "-1"])
def test_parse_signal_refuses_with_dockers_message(text: str) -> None:
    with pytest.raises(InvalidParameter, match=f"^Invalid signal: {re.escape(text)}$"):
        parse_signal(text)


@pytest.mark.parametrize("message,code", [
    ('exec: "nope": executable file not found in $PATH', 127),
    ("exec: /nope: no such file or directory", 127),
    ("exec: /etc/passwd: permission denied", 126),
    ("exec: /etc: is a directory", 126),
    ("cgroup: cannot set memory limit", 128),
])
def test_exit_code_of_a_start_failure(message: str, code: int) -> None:
    assert exit_code_of(message, 128) == code


def test_an_exec_failure_defaults_to_126() -> None:
    assert exit_code_of("OCI runtime exec failed: something else", 126) == 126


@pytest.mark.parametrize("message,exec_failure", [
    ('exec: "x": executable file not found in $PATH', True), ("open /bin/x: permission denied", True),
    ("chdir to cwd: not a directory", True), ("container with id exists", False),
])
def test_classify_maps_exec_failures_to_400(message: str, exec_failure: bool) -> None:
    assert is_exec_failure(message) is exec_failure
    err = classify(message)
    assert isinstance(err, ExecNotFound if exec_failure else RuntimeError_) and err.message == message
    assert err.status == (400 if exec_failure else 500)
