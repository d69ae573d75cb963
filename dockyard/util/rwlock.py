"""A lock with a shared mode: many holders at once, or one exclusive holder.

The image store's GC lock: a commit (a build step's layer, `docker commit`) holds it shared from
writing its layer to registering the image that names it, so that no GC runs in between; GC (image
delete, prune, load, import) holds it exclusively. Commits need not wait for each other: twenty build
stages committing at once overlap their fsyncs instead of queueing behind one lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import TracebackType


class SharedLock:
    """`with lock:` is exclusive, `with lock.shared():` shared. Both are reentrant in a thread, and the
    exclusive holder may take it shared too (it already excludes everyone). A thread holding it only
    shared may not take it exclusively (two such threads would wait for each other): RuntimeError.
    Waiting exclusive takers go before new shared ones, so a stream of commits cannot starve GC."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None  # the exclusive holder's thread
        self._depth = 0  # its exclusive and shared holds
        self._shared: dict[int, int] = {}  # thread -> shared holds (exclusive holder excluded)
        self._waiting = 0  # exclusive takers waiting

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if me in self._shared:
                raise RuntimeError("a shared holder cannot take the lock exclusively")
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._owner is None and not self._shared)
            finally:
                self._waiting -= 1
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a lock not held exclusively by this thread")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                mine = False
            else:
                if me not in self._shared:
                    self._cond.wait_for(lambda: self._owner is None and not self._waiting)
                self._shared[me] = self._shared.get(me, 0) + 1
                mine = True
        try:
            yield
        finally:
            with self._cond:
                if not mine:
                    self._depth -= 1  # still exclusive: the outer hold goes on
                else:
                    self._shared[me] -= 1
                    if not self._shared[me]:
                        del self._shared[me]
                        self._cond.notify_all()
