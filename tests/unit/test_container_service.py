"""ContainerService's state machine on a fake runtime (tests/unit/fakes.py): exit handling, stop
and kill, the restart policy's back-off, pause, remove, recovery. The real runtime runs the
same paths in tests/integration and tests/conformance; these pin the decisions themselves."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import Conflict, InvalidParameter, NotFound, NotModified, SystemError_
from dockyard.runtime.monitor import RuntimeError_
from dockyard.services.containers import ContainerService
from dockyard.services.events import EventBus
from dockyard.store.db import Database
from dockyard.wire.container import create_request
from tests.unit.fakes import FakeImages, FakeRuntime, FakeSnapshotter


class World:
    def __init__(self, tmp: Path) -> None:
        (tmp / "data").mkdir()
        (tmp / "run").mkdir()
        self.db = Database(tmp / "db.sqlite")
        self.events = EventBus()
        self.runtime = FakeRuntime(tmp / "run" / "exits")
        self.cs = ContainerService(self.db, self.events, FakeImages(), self.runtime, tmp / "data", tmp / "run")
        self.cs.snapshots = FakeSnapshotter(tmp / "data" / "containers")
        self.runtime.on_exit = self.cs.finalize_exit
        self.delays: list[float] = []
        self.gate: asyncio.Event | None = None  # when set, restart delays wait for it

    async def run(self, body: dict[str, Any] | None = None, **hc: Any) -> str:
        created = await self.cs.create(create_request({"Image": "busybox", **(body or {}), "HostConfig": hc}))
        await self.cs.start(created["Id"])
        return str(created["Id"])

    def actions(self, cid: str) -> list[str]:
        return [e["Action"] for e in self.events._history if e.get("id") == cid]

    async def settle(self) -> None:
        """Wait until every scheduled exit and restart has run (each is a task on this loop)."""
        me = asyncio.current_task()
        while pending := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
            await asyncio.wait(pending)

    async def until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await asyncio.wait(asyncio.all_tasks() - {asyncio.current_task()}, return_when=asyncio.FIRST_COMPLETED)


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World(tmp_path)
    real_sleep = asyncio.sleep

    async def no_delay(delay: float, result: Any = None) -> Any:
        # The restart back-off sleeps; record how long instead of waiting it out.
        if delay > 0:
            w.delays.append(round(delay, 3))
            if w.gate is not None:
                await w.gate.wait()
        return await real_sleep(0, result)

    monkeypatch.setattr("dockyard.services.containers.asyncio.sleep", no_delay)
    yield w
    w.db.close()


def run(world: World, test: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        world.events.bind_loop(asyncio.get_running_loop())
        await test(world)

    asyncio.run(main())


def test_exit_is_recorded_with_its_code_and_events(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run()
        assert w.cs.get(cid).state == "running" and w.cs.get(cid).pid > 0
        w.runtime.exit(cid, 3)
        res = await w.cs.wait(cid)
        c = w.cs.get(cid)
        assert res == {"StatusCode": 3, "Error": None}
        assert (c.state, c.exit_code, c.pid) == ("exited", 3, 0)
        assert w.actions(cid) == ["create", "start", "die"]
        assert cid in w.runtime.deleted  # runtime state released at exit
        await w.cs.finalize_exit(cid)  # a second report of the same exit changes nothing
        assert w.actions(cid) == ["create", "start", "die"]

    run(world, t)


def test_stop_sends_the_stop_signal_and_waits(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run({"StopSignal": "SIGUSR1"})
        await w.cs.stop(cid, timeout=5)
        assert w.runtime.procs[cid].signals == [signal.SIGUSR1]
        assert w.cs.get(cid).exit_code == 128 + signal.SIGUSR1
        assert w.actions(cid)[-2:] == ["die", "stop"]
        with pytest.raises(NotModified):
            await w.cs.stop(cid)

    run(world, t)


def test_stop_kills_a_process_that_ignores_the_signal(world: World) -> None:
    async def t(w: World) -> None:
        w.runtime.ignored = {signal.SIGTERM}
        cid = await w.run()
        await w.cs.stop(cid, timeout=0)
        assert w.runtime.procs[cid].signals == [signal.SIGTERM, signal.SIGKILL]
        assert w.cs.get(cid).exit_code == 137

    run(world, t)


def test_kill(world: World) -> None:
    async def t(w: World) -> None:
        w.runtime.ignored = {signal.SIGHUP}
        cid = await w.run()
        await w.cs.kill(cid, "HUP")
        assert w.cs.get(cid).state == "running"  # survived it
        await w.cs.kill(cid)  # KILL by default
        await w.cs.wait(cid)
        assert w.runtime.procs[cid].signals == [signal.SIGHUP, signal.SIGKILL]
        assert w.cs.get(cid).exit_code == 137
        with pytest.raises(Conflict, match="is not running"):
            await w.cs.kill(cid)

    run(world, t)


def test_on_failure_backs_off_doubling_and_stops_at_the_maximum(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run(RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 3})
        w.runtime.exit_on_start = 1
        w.runtime.exit(cid, 1)
        await w.settle()
        c = w.cs.get(cid)
        assert (c.state, c.restart_count, c.exit_code) == ("exited", 3, 1)
        assert w.delays == [0.1, 0.2, 0.4]  # dockerd's: 100 ms doubling
        assert w.actions(cid).count("start") == 4

    run(world, t)


def test_on_failure_does_not_restart_a_clean_exit(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run(RestartPolicy={"Name": "on-failure"})
        w.runtime.exit(cid, 0)
        await w.settle()
        assert (w.cs.get(cid).state, w.cs.get(cid).restart_count) == ("exited", 0)

    run(world, t)


def test_always_restarts_until_the_user_stops_it(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run(RestartPolicy={"Name": "always"})
        w.runtime.exit(cid, 0)
        await w.settle()
        c = w.cs.get(cid)
        assert (c.state, c.restart_count) == ("running", 1)
        await w.cs.stop(cid, timeout=1)
        await w.settle()
        c = w.cs.get(cid)
        assert (c.state, c.restart_count, c.stopped_by_user) == ("exited", 1, True)

    run(world, t)


def test_a_kill_ends_the_policy_until_the_next_start(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run(RestartPolicy={"Name": "unless-stopped"})
        await w.cs.kill(cid, "KILL")
        await w.settle()
        assert w.cs.get(cid).state == "exited"
        await w.cs.start(cid)  # a user's start brings the policy back and resets the count
        w.runtime.exit(cid, 2)
        await w.settle()
        assert (w.cs.get(cid).state, w.cs.get(cid).restart_count) == ("running", 1)
        await w.cs.remove(cid, force=True)

    run(world, t)


def test_stop_during_the_restart_delay_cancels_the_restart(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run(RestartPolicy={"Name": "always"})
        w.gate = asyncio.Event()  # the restart delay does not pass
        w.runtime.exit(cid, 1)
        await w.until(lambda: w.cs.get(cid).state == "restarting")
        await w.cs.stop(cid)
        w.gate.set()
        await w.settle()
        assert w.cs.get(cid).state == "exited"
        assert w.actions(cid).count("start") == 1

    run(world, t)


def test_pause_and_unpause(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run()
        with pytest.raises(SystemError_, match="is not paused"):
            await w.cs.unpause(cid)
        await w.cs.pause(cid)
        assert w.cs.get(cid).state == "paused" and w.runtime.procs[cid].paused
        with pytest.raises(Conflict, match="already paused"):
            await w.cs.pause(cid)
        await w.cs.stop(cid, timeout=1)  # a paused container is resumed to get the signal
        assert not w.runtime.procs[cid].paused and w.cs.get(cid).state == "exited"

    run(world, t)


def test_failed_start_reports_docker_wording_and_exit_code(world: World) -> None:
    async def t(w: World) -> None:
        w.runtime.fail_create = RuntimeError_('exec: "nope": executable file not found in $PATH')
        cid = (await w.cs.create(create_request({"Image": "busybox", "Cmd": ["nope"]})))["Id"]
        with pytest.raises(RuntimeError_, match="^failed to create task for container: OCI runtime create failed"):
            await w.cs.start(cid)
        c = w.cs.get(cid)
        assert (c.state, c.exit_code) == ("created", 127)
        assert "executable file not found" in c.error

    run(world, t)


def test_remove(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run()
        with pytest.raises(Conflict, match="stop the container before removing or force remove"):
            await w.cs.remove(cid)
        waiter = asyncio.get_running_loop().create_task(w.cs.wait(cid, "removed"))
        await w.cs.remove(cid, force=True)
        assert (await waiter)["StatusCode"] == 137
        with pytest.raises(NotFound):
            w.cs.get(cid)
        assert not (w.cs.container_dir(cid)).exists()
        assert w.actions(cid)[-2:] == ["die", "destroy"]

    run(world, t)


def test_recover_finalizes_containers_whose_monitor_died(world: World) -> None:
    async def t(w: World) -> None:
        alive, dead = await w.run(), await w.run()
        w.runtime.procs[dead].exit_code = 9  # exited while the daemon was down
        w.runtime.procs[dead].running = False
        await w.cs.recover()
        assert w.cs.get(alive).state == "running"
        assert (w.cs.get(dead).state, w.cs.get(dead).exit_code) == ("exited", 9)

    run(world, t)


def test_using_image_answers_the_image_service(world: World) -> None:
    async def t(w: World) -> None:
        image_id = FakeImages().image.id
        running = await w.run()
        stopped = (await w.cs.create(create_request({"Image": "busybox"})))["Id"]
        assert sorted(w.cs.using_image(image_id)) == sorted([(running, True), (stopped, False)])
        assert w.cs.using_image("sha256:" + "0" * 64) == []

    run(world, t)


def test_recover_reconciles_pauses_with_the_runtime(world: World) -> None:
    """After a crash: a commit's pause is undone, the user's kept; where record and runc disagree,
    runc's state is recorded (dockerd's restore)."""
    async def t(w: World) -> None:
        by_commit, by_user, record_lost, never_frozen = [await w.run() for _ in range(4)]
        assert await w.cs.pause_for(by_commit, "commit")  # ... and the daemon dies mid-commit
        await w.cs.pause(by_user)
        w.runtime.procs[record_lost].paused = True  # runc paused it, the record never said so
        w.cs._set_state_if(never_frozen, "running", "paused", paused_by="commit")  # died before runc pause
        await w.cs.recover()
        for cid in (by_commit, never_frozen):
            assert (w.cs.get(cid).state, w.runtime.procs[cid].paused) == ("running", False)
        assert (w.cs.get(by_user).state, w.runtime.procs[by_user].paused) == ("paused", True)
        assert (w.cs.get(record_lost).state, w.runtime.procs[record_lost].paused) == ("paused", True)
        await w.cs.unpause(record_lost)  # the user can now undo it through the API
        assert not w.runtime.procs[record_lost].paused

    run(world, t)


def test_commit_pause_is_recorded_and_yields_to_the_user(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run()
        assert await w.cs.pause_for(cid, "commit")
        assert (w.cs.get(cid).state, w.cs.get(cid).paused_by) == ("paused", "commit")
        with pytest.raises(Conflict, match="already paused"):
            await w.cs.pause(cid)
        await w.cs.unpause(cid)  # the user unpaused during the commit: its own unpause does nothing
        await w.cs.pause(cid)
        await w.cs.unpause_for(cid, "commit")
        assert (w.cs.get(cid).state, w.runtime.procs[cid].paused) == ("paused", True)
        assert w.actions(cid)[-3:] == ["pause", "unpause", "pause"]  # as dockerd: commit's pause is an event

    run(world, t)


def test_run_rm_leaves_no_state_behind_in_the_service(world: World) -> None:
    """Each `run --rm` once left an entry in a daemon-wide dict of exit codes (issue 21's RSS growth);
    a waiter for removal still gets the exit code, from the container's own coordination record."""
    async def t(w: World) -> None:
        for code in (3, 0, 7):
            cid = await w.run(AutoRemove=True)
            waiter = asyncio.get_running_loop().create_task(w.cs.wait(cid, "removed"))
            await asyncio.sleep(0)
            w.runtime.exit(cid, code)
            assert (await waiter)["StatusCode"] == code
            await w.settle()
            with pytest.raises(NotFound):
                w.cs.get(cid)
        assert w.cs._live == {}
        assert not [k for k, v in vars(w.cs).items() if isinstance(v, dict) and cid in v]

    run(world, t)


def test_back_off_starts_over_after_ten_seconds_of_running(world: World) -> None:
    async def t(w: World) -> None:
        cid = await w.run(RestartPolicy={"Name": "always"})
        for _ in range(3):  # three quick failures: 0.1, 0.2, 0.4
            w.runtime.exit(cid, 1)
            await w.settle()
        w.cs.save(cid, started_at=w.cs.get(cid).started_at - 60)  # this run lasted a minute
        w.runtime.exit(cid, 1)
        await w.settle()
        assert w.delays == [0.1, 0.2, 0.4, 0.1]  # dockerd resets the delay, not the count
        assert w.cs.get(cid).restart_count == 4
        await w.cs.stop(cid, timeout=1)

    run(world, t)


def test_concurrent_creates_never_pick_the_same_random_name(world: World) -> None:
    """A build's parallel stages create their RUN containers at once; there are only 552 random names
    (a collision among 60 is all but certain), and the check and the INSERT are an await apart."""
    async def t(w: World) -> None:
        made = await asyncio.gather(*(w.cs.create(create_request({"Image": "busybox", "HostConfig": {}})) for _ in range(60)))
        names = {w.cs.get(c["Id"]).name for c in made}
        assert len(names) == 60

    run(world, t)


def test_the_list_sees_every_change_to_a_row_it_kept(world: World) -> None:
    """The list keeps rows decoded between lists (by rev, a trigger bumps it at every UPDATE): a write by
    any path, even one the service does not make, must show at the next list, and removal must too."""

    def listed(all_: bool = True) -> dict[str, dict[str, Any]]:
        body = json.loads(world.cs.list_json(all_=all_))
        rows = world.cs.list(all_=all_)
        assert body == [{**row, "Status": b["Status"]} for row, b in zip(rows, body, strict=True)]
        return {row["Id"]: row for row in body}

    async def t(w: World) -> None:
        a, b = await w.run(), await w.run()
        assert listed()[a]["State"] == "running"
        w.db.execute("UPDATE containers SET state='paused' WHERE id=?", (a,))  # not through the service
        assert listed()[a]["Status"].endswith("(Paused)")
        await w.cs.rename(b, "renamed")
        assert listed()[b]["Names"] == ["/renamed"]
        w.runtime.exit(b, 3)
        await w.cs.wait(b)
        assert b not in listed(all_=False) and listed()[b]["Status"].startswith("Exited (3)")
        await w.cs.remove(b)
        assert list(listed()) == [a]

    run(world, t)


def test_a_list_of_an_unchanged_database_reads_no_row_and_sees_every_change(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list keeps each entry encoded whole, and `docker ps`'s whole body, and reads nothing while the
    database is unchanged (db.version()); every write, ours or another connection's, and the time in Status
    must still show."""
    import sqlite3

    import dockyard.services.containers as containers_mod

    reads: list[str] = []
    query = world.db.query

    def counted(sql: str, params: Any = ()) -> Any:
        reads.append(sql)
        return query(sql, params)

    monkeypatch.setattr(world.db, "query", counted)
    clock = [1_000_000.0]
    monkeypatch.setattr(containers_mod.time, "time", lambda: clock[0])

    def listed(all_: bool = True) -> dict[str, dict[str, Any]]:
        body = world.cs.list_json(all_=all_)
        rows = world.cs.list(all_=all_)
        assert json.loads(body) == rows  # the kept bytes say what a fresh encoding says
        return {row["Id"]: row for row in rows}

    async def t(w: World) -> None:
        a, b = await w.run(), await w.run(Links=[])
        first = listed()
        reads.clear()
        again = w.cs.list_json(all_=True)
        assert reads == [] and json.loads(again) == list(first.values())  # nothing read, the same answer
        # `docker ps` (-a) again: the body kept whole while no row changed and no Status moved with the time
        assert w.cs.list_json(all_=True) is again and w.cs.list_json() is w.cs.list_json()
        assert w.cs.list_json(all_=True, limit=1) is not w.cs.list_json(all_=True, limit=1)  # not for others
        assert first[a]["Status"] == "Up Less than a second"
        clock[0] += 75  # no write: the status text still moves with the time
        assert listed()[a]["Status"] == "Up About a minute" and reads == []
        clock[0] += 3600
        assert listed()[a]["Status"] == "Up About an hour"
        other = sqlite3.connect(tmp_path / "db.sqlite")  # another connection (data_version)
        other.execute("UPDATE containers SET state='paused' WHERE id=?", (a,))
        other.commit()
        other.close()
        assert listed()[a]["Status"] == "Up About an hour (Paused)" and reads
        w.db.execute("UPDATE containers SET state='running' WHERE id=?", (a,))  # ours, not through the service
        assert listed()[a]["Status"] == "Up About an hour"
        # Names: a link makes its target's entry list "/parent/alias"; renaming the parent changes it.
        c = await w.run(Links=[f"{first[a]['Names'][0][1:]}:db"])
        parent = listed()[c]["Names"][0]
        assert listed()[a]["Names"] == [first[a]["Names"][0], f"{parent}/db"]
        await w.cs.rename(c, "renamed")
        assert listed()[a]["Names"] == [first[a]["Names"][0], "/renamed/db"]
        await w.cs.remove(c, force=True)
        assert listed()[a]["Names"] == [first[a]["Names"][0]] and c not in listed()
        # Network settings (a connect or disconnect writes them) and a stop.
        w.db.execute("UPDATE containers SET network_settings=? WHERE id=?",
                     (json.dumps({"Networks": {"n1": {"NetworkID": "abc"}}}), b))
        assert listed()[b]["NetworkSettings"] == {"Networks": {"n1": {"NetworkID": "abc"}}}
        assert [r["Id"] for r in w.cs.list(filters={"network": ["n1"]})] == [b]
        w.runtime.exit(b, 3)
        await w.cs.wait(b)
        assert b not in listed(all_=False) and listed()[b]["Status"] == "Exited (3) Less than a second ago"
        clock[0] += 2
        assert listed()[b]["Status"] == "Exited (3) 2 seconds ago"

    run(world, t)


def test_an_exit_while_runc_pauses_stays_recorded(world: World) -> None:
    """The exit is finalized while runc pause is under way (a process that ended just before the
    freeze): the pause must not write 'paused' over 'exited'."""
    async def t(w: World) -> None:
        cid = await w.run()
        w.runtime.pause_gate = asyncio.Event()
        pausing = asyncio.get_running_loop().create_task(w.cs.pause(cid))
        await asyncio.sleep(0)  # pause is now in runc
        w.runtime.exit(cid, 0)
        await w.until(lambda: w.cs.get(cid).state == "exited")
        w.runtime.pause_gate.set()
        await pausing
        c = w.cs.get(cid)
        assert (c.state, c.exit_code, c.running) == ("exited", 0, False)
        with pytest.raises(SystemError_):
            await w.cs.unpause(cid)

    run(world, t)


def test_a_cancelled_kill_does_not_cut_the_exit_it_finalizes_short(world: World) -> None:
    """The watcher missed the exit, so the kill's own wait finalizes it; the kill is then cancelled
    (its 30 s bound, a client gone) while runc delete runs: the exit is still recorded whole."""
    async def t(w: World) -> None:
        cid = await w.run()
        w.runtime.on_exit = None  # no watcher: the kill's wait finds the exit itself
        w.runtime.delete_gate = asyncio.Event()
        killing = asyncio.get_running_loop().create_task(w.cs.kill(cid))
        await w.runtime.delete_entered.wait()  # finalize_exit is in runc delete
        killing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await killing
        w.runtime.delete_gate.set()
        await w.settle()
        c = w.cs.get(cid)
        assert (c.state, c.exit_code, c.pid) == ("exited", 137, 0)
        assert w.actions(cid)[-1] == "die"

    run(world, t)


async def real_sleep(seconds: float) -> None:
    """A wait the kernel fills (the fixture makes asyncio.sleep return at once)."""
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, seconds)


def test_a_new_start_watches_its_own_monitor_not_the_last_runs(world: World) -> None:
    """The last run's conmon ends after the exit it reported was finalized and a new start began: its
    end, seen late, must not finalize the new run (which would record 255 and delete it); the new
    run's conmon is the one watched."""
    async def t(w: World) -> None:
        old_mon = subprocess.Popen(["sleep", "60"])
        new_mon = subprocess.Popen(["sleep", "60"])
        try:
            created = await w.cs.create(create_request({"Image": "busybox", "HostConfig": {}}))
            cid = str(created["Id"])
            w.runtime.conmon_pids[cid] = old_mon.pid
            await w.cs.start(cid)
            w.runtime.exit(cid, 0)
            await w.until(lambda: w.cs.get(cid).state == "exited")
            w.runtime.conmon_pids[cid] = new_mon.pid
            await w.cs.start(cid)  # before the loop has seen the old monitor go
            old_mon.kill()
            old_mon.wait()
            await real_sleep(0.2)  # time for the loop to see the old pidfd readable
            await w.settle()
            assert (w.cs.get(cid).state, w.cs.get(cid).exit_code) == ("running", 0)
            new_mon.kill()  # the new run's conmon dies: its exit is finalized (255, no exit file)
            new_mon.wait()
            for _ in range(100):
                if w.cs.get(cid).state == "exited":
                    break
                await real_sleep(0.05)
                await w.settle()
            assert (w.cs.get(cid).state, w.cs.get(cid).exit_code) == ("exited", 255)
        finally:
            for p in (old_mon, new_mon):
                p.kill()
                p.wait()

    run(world, t)


def test_an_exit_whose_record_failed_keeps_its_code_at_the_retry(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk fails the exit's record after runc delete took the exit file: the retry records the
    code that was read, not 255."""
    async def t(w: World) -> None:
        cid = await w.run()
        real_save = w.cs.save
        failed: list[str] = []

        def save(c: str, **fields: Any) -> None:
            if fields.get("state") == "exited" and not failed:
                failed.append(c)
                raise sqlite3.OperationalError("database or disk is full")
            real_save(c, **fields)

        monkeypatch.setattr(w.cs, "save", save)
        w.runtime.on_exit = None
        w.runtime.exit(cid, 3)
        with pytest.raises(sqlite3.OperationalError):
            await w.cs.finalize_exit(cid)
        assert w.runtime.exit_code(cid) is None and w.cs.get(cid).state == "running"
        await w.cs.finalize_exit(cid)  # the retry (the next wait, or recovery)
        assert (w.cs.get(cid).state, w.cs.get(cid).exit_code) == ("exited", 3)


@pytest.mark.parametrize("listed", [False, True])
def test_brief_finds_a_container_as_get_does(world: World, listed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """listed: the list was read first (as `docker stats` does), so every lookup is made in memory."""
    async def t(w: World) -> None:
        a = (await w.cs.create(create_request({"Image": "busybox"}), name="alpha"))["Id"]
        await w.cs.start(a)
        b = (await w.cs.create(create_request({"Image": "busybox"}), name="beta"))["Id"]
        # a name that is hex and another container's id prefix: the name is found first, as get() finds it
        c = (await w.cs.create(create_request({"Image": "busybox"}), name=b[:4]))["Id"]
        common = next((i for i in range(12) if a[i] != b[i]), 12)
        refs = [a, "alpha", "/alpha", a[:12], b[:5], b[:4], "nosuch", "", "0" * 64, a[:common]]
        found: list[Any] = []
        for ref in refs:
            try:
                found.append(w.cs.get(ref).id)
            except (NotFound, InvalidParameter) as e:
                found.append(type(e))
        assert found[:6] == [a, a, a, a, b, c] and found[6:9] == [NotFound] * 3
        if common:  # a prefix both ids start with names neither
            assert found[9] is InvalidParameter
        if listed:
            w.cs.list(all_=True)
            monkeypatch.setattr(w.cs, "_row", None)  # no read of the database at all
        for ref, want in zip(refs, found, strict=True):
            if isinstance(want, str):
                assert w.cs.brief(ref)[0] == want, ref
            else:
                with pytest.raises(want):
                    w.cs.brief(ref)
        assert w.cs.brief("alpha")[1:3] == ("alpha", "running") and w.cs.brief(b[:5])[1:] == ("beta", "created", 0)
        monkeypatch.undo()
        await w.cs.kill(a)
        await w.settle()

    run(world, t)


def test_brief_and_state_of_read_a_row_once_and_never_show_a_stale_state(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """stats asks brief() then state_of() for each container: kept in memory until our next write, which
    every state change is (an exit, a write not through the service, a rename, a removal); a read inside a
    transaction is not kept (its rollback would leave the rolled-back state)."""
    reads: list[str] = []
    query_one, query = world.db.query_one, world.db.query

    def counted_one(sql: str, params: Any = ()) -> Any:
        reads.append(sql)
        return query_one(sql, params)

    def counted(sql: str, params: Any = ()) -> Any:
        reads.append(sql)
        return query(sql, params)

    monkeypatch.setattr(world.db, "query_one", counted_one)
    monkeypatch.setattr(world.db, "query", counted)

    async def t(w: World) -> None:
        a, b = await w.run(), await w.run()
        pid = w.cs.get(a).pid
        reads.clear()
        assert w.cs.brief(a)[2:] == ("running", pid) and len(reads) == 1
        assert w.cs.brief(a)[2:] == ("running", pid) and w.cs.state_of(a) == ("running", pid)
        assert len(reads) == 1, "a second read of an unchanged row went to the database"
        w.runtime.exit(a, 3)  # exits by itself: the monitor's write
        await w.settle()
        assert w.cs.state_of(a) == ("exited", 0) and w.cs.brief(a)[2:] == ("exited", 0)
        w.db.execute("UPDATE containers SET state='paused' WHERE id=?", (b,))  # ours, not through the service
        assert w.cs.brief(b)[2] == "paused" and w.cs.state_of(b)[0] == "paused"  # type: ignore[index]
        w.db.execute("UPDATE containers SET state='running' WHERE id=?", (b,))
        assert w.cs.state_of(b)[0] == "running"  # type: ignore[index]
        await w.cs.rename(b, "renamed")
        assert w.cs.brief(b)[1] == "renamed"
        with pytest.raises(RuntimeError), w.db.tx() as c:  # rolled back: its state must not stay
            c.execute("UPDATE containers SET state='dead' WHERE id=?", (b,))
            assert w.cs.brief(b)[2] == "dead" and w.cs.state_of(b)[0] == "dead"  # type: ignore[index]
            raise RuntimeError("roll back")
        assert w.cs.brief(b)[2] == "running" and w.cs.state_of(b)[0] == "running"  # type: ignore[index]
        # The list's rows serve as they are while nothing was written since: stats' first asks read nothing.
        w.cs.list(all_=True)
        reads.clear()
        assert [w.cs.brief(x)[2] for x in (a, b)] == ["exited", "running"] and reads == []
        assert w.cs.brief(b[:12])[0] == b and w.cs.brief("renamed")[0] == b and reads == []  # the CLI's short ids
        await w.cs.remove(a)
        with pytest.raises(NotFound):
            w.cs.brief(a)
        assert w.cs.state_of(a) is None
        await w.cs.kill(b)
        await w.settle()
        assert w.cs.state_of(b) == ("exited", 0)

    run(world, t)


def test_a_removal_is_answered_without_waiting_for_an_fsync(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row's DELETE (and the volume refs') of a stopped container's removal is committed without the
    fsync: the answer waited 9-11 ms for it at load. A killed daemon still finds it removed (the WAL is in
    the page cache); what a power loss leaves, recover and the sweep finish (tests/integration/
    test_removal_unsynced.py)."""
    async def t(w: World) -> None:
        cid = await w.run(AutoRemove=False)
        w.runtime.exit(cid, 0)
        await w.settle()
        synced: list[str] = []
        real_tx = w.db.tx

        def tx(durable: bool = True) -> Any:
            if durable:
                synced.append("a durable commit")
            return real_tx(durable)

        monkeypatch.setattr(w.db, "tx", tx)
        await w.cs.remove(cid)
        with pytest.raises(NotFound):
            w.cs.get(cid)
        assert synced == []

    run(world, t)


def test_recover_finishes_a_removal_whose_dirs_went_and_row_did_not(world: World) -> None:
    """After a power loss, the dirs' renames into the trash may have reached the disk and the row's DELETE
    not (committed without the fsync): the row cannot start again, so it is removed, not shown broken."""
    import shutil

    async def t(w: World) -> None:
        created = (await w.cs.create(create_request({"Image": "busybox"}), name="half"))["Id"]
        earlier_boot = await w.run()
        kept = await w.run()
        w.runtime.procs[earlier_boot].running = False  # a reboot: nothing of it runs
        w.db.execute("UPDATE containers SET boot_id='an-earlier-boot' WHERE id=?", (earlier_boot,))
        for cid in (created, earlier_boot, kept):
            shutil.rmtree(w.cs.container_dir(cid))
        await w.cs.recover()
        for cid in (created, earlier_boot):
            with pytest.raises(NotFound):
                w.cs.get(cid)
        # One of this boot that runs is not ours to kill, whatever happened to its dir.
        assert w.cs.get(kept).state == "running"
        assert (await w.cs.create(create_request({"Image": "busybox"}), name="half"))["Id"]


def test_a_warm_stats_answer_and_a_list_decoding_its_rows_run_no_import_statement(world: World) -> None:
    """A `from ... import` statement costs 5-8 µs each time it runs here (Python 3.11): the lazy imports (msgspec
    not at daemon start) are made once, not in each of `docker stats`' 500 answers or each row of the first list
    after 500 starts."""
    import builtins

    from dockyard.api.containers import ContainerRoutes
    from dockyard.http.messages import Request
    from dockyard.services.container_resources import ContainerResources

    routes = ContainerRoutes(world.cs, None, None, ContainerResources(world.cs), None, None)  # type: ignore[arg-type]
    imported: list[str] = []
    real_import = builtins.__import__

    def counted(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(f"{name} {sys._getframe(1).f_code.co_filename}:{sys._getframe(1).f_lineno}")
        return real_import(name, *args, **kwargs)

    async def answer(cid: str) -> bytes:
        req = Request("GET", f"/containers/{cid}/stats", query={"stream": ["0"]}, params={"id": cid[:12]})
        resp = await routes.container_stats(req)
        assert resp.status == 200 and isinstance(resp.body, bytes)
        return resp.body

    async def t(w: World) -> None:
        a = await w.run()
        assert b'"cpu_stats"' in await answer(a)  # the first answer imports what stats need
        b = await w.run()  # new rows: the next list decodes them
        builtins.__import__ = counted
        try:
            body = await answer(b)
            listed = w.cs.list_json()
        finally:
            builtins.__import__ = real_import
        assert imported == [], f"import statements run: {imported}"
        assert b'"precpu_stats"' in body and b in listed.decode()

    run(world, t)


def test_a_create_answers_after_its_fsync_which_holds_no_other_request(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The create's INSERT is durable before the answer (a client holding the id finds the container after
    a power loss), but its fsync ran on the loop inside the COMMIT: 1-23 ms at load in which no other
    request was answered. Here every fsync (a durable commit's, or Database.sync's) is held until the
    test lets it go: the loop answers meanwhile, and the create's answer waits for it."""
    import contextlib
    import threading

    held, release, left = threading.Event(), threading.Event(), threading.Event()
    on_loop_thread: list[bool] = []

    def hold() -> None:
        on_loop_thread.append(threading.current_thread() is threading.main_thread())
        held.set()
        release.wait(3)  # on the loop's thread, nothing can let it go: it ends at the timeout
        left.set()

    real_tx, real_sync = world.db.tx, getattr(world.db, "sync", None)

    @contextlib.contextmanager
    def tx(durable: bool = True) -> Iterator[sqlite3.Connection]:
        with real_tx(durable) as c:
            yield c
        if durable:
            hold()

    def sync() -> None:
        hold()
        if real_sync is not None:
            real_sync()

    monkeypatch.setattr(world.db, "tx", tx)
    monkeypatch.setattr(world.db, "sync", sync, raising=False)

    async def t(w: World) -> None:
        creating = asyncio.ensure_future(w.cs.create(create_request({"Image": "busybox"}), name="held"))
        while not held.is_set():
            await asyncio.sleep(0.001)
        assert not left.is_set(), "no request was answered while the create's fsync ran"
        assert [e.c.name for e in w.cs._listed()] == ["held"]  # the loop answers meanwhile
        await asyncio.sleep(0.01)
        assert not creating.done()  # the answer waits for the fsync
        release.set()
        cid = (await creating)["Id"]
        assert on_loop_thread == [False]
        assert w.actions(cid) == ["create"]
        other = sqlite3.connect(w.db.path)
        assert other.execute("SELECT name FROM containers WHERE id=?", (cid,)).fetchall() == [("held",)]
        other.close()

    run(world, t)


def test_a_create_whose_fsync_failed_leaves_no_container(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row was committed before its fsync failed: the create undoes it, as a failed commit did."""
    def sync() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(world.db, "sync", sync)

    async def t(w: World) -> None:
        with pytest.raises(OSError):
            await w.cs.create(create_request({"Image": "busybox"}), name="lost")
        with pytest.raises(NotFound):
            w.cs.get("lost")
        assert "create" not in [e.get("Action") for e in w.events._history]
        assert not list((w.cs.data_root / "containers").iterdir())

    run(world, t)
