"""An exec's process is the container's as its start wrote it (env, user, capabilities...), kept in
memory since: not read back from the bundle's config.json and parsed again for every exec (0.3-1.8 ms at
load, before its conmon spawn). After a daemon restart it is read from the file once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Daemon
from tests.conftest import own_daemon as daemon_of


@pytest.fixture(name="own_daemon")
def restartable_daemon() -> Iterator[Daemon]:
    with daemon_of("dy-execspec-") as d:
        yield d


def test_an_exec_takes_the_process_its_start_wrote(own_daemon: Daemon) -> None:
    d = own_daemon
    cid = d.docker("run", "-d", "--name", "kept", "-e", "FROM_RUN=1", "busybox", "sleep", "1000").stdout.decode().strip()
    config = d.exec_root / "containers" / cid / "config.json"
    written = config.read_text()
    config.write_text("{not json")  # what the start wrote is what counts, not what the file says later
    out = d.docker("exec", "-e", "FROM_EXEC=2", "kept", "sh", "-c", "echo $FROM_RUN $FROM_EXEC $PATH").stdout
    assert out.decode().split()[:2] == ["1", "2"] and "/bin" in out.decode()
    # A restarted daemon knows nothing of it: the file is read once.
    config.write_text(written)
    d.kill()
    d.start()
    assert d.docker("exec", "kept", "sh", "-c", "echo $FROM_RUN").stdout == b"1\n"
    config.write_text("{not json")
    assert d.docker("exec", "kept", "sh", "-c", "echo $FROM_RUN").stdout == b"1\n"
