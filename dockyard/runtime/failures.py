"""The one reading of an OCI runtime's failure text: which failures mean the executable is
missing or cannot run (moby's translateContainerdStartErr), and the exit code Docker gives them."""

from __future__ import annotations

MISSING = ("executable file not found", "no such file or directory")
NOT_RUNNABLE = ("permission denied", "is a directory")


def exit_code_of(message: str, default: int) -> int:
    """127 when the executable is missing, 126 when it cannot be run, else `default` (Docker: 128
    for a container that failed to start, 126 for an exec)."""
    low = message.lower()
    if any(m in low for m in MISSING):
        return 127
    if any(m in low for m in NOT_RUNNABLE):
        return 126
    return default


def is_exec_failure(message: str) -> bool:
    """The process could not be exec'd (Docker answers these with 400 on create, not 500)."""
    return exit_code_of(message, 0) != 0 or "not a directory" in message.lower()
