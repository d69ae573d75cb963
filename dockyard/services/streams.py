"""Bridging blocking writers (tarfile, file copies) to async byte streams without buffering it all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

_CHUNK = 256 * 1024


class _QueueWriter:
    """A write-only file object handing chunks to an asyncio queue; blocks when the reader lags."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue[bytes | BaseException | None]) -> None:
        self._loop, self._q = loop, q
        self._buf = bytearray()
        self.cancelled = threading.Event()

    def write(self, data: bytes) -> int:
        if self.cancelled.is_set():
            raise BrokenPipeError("reader went away")
        self._buf += data
        if len(self._buf) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            chunk, self._buf = bytes(self._buf), bytearray()
            asyncio.run_coroutine_threadsafe(self._q.put(chunk), self._loop).result()

    def tell(self) -> int:  # tarfile asks in stream mode only for bookkeeping
        return 0


async def stream_from_thread(produce: Callable[[BinaryIO], Any]) -> AsyncIterator[bytes]:
    """Run `produce(fileobj)` in a thread; yield what it writes, chunk by chunk."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=8)
    w = _QueueWriter(loop, q)

    def run() -> None:
        try:
            produce(w)  # type: ignore[arg-type]
            w.flush()
            asyncio.run_coroutine_threadsafe(q.put(None), loop).result()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            if not w.cancelled.is_set():
                asyncio.run_coroutine_threadsafe(q.put(e), loop).result()

    fut = loop.run_in_executor(None, run)
    try:
        while True:
            item = await q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        w.cancelled.set()
        while not q.empty():
            q.get_nowait()
        if not fut.done():
            # Unblock a writer waiting on a full queue.
            while not fut.done():
                try:
                    q.get_nowait()
                except asyncio.QueueEmpty:
                    await asyncio.sleep(0.01)


class AsyncByteReader:
    """A blocking file-like `read()` over an async byte iterator, for code running in a thread."""

    def __init__(self, it: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._it, self._loop = it, loop
        self._buf = b""
        self._eof = False

    def _next(self) -> bytes | None:
        async def nxt() -> bytes | None:
            try:
                return await self._it.__anext__()
            except StopAsyncIteration:
                return None

        return asyncio.run_coroutine_threadsafe(nxt(), self._loop).result()

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = self._next()
            if chunk is None:
                self._eof = True
                break
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out
