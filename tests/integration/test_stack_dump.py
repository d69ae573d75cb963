"""SIGUSR1 makes the daemon write every thread's and every asyncio task's stack to its log, and it goes
on serving (issue 25: a hung daemon must be able to say where it waits). Without the handler, SIGUSR1's
default action ends the daemon."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from tests.conftest import own_daemon


def test_sigusr1_dumps_threads_and_tasks_and_the_daemon_goes_on() -> None:
    with own_daemon("dy-stacks-", busybox=False) as d:
        assert d.proc is not None
        # Something to wait in the loop: an events stream held open by a client.
        ready = threading.Event()

        def follow_events() -> None:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.sock)), timeout=None) as c:
                try:
                    with c.stream("GET", "http://d/events") as r:
                        ready.set()
                        for _ in r.iter_bytes():
                            return
                except httpx.HTTPError:
                    return  # the daemon went away (the test failed before the stream ended)

        t = threading.Thread(target=follow_events, daemon=True)
        t.start()
        assert ready.wait(30)
        before = d.log.stat().st_size
        os.kill(d.proc.pid, signal.SIGUSR1)
        text, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(d.log) as f:
                f.seek(before)
                text = f.read()
            if "asyncio tasks" in text and "in _read" in text:
                break
            time.sleep(0.1)
        assert "SIGUSR1: the stacks of every thread and asyncio task follow" in text
        assert "--- thread MainThread" in text  # the loop's thread, by name
        assert "Current thread" in text or "Thread 0x" in text  # faulthandler's raw dump came first
        # the events stream's task, down to where it waits: the event bus's subscription
        assert "awaiting (outermost first)" in text and "in _read" in text
        with d.api() as c:
            assert c.get("/_ping").status_code == 200
            c.post("/networks/create", json={"Name": "wake-events"})  # an event ends the stream
            c.delete("/networks/wake-events")
        t.join(30)
        assert d.proc.poll() is None
