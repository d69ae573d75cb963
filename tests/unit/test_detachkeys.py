"""Detach keys, read and watched for once (util/detachkeys) by the CLI and the daemon."""

from __future__ import annotations

import pytest

from dockyard.cli.stdio import parse_detach_keys as cli_parse
from dockyard.errors import InvalidParameter
from dockyard.services.attach import parse_detach_keys as daemon_parse
from dockyard.util import detachkeys


def test_both_sides_read_the_same_keys_and_word_their_own_refusals() -> None:
    for spec, keys in ((None, b"\x10\x11"), ("", b"\x10\x11"), ("ctrl-a,x", b"\x01x"), ("ctrl-@,ctrl-_", b"\x00\x1f"),
                       ("ctrl-Q", b"\x11")):
        assert cli_parse(spec) == daemon_parse(spec) == keys
    for bad in ("ctrl-1", "ctrl-", "abc"):
        with pytest.raises(ValueError, match=rf"Invalid escape keys \({bad}\) provided"):
            cli_parse(bad)
        with pytest.raises(InvalidParameter, match=rf"invalid detach keys \({bad}\) provided"):
            daemon_parse(bad)


def test_the_matcher_holds_a_partial_match_across_reads() -> None:
    m = detachkeys.Matcher(b"\x10\x11")
    assert m.feed(b"ab\x10") == b"ab"  # held back: it may start the sequence
    assert m.feed(b"c") == b"\x10c"  # it did not: passed on
    assert m.feed(b"\x10") == b""
    assert m.feed(b"\x11rest") is None  # complete: detach, the rest of the read dropped
    assert detachkeys.Matcher(b"").feed(b"\x10\x11") == b"\x10\x11"  # no keys: nothing watched
