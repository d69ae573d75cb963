"""The CLI parser's manners: docker's error shapes and exit codes, help for every command and flag,
no abbreviated flags, the closest command suggested, and each command found through its own modules."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from dockyard.cli.main import _WORD_MODULES, build_parser
from dockyard.cli.parsing import Parser, UsageError, suggest


def walk(p: Parser) -> Iterator[Parser]:
    yield p
    sub = p._subcommands()
    if sub is not None:
        seen: set[int] = set()
        for sp in sub.choices.values():
            if id(sp) not in seen:
                seen.add(id(sp))
                yield from walk(sp)


def flags(p: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    return sorted(tuple(a.option_strings) for a in p._actions if a.option_strings)


def test_every_command_and_flag_has_a_description() -> None:
    missing = []
    for p in walk(build_parser()):
        if not p.description_line():
            missing.append(p.prog)
        missing += [f"{p.prog} {flag}" for flag, text in p.option_rows() if not text]
    assert missing == []


def test_each_word_is_built_from_its_own_modules() -> None:
    """A command word imports only the modules listed for it: what they build is what the full parser has."""
    full = build_parser()
    words = full._subcommands().choices  # type: ignore[union-attr]
    assert set(words) == set(_WORD_MODULES)
    for word in words:
        alone = build_parser(word)._subcommands().choices[word]  # type: ignore[union-attr]
        assert [(q.prog, flags(q)) for q in walk(alone)] == [(q.prog, flags(q)) for q in walk(words[word])]


def error(*argv: str) -> UsageError:
    with pytest.raises(UsageError) as e:
        build_parser().parse_args(list(argv))
    return e.value


def test_abbreviated_flags_are_refused() -> None:
    e = error("ps", "--al")
    assert e.code == 125 and e.message.startswith("unknown flag: --al\n\nUsage:  dockyard ps [OPTIONS]\n")
    assert build_parser().parse_args(["run", "-it", "busybox"]).tty  # combined short flags still work


@pytest.mark.parametrize("argv,code,first", [
    (["run", "--detatch", "busybox"], 125, "unknown flag: --detatch"),
    (["run"], 1, "dockyard: 'dockyard run' requires at least 1 argument"),
    (["logs", "a", "b"], 1, "dockyard: 'dockyard logs' requires 1 argument"),
    (["rename", "a"], 1, "dockyard: 'dockyard rename' requires 2 arguments"),
    (["ps", "-n", "x"], 125, 'invalid argument "x" for "-n, --last" flag: strconv.ParseInt: parsing "x": '
                             "invalid syntax"),
    (["run", "--name"], 125, "flag needs an argument: --name"),
    (["pul", "busybox"], 1, "dockyard: unknown command: dockyard pul"),
    (["image", "pul"], 1, "dockyard: unknown command: dockyard image pul"),
])
def test_mistakes_in_docker_words(argv: list[str], code: int, first: str) -> None:
    e = error(*argv)
    assert (e.code, e.message.splitlines()[0]) == (code, first)
    assert e.message.endswith(" for more information")


def test_unknown_command_suggests_the_closest() -> None:
    assert 'Did you mean "pull"?' in error("pul", "busybox").message
    assert 'Did you mean "ls"?' in error("image", "lss").message
    assert suggest("zzzzzz", ["pull", "push"]) is None
    assert suggest("statz", ["start", "stats", "stop"]) == "stats"


def test_help_in_docker_layout() -> None:
    text = build_parser("run")._subcommands().choices["run"].format_help()  # type: ignore[union-attr]
    assert text.startswith("\nUsage:  dockyard run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n")
    assert "  -d, --detach " in text and "Run container in background and print container ID" in text
    assert "      --cpus decimal " in text
