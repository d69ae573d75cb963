"""RUN --mount options: BuildKit's defaults and error words (instructions/commands_runmount.go)."""

from __future__ import annotations

import pytest

from dockyard.dockerfile.mounts import parse_mount
from dockyard.dockerfile.parser import ParseError, expand_word, parse


def test_defaults_per_type() -> None:
    b = parse_mount("target=/x", 1)
    assert (b.type, b.readonly) == ("bind", True)
    c = parse_mount("type=cache,target=/root/.cache/", 1)
    assert (c.id, c.readonly, c.mode, c.sharing) == ("/root/.cache", False, 0o755, "shared")
    s = parse_mount("type=secret,id=tok", 1)
    assert (s.target, s.mode, s.required) == ("/run/secrets/tok", 0o400, False)
    s2 = parse_mount("type=secret,target=/etc/key,required", 1)
    assert (s2.id, s2.required) == ("key", True)
    t = parse_mount("type=tmpfs,dst=/t,size=64m", 1)
    assert (t.readonly, t.size) == (False, 64 << 20)
    assert parse_mount("type=bind,target=/x,rw", 1).readonly is False


def test_options_expand() -> None:
    m = parse_mount("type=cache,target=${T:-/c},id=${ID:+x}", 1, lambda v: expand_word(v, {"ID": "1"}))
    assert (m.target, m.id) == ("/c", "x")


@pytest.mark.parametrize(("spec", "msg"), [
    ("type=tmpfs,target=/t,uid=1", 'uid not allowed for "tmpfs" type mounts'),
    ("type=bind,target=/t,required", "unexpected key 'required' for mount type 'bind'"),
    ("type=cache,target=/t,mode=9", "invalid value 9 for mode"),
    ("type=bind,target=/t,sharing=locked", "invalid cache sharing set for bind mount"),
    ("type=secret,id=a,source=b", "both source and id can't be set"),
    ("type=cache", "mount type cache requires a target"),
    ("type=bind,target=/t,ro=maybe", "invalid value for ro: maybe"),
])
def test_errors_name_the_line(spec: str, msg: str) -> None:
    with pytest.raises(ParseError) as e:
        parse_mount(spec, 7)
    assert e.value.message == f"Dockerfile parse error line 7: {msg}"


def test_flags_repeat_and_unknown_ones_fail() -> None:
    df = parse("FROM a\nRUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/b --network=none true\n")
    inst = df.stages[0].instructions[0]
    assert inst.multi["mount"] == ["type=cache,target=/a", "type=tmpfs,target=/b"] and inst.rest == "true"
    with pytest.raises(ParseError, match="line 2: Unknown flag: frob"):
        parse("FROM a\nRUN --frob true\n")
    with pytest.raises(ParseError, match="line 2: Duplicate flag specified: from"):
        parse("FROM a\nCOPY --from=a --from=b x y\n")


def test_directives_as_buildkit() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# check=skip=all;error=true\nFROM a\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all;error=true"}
    # an unknown directive is a comment and ends the directives: the escape after it is a comment too
    df = parse("# frob=1\n# escape=`\nFROM a\n")
    assert df.escape == "\\" and df.directives == {}


def test_symbolic_chmod() -> None:
    from dockyard.builder.context import parse_chmod

    assert parse_chmod("755")(0o100600, False) == 0o755
    assert parse_chmod("4755")(0o600, False) == 0o755  # BuildKit loses the special bits
    assert parse_chmod("u+x,g-r,o=")(0o644, False) == 0o700
    assert parse_chmod("a+X")(0o644, False) == 0o644 and parse_chmod("a+X")(0o644, True) == 0o755
    assert parse_chmod("go=u")(0o640, False) == 0o666
    assert parse_chmod("+x")(0o600, False) == 0o711
    for bad in ("u+q", "9", "z=r", ""):
        with pytest.raises(Exception, match="invalid chmod parameter"):
            parse_chmod(bad)
