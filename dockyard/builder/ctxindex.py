"""The build context as it streams in: indexed on the way, so the COPY cache keys come from the
index, and either spooled to disk as a tar (extracted only if some step misses) or, with
`extract_to`, extracted as it arrives by a thread of its own: each byte is then written once
(the context's files) instead of twice (the spool, then the files), and read back never.

The index hashes each regular file's bytes as they pass (memoised across builds by the tar
header's name, size, mtime, mode and owner, so an unchanged rebuild never rehashes) and
reproduces `context.hash_sources` of the extracted context exactly. Anything it does not model
the way the extraction would (symlinks on a source path, whiteout names, repeated names,
missing parent entries, hard links, special files) makes it answer None: the caller then
extracts the context and works on disk, as before.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import posixpath
import queue
import stat
import tarfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dockyard.builder import context as bctx
from dockyard.store.layers import apply_layer, decompressed

_CHUNK = 1 << 20
_KEEP = 1 << 20  # keep the bytes of small files the build reads itself (the Dockerfile)
ROOT_MODE = 0o755  # the context root's mode when the tar has no "./" entry (extract_context sets it)


@dataclass
class Entry:
    kind: str  # "reg", "dir", "sym"
    mode: int  # permission bits (stat.S_IMODE)
    digest: bytes = b""  # sha256 of a regular file's bytes
    link: str = ""
    children: list[str] = field(default_factory=list)


RACY_SLACK = 2.0  # seconds: tar mtimes are whole seconds, and a client reads a file a little early


class HashMemo:
    """(name, size, mtime, mode, uid, gid) -> content sha256, shared by builds; bounded.

    Racy files (git's term): a file rewritten within the same second keeps its header, so a hash
    is reused only if the file's mtime was already RACY_SLACK older than the start of the build
    that hashed it; anything younger is hashed again. (Assumes the client's clock is not behind
    the daemon's by more than that.)
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._d: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            v = self._d.get(key)
            if v is None:
                return None
            self._d.move_to_end(key)
            return v

    def put(self, key: tuple[Any, ...], v: bytes, mtime: float, started: float) -> None:
        """Remember a hash made by a build that started at `started` (never a racy one)."""
        if mtime + 1 + RACY_SLACK > started:
            return
        with self._lock:
            self._d[key] = v
            while len(self._d) > self.limit:
                self._d.popitem(last=False)


class _Tee(io.RawIOBase):
    """Chunks from a queue (None ends them) read as a stream, each also written to `out`."""

    def __init__(self, q: queue.Queue[bytes | None], out: IO[bytes] | _Extractor) -> None:
        self.q, self.out = q, out
        self.buf = memoryview(b"")
        self.eof = False
        self.failed: OSError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buf and not self.eof:
            chunk = self.q.get()
            if chunk is None:
                self.eof = True
            else:
                try:
                    self.out.write(chunk)
                except OSError as e:
                    self.failed = e
                    raise
                self.buf = memoryview(chunk)
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

    def drain(self) -> None:
        while not self.eof:
            self.buf = memoryview(b"")
            self.readinto(bytearray(1))


class _QueueReader(io.RawIOBase):
    """Chunks from a queue (None ends them) as a raw stream. Thread-safe: apply_layer's reader
    thread may still be in a read when the extraction fails and `drain` empties the queue."""

    def __init__(self, q: queue.Queue[bytes | None]) -> None:
        self.q = q
        self.buf = memoryview(b"")
        self.eof = False
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        with self._lock:
            while not self.buf and not self.eof:
                chunk = self.q.get()
                if chunk is None:
                    self.eof = True
                else:
                    self.buf = memoryview(chunk)
            n = min(len(b), len(self.buf))
            b[:n] = self.buf[:n]
            self.buf = self.buf[n:]
            return n

    def drain(self) -> None:
        with self._lock:
            while not self.eof:
                self.eof = self.q.get() is None
            self.buf = memoryview(b"")


class _Extractor:
    """The context tar's chunks extracted into `dest` as they come (by `apply_layer`, with its
    checks: no escapes, no device nodes) on a thread of its own; `join` waits and raises what the
    extraction raised. A plain tar that stops after its last file's data (docker's CLI sends such
    with `build -f- DIR`) gets its padding and end blocks, as `context.extract_context` adds them."""

    _DEPTH = 16  # chunks in flight (the index's queue holds as many more)

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        dest.mkdir(parents=True, exist_ok=True)
        os.chmod(dest, 0o755)  # not the umask's: the root's mode is hashed (a "./" entry overrides it)
        self.q: queue.Queue[bytes | None] = queue.Queue(self._DEPTH)
        self.size = 0
        self.head = b""  # the first block: a plain tar or not
        self.error: BaseException | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="build-context-extract", daemon=True)
        self._thread.start()

    def write(self, chunk: bytes) -> None:
        if len(self.head) < 512:
            self.head += chunk[:512 - len(self.head)]
        self.size += len(chunk)
        self.q.put(chunk)

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self.size and self.head[257:262] == b"ustar":
            self.q.put(b"\0" * (-self.size % 512 + 1024))  # zero blocks after a proper end change nothing
        self.q.put(None)

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        reader = _QueueReader(self.q)
        try:
            first = self.q.get()
            if first is None:
                reader.eof = True
                return  # an empty context: an empty dir
            reader.buf = memoryview(first)
            apply_layer(reader, self.dest, hashed=False)  # type: ignore[arg-type]  # a raw stream will do
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.error = e
        finally:
            reader.drain()  # the feeder must never block on a queue nobody reads


class ContextIndex:
    """Feed it the context's chunks (`put`), then `finish()`; afterwards `usable` says whether
    `sources`/`hash` can answer, and the tar is at `tar_path` for extraction, or (with
    `extract_to`) its files are in that dir once `extracted()` returns."""

    def __init__(self, tar_path: Path, memo: HashMemo, keep: set[str] = frozenset(),  # type: ignore[assignment]
                 started: float | None = None, extract_to: Path | None = None) -> None:
        self.tar_path = tar_path
        self.extractor = _Extractor(extract_to) if extract_to is not None else None
        self.started = time.time() if started is None else started
        self.memo = memo
        self.keep = {_norm(k) for k in keep}
        self.kept: dict[str, bytes] = {}
        self.entries: dict[str, Entry] = {"": Entry("dir", ROOT_MODE)}
        self.usable = True
        self.error: BaseException | None = None
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=64)  # backpressure: never the whole context
        self._thread = threading.Thread(target=self._consume, name="build-context", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ feeding (event loop side)
    def put_nowait(self, chunk: bytes | None) -> bool:
        try:
            self.q.put_nowait(chunk)
            return True
        except queue.Full:
            return False

    def put(self, chunk: bytes | None) -> None:
        self.q.put(chunk)

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error

    def extracted(self) -> None:
        """Wait for the extraction into `extract_to` to finish; raises what it raised."""
        assert self.extractor is not None
        self._thread.join()
        self.extractor.join()

    # ------------------------------------------------------------ the worker thread
    def _consume(self) -> None:
        tee: _Tee | None = None
        try:
            with contextlib.ExitStack() as stack:
                out = self.extractor if self.extractor is not None else stack.enter_context(open(self.tar_path, "wb"))
                tee = _Tee(self.q, out)
                try:
                    self._index(tee)
                except (tarfile.TarError, OSError, EOFError, ValueError, LookupError):
                    if tee.failed is not None:
                        raise tee.failed from None  # the spool itself failed (disk full)
                    self.usable = False  # the extraction reports what is wrong with the tar
                    self.kept.clear()
                tee.drain()
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.error = e
            if tee is None or not tee.eof:
                while self.q.get() is not None:  # discard the rest: the producer must never block
                    pass
        finally:
            if self.extractor is not None:
                self.extractor.end()

    def _index(self, tee: _Tee) -> None:
        raw = io.BufferedReader(tee, _CHUNK)
        if not raw.peek(1):
            self.usable = False  # empty context: let the extraction path handle it
            return
        stream = decompressed(raw)
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for m in tf:
                if not self.usable:
                    continue  # keep reading: the spool must be complete
                self._add(tf, m)

    def _add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        name = _norm(m.name)
        if name is None or m.name.startswith("/"):
            self.usable = False
            return
        mode = m.mode & 0o7777
        if name == "":
            if m.isdir():
                self.entries[""].mode = mode
            else:
                self.usable = False
            return
        parent, _, base = name.rpartition("/")
        p = self.entries.get(parent)
        if (p is None or p.kind != "dir" or name in self.entries or base.startswith(".wh.")
                or base == ".wh..wh..opq"):
            self.usable = False
            return
        if m.isdir():
            e = Entry("dir", mode)
        elif m.issym():
            e = Entry("sym", 0o777, link=m.linkname)
        elif m.isreg() and not m.issparse():
            e = Entry("reg", mode, digest=self._digest(tf, m, name))
        else:
            self.usable = False
            return
        self.entries[name] = e
        p.children.append(base)

    def _digest(self, tf: tarfile.TarFile, m: tarfile.TarInfo, name: str) -> bytes:
        key = (name, m.size, m.mtime, m.mode, m.uid, m.gid)
        keep = name in self.keep and m.size <= _KEEP
        hit = self.memo.get(key)
        if hit is not None and not keep:
            return hit  # tarfile skips the unread bytes (still spooled by the tee)
        f = tf.extractfile(m)
        assert f is not None
        h = hashlib.sha256()
        data = bytearray()
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if keep:
                data += chunk
        if keep:
            self.kept[name] = bytes(data)
        d = h.digest()
        self.memo.put(key, d, float(m.mtime), self.started)
        return d

    # ------------------------------------------------------------ queries (after join)
    def file_bytes(self, name: str) -> bytes | None:
        """A small regular file's bytes (one named in `keep`), if reachable without symlinks."""
        n = _norm(name)
        return self.kept.get(n) if self.usable and n is not None else None

    def sources(self, src: str) -> list[str] | None:
        """What `context.context_sources` would return for `src`, as index names; None when
        only the extracted context can tell (or the answer is an error)."""
        if not self.usable:
            return None
        rel = posixpath.normpath(src)
        if rel == ".." or rel.startswith("../") or src.startswith(".."):
            return None
        rel = posixpath.normpath("/" + src.lstrip("/")).lstrip("/")
        if not any(c in rel for c in "*?["):
            e = self.entries.get(rel)
            if e is None or e.kind == "sym" or not self._plain_path(rel):
                return None
            return [rel]
        pat = rel.split("/")
        out: list[str] = []

        def match(d: str, i: int) -> None:
            for base in sorted(self.entries[d].children):
                if fnmatch.fnmatchcase(base, pat[i]):
                    n = f"{d}/{base}" if d else base
                    if i == len(pat) - 1:
                        out.append(n)
                    elif self.entries[n].kind == "dir":
                        match(n, i + 1)

        match("", 0)
        if not out or any(self.entries[n].kind == "sym" for n in out):
            return None  # an error or a link the extraction must resolve
        return sorted(set(out), key=lambda n: n.split("/"))

    def _plain_path(self, rel: str) -> bool:
        """Every component of rel is a real directory (or the final entry), no symlinks."""
        parts = rel.split("/") if rel else []
        for i in range(1, len(parts)):
            e = self.entries.get("/".join(parts[:i]))
            if e is None or e.kind != "dir":
                return False
        return True

    def remove(self, name: str) -> None:
        """Forget a file of the context (the Dockerfile or .dockerignore the daemon drops)."""
        n = _norm(name)
        e = self.entries.get(n) if n else None
        if n is None or e is None or e.kind == "dir":
            return
        del self.entries[n]
        parent, _, base = n.rpartition("/")
        self.entries[parent].children.remove(base)
        self.kept.pop(n, None)

    def is_dir(self, name: str) -> bool:
        return self.entries[name].kind == "dir"

    def feed(self, h: Any, name: str) -> None:
        """Hash the source `name` exactly as `context.hash_sources` hashes its extracted copy."""
        top = "context" if name == "" else name.rpartition("/")[2]
        h.update(b"\0top\0" + top.encode())
        e = self.entries[name]
        if e.kind != "dir":
            self._entry(h, ".", e)
            return
        self._entry(h, ".", e)
        self._walk(h, name, "")

    def file_digests(self, names: list[str], limit: int = 5000) -> dict[str, str] | None:
        """path -> a short digest of each file below the sources `names` (a link's target, a dir's
        mode), for telling which file changed; None when there are more than `limit`."""
        out: dict[str, str] = {}
        todo = list(names)
        while todo:
            n = todo.pop()
            e = self.entries[n]
            out[n or "."] = e.digest.hex()[:16] if e.kind == "reg" else "-> " + e.link if e.kind == "sym" else \
                f"dir {e.mode:o}"
            if len(out) > limit:
                return None
            if e.kind == "dir":
                todo += [_join(n, k) for k in e.children]
        return out

    def _walk(self, h: Any, name: str, rel: str) -> None:
        e = self.entries[name]
        kids = sorted(e.children)
        subdirs = [k for k in kids if self.entries[_join(name, k)].kind == "dir"]
        for k in kids:
            if k not in subdirs:
                self._entry(h, _join(rel, k), self.entries[_join(name, k)])
        for k in subdirs:
            self._entry(h, _join(rel, k), self.entries[_join(name, k)])
        for k in subdirs:
            self._walk(h, _join(name, k), _join(rel, k))

    @staticmethod
    def _entry(h: Any, rel: str, e: Entry) -> None:
        fmt = {"reg": stat.S_IFREG, "dir": stat.S_IFDIR, "sym": stat.S_IFLNK}[e.kind]
        h.update(f"\0{rel}\0{e.mode:o}\0{fmt:o}\0".encode())
        if e.kind == "sym":
            h.update(e.link.encode())
        elif e.kind == "reg":
            h.update(e.digest)


def hash_mixed(index: ContextIndex | None, names: list[str], disk: list[Path], extra: str) -> str:
    """The cache hash of index sources followed by on-disk sources (heredoc files)."""
    h = hashlib.sha256(extra.encode())
    for n in names:
        assert index is not None
        index.feed(h, n)
    for p in disk:
        bctx.feed_path(h, p)
    return h.hexdigest()


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


def _norm(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)
