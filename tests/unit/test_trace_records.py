"""The trace recorder: records per object in bounded rings, errors recorded and re-raised, watchers
see records in order with marks after them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dockyard import trace


@pytest.fixture(autouse=True)
def fresh() -> None:
    with trace._lock:
        trace._rings.clear()
        trace._total = 0


def test_steps_are_about_the_current_object_and_carry_the_result() -> None:
    with trace.about("container:abc123"), trace.step("mount", "mount x", "why x") as s:
        s.result = "mount(2) = 0"
    trace.seen("cgroup", "write pids.max = 5", "reads back 5")
    (rec,) = trace.records("abc1")
    assert (rec.obj, rec.op, rec.result, rec.why, rec.ok) == ("container:abc123", "mount x", "mount(2) = 0", "why x", True)
    assert rec.dur_ms is not None and rec.dur_ms >= 0
    assert [r.obj for r in trace.records("daemon")] == ["daemon"]
    assert rec.to_json()["Kind"] == "container" and rec.to_json()["ID"] == "abc123"


def test_a_failed_step_is_recorded_and_the_error_goes_on() -> None:
    with pytest.raises(OSError), trace.about("network:n1"), trace.step("link", "ip link add br0"):
        raise OSError(17, "File exists")
    (rec,) = trace.records("network:n1")
    assert not rec.ok and "File exists" in rec.result


def test_rings_are_bounded_and_dropped_with_their_object() -> None:
    with trace.about("container:x"):
        for i in range(trace.RING + 10):
            trace.seen("file", f"write {i}", "ok")
    recs = trace.records("container:x")
    assert len(recs) == trace.RING and recs[0].op == "write 10"
    trace.drop("container:x")
    assert trace.records("container:x") == []


def test_the_about_object_follows_threads_started_with_a_copied_context() -> None:
    async def main() -> None:
        with trace.about("volume:v"):
            await asyncio.to_thread(trace.seen, "file", "mkdir v", "ok")
    asyncio.run(main())
    assert [r.op for r in trace.records("volume:v")] == ["mkdir v"]


def test_watchers_get_records_from_any_thread_in_order_then_the_mark() -> None:
    async def main() -> list[str]:
        w = trace.watch()
        try:
            t = threading.Thread(target=lambda: [trace.seen("file", f"op{i}", "ok") for i in range(3)])
            t.start()
            t.join()
            w.mark()
            got = []
            while (item := await w.queue.get()) is not None:
                got.append(item.op)
            return got
        finally:
            w.close()
    assert asyncio.run(main()) == ["op0", "op1", "op2"]
    assert trace.watchers() == []


def test_all_rings_together_are_bounded_by_dropping_the_least_recent_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "TOTAL", 10)
    for i in range(6):
        with trace.about(f"container:c{i}"):
            trace.seen("file", "a", "ok")
            trace.seen("file", "b", "ok")
    with trace.about("container:c1"):
        trace.seen("file", "c", "ok")  # c1 is now the most recent
    kept = {r.obj for r in trace.records()}
    assert len(trace.records()) <= 10 and "container:c1" in kept and "container:c0" not in kept
    assert trace._total == len(trace.records())
    trace.drop("container:c1")
    assert trace._total == len(trace.records())


def test_the_renderer_groups_by_object_shortens_ids_and_says_each_why_once() -> None:
    import io

    from dockyard.cli.trace import Renderer

    cid = "ab" * 32
    recs = []
    for op in ("ip link add veth1", "ip link add veth2"):
        with trace.about(f"container:{cid}"), trace.step("link", f"{op} netns /run/netns/{cid}", "a cable") as s:
            s.result = "ifindex 7"
        recs.append(trace.records(cid)[-1].to_json())
    with pytest.raises(OSError), trace.about("network:n1"), trace.step("link", "ip link add br0", "a switch"):
        raise OSError(17, "File exists")
    recs.append(trace.records("network:n1")[-1].to_json())
    out = io.StringIO()
    r = Renderer(out, color=False)
    for rec in recs:
        r.record(rec)
    text = out.getvalue()
    assert text.count(f"── container {cid[:12]}\n") == 1 and "── network n1" in text
    assert cid not in text and f"/run/netns/{cid[:12]}" in text
    assert text.count("why: a cable") == 1 and "→ failed: [Errno 17] File exists" in text and "\x1b[" not in text
    coloured = io.StringIO()
    Renderer(coloured, color=True).record(recs[-1])
    assert "\x1b[31m" in coloured.getvalue()  # a failed step in red
