from __future__ import annotations

import pytest

from dockyard.dockerfile.parser import ParseError, expand_word, expand_words, name_values, parse


def test_stages_meta_args_and_continuations() -> None:
    df = parse(
        "ARG BASE=busybox\n"
        "FROM $BASE AS build\n"
        "RUN echo a \\\n"
        "  # a comment inside\n"
        "\n"
        "    && echo b\n"
        "FROM --platform=linux/amd64 scratch\n"
        "COPY --from=build /a /b\n"
    )
    assert [a.rest for a in df.meta_args] == ["BASE=busybox"]
    assert [(s.name, s.base) for s in df.stages] == [("build", "$BASE"), ("", "scratch")]
    assert df.stages[1].platform == "linux/amd64"
    run = df.stages[0].instructions[0]
    assert run.cmd == "run" and run.rest == "echo a     && echo b" and run.line == 3
    cp = df.stages[1].instructions[0]
    assert cp.flags == {"from": "build"} and cp.rest == "/a /b"
    assert df.stage_index("BUILD") == 0 and df.stage_index("1") == 1 and df.stage_index("x") is None


def test_escape_directive_and_syntax() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN echo a `\n  b\n")
    assert df.escape == "`" and df.directives["syntax"] == "docker/dockerfile:1"
    assert df.stages[0].instructions[0].rest == "echo a   b"
    # a directive after a comment is just a comment
    df2 = parse("# hello\n# escape=`\nFROM busybox\n")
    assert df2.escape == "\\"


def test_json_and_shell_forms() -> None:
    df = parse('FROM busybox\nCMD ["echo", "hi"]\nENTRYPOINT echo hi\nCMD [not json\n')
    cmd, ep, bad = df.stages[0].instructions
    assert cmd.json_args == ["echo", "hi"]
    assert ep.json_args is None
    assert bad.json_args is None and bad.rest == "[not json"


def test_heredocs() -> None:
    df = parse("FROM busybox\nRUN <<EOF\necho $HOME\necho two\nEOF\n"
               "COPY <<-'END' /etc/x\n\tliteral $X\n\tEND\nRUN echo done\n")
    run, cp, run2 = df.stages[0].instructions
    assert run.heredocs[0].content == "echo $HOME\necho two\n" and run.heredocs[0].expand
    assert cp.heredocs[0].content == "literal $X\n" and not cp.heredocs[0].expand
    assert cp.rest == "<<-'END' /etc/x"
    assert run2.line == 9


@pytest.mark.parametrize("text,line,msg", [
    ("FROM busybox\nRUN true\nFOO bar\n", 3, "unknown instruction: FOO"),
    ("RUN true\n", 1, "no build stage in current context"),
    ("FROM a b\n", 1, "FROM requires either one or three arguments"),
    ("FROM busybox\nCOPY onlyone\n", 2, "COPY requires at least two arguments"),
    ("FROM busybox\nSHELL /bin/bash\n", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM busybox\nRUN <<EOF\necho\n", 2, "unterminated heredoc EOF"),
    ("FROM a AS x\nFROM b AS X\n", 2, "duplicate stage name"),
])
def test_errors_have_line_numbers(text: str, line: int, msg: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse(text)
    assert ei.value.line == line
    assert f"Dockerfile parse error line {line}: " in str(ei.value) and msg in str(ei.value)


def test_empty_dockerfile() -> None:
    with pytest.raises(Exception, match="file with no instructions"):
        parse("# only a comment\n\n")


def test_expansion() -> None:
    env = {"A": "one", "E": "", "SP": "x y"}
    assert expand_word("$A-${A}", env) == "one-one"
    assert expand_word("${B:-dflt}", env) == "dflt"
    assert expand_word("${E:-dflt}", env) == "dflt"
    assert expand_word("${E-dflt}", env) == ""
    assert expand_word("${A:+alt}", env) == "alt"
    assert expand_word("${B:+alt}", env) == ""
    assert expand_word("${B:-${A}x}", env) == "onex"
    assert expand_word(r"\$A", env) == "$A"
    assert expand_word("'$A'", env) == "$A"
    assert expand_word('"$A b"', env) == "one b"
    assert expand_word('"a\\"b"', env) == 'a"b'
    assert expand_word("cost$", env) == "cost$"
    assert expand_word("`$A", env, escape="`") == "$A"
    assert expand_words("$SP z", env) == ["x", "y", "z"]
    assert expand_words('"$SP" z', env) == ["x y", "z"]
    with pytest.raises(ParseError, match="B: must be set"):
        expand_word("${B:?must be set}", env)


def test_name_values() -> None:
    df = parse('FROM busybox\nENV A=1 B="two words" C=x\\ y\nENV LEGACY some value\nLABEL "k"="v"\n')
    env1, env2, label = df.stages[0].instructions
    assert name_values(env1) == [("A", "1"), ("B", '"two words"'), ("C", "x\\ y")]
    assert [(k, expand_word(v, {})) for k, v in name_values(env1)] == [("A", "1"), ("B", "two words"), ("C", "x y")]
    assert name_values(env2) == [("LEGACY", "some value")]
    assert name_values(label) == [('"k"', '"v"')]
