"""Engine errors. Every layer raises these; the API maps each class to Docker's HTTP status."""

from __future__ import annotations

import errno
import sys


class DockyardError(Exception):
    """Base class; `status` is the HTTP status the API answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(DockyardError):
    status = 400


class Unauthorized(DockyardError):
    status = 401


class Forbidden(DockyardError):
    status = 403


class NotFound(DockyardError):
    status = 404


class Conflict(DockyardError):
    status = 409


class NotModified(DockyardError):
    """304: container already started / already stopped."""

    status = 304


class Unavailable(DockyardError):
    status = 503


class NotSupported(DockyardError):
    """501: something dockerd does that Dockyard has no engine for (swarm, plugins, a log driver's reads)."""

    status = 501


class SystemError_(DockyardError):
    status = 500


def no_such_container(ref: str) -> NotFound:
    return NotFound(f"No such container: {ref}")


def no_such_image(ref: str) -> NotFound:
    return NotFound(f"No such image: {ref}")


def out_of_space(e: BaseException | None) -> bool:
    """Whether `e` (or what it was raised from) is a full disk or quota: ENOSPC, EDQUOT, SQLITE_FULL."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _sqlite_error(e) and (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF == 13:  # SQLITE_FULL
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _sqlite_error(e: BaseException) -> bool:
    """isinstance(e, sqlite3.Error) without importing sqlite3 (the CLI imports this module: start-up
    time); a process that never imported sqlite3 has no sqlite3 errors."""
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3 is not None and isinstance(e, sqlite3.Error)


def describe(e: BaseException) -> str:
    """A client message for an unexpected exception, worded as Go's errors are (moby's clients
    match on "no space left on device"), never Python's "[Errno 28] ..." text."""
    if isinstance(e, DockyardError):
        return e.message
    if isinstance(e, OSError) and e.strerror:
        reason = e.strerror[:1].lower() + e.strerror[1:]
        return f"{e.filename}: {reason}" if e.filename else reason
    if _sqlite_error(e) and out_of_space(e):
        return "write metadata database: no space left on device"
    return str(e) or type(e).__name__
