"""Docker's detach keys (`--detach-keys`, ctrl-p ctrl-q unless said): the parser and the matcher that
both the CLI (on the terminal's input) and the daemon (on an attach or exec connection) use."""

from __future__ import annotations

DEFAULT = b"\x10\x11"  # ctrl-p ctrl-q
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse(spec: str | None) -> bytes:
    """Comma-separated `ctrl-<x>` or single characters, as moby's term.ToBytes reads them; ValueError
    naming the part it cannot read (each side words its own error)."""
    if not spec:
        return DEFAULT
    out = bytearray()
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            ch = part[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in _CTRL:
                out.append(_CTRL[ch])
            else:
                raise ValueError(part)
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise ValueError(part)
    return bytes(out)


class Matcher:
    """Watches input for the detach sequence across reads: the bytes of a partial match are held back,
    and passed on when the match fails."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> bytes | None:
        """The bytes to pass on, or None when the sequence is complete (the session detaches; what
        came with it in this read is dropped)."""
        if not self.keys:
            return data
        out = bytearray()
        for b in data:
            if b == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    return None
                continue
            if self.matched:
                out += self.keys[:self.matched]
                self.matched = 0
            out.append(b)
        return bytes(out)
