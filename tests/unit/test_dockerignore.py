"""dockyard.util.dockerignore: moby's reading and matching rules (the build tests compare whole
contexts with the real docker CLI and dockerd; these pin the rules one by one)."""

from __future__ import annotations

import pytest

from dockyard.util.dockerignore import PatternMatcher, build_files_to_drop, read_patterns


def test_reading() -> None:
    text = "\ufeff# comment\n  spaced  \n! keep \n/rooted\na/../b\n #not a comment\n\n"
    assert read_patterns(text) == ["spaced", "!keep", "rooted", "b", "#not a comment"]


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    (["*.log"], "x.log", True),
    (["*.log"], "sub/x.log", False),  # rooted: * stays in the top segment
    (["**/*.log"], "sub/deep/x.log", True),
    (["**/*.log"], "x.log", True),
    (["docs"], "docs/a/b.md", True),  # a matched directory takes its contents
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["*.log", "!keep.log"], "keep.log", False),
    (["!keep.log", "*.log"], "keep.log", True),  # the last match decides
    (["build/**/*.o"], "build/x.o", True),
    (["build/**/*.o"], "build/a/b/x.o", True),
    (["a?c"], "abc", True),
    (["a?c"], "abbc", False),
    (["a?c"], "a/c", False),
    (["tmp*"], "tmp/x", True),
    (["**"], "anything/at/all", True),
    (["x\\*y"], "x*y", True),
    (["x\\*y"], "xay", False),
    (["a.b"], "axb", False),  # `.` is literal
])
def test_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert PatternMatcher.of(patterns).matches(path) is excluded


def test_illegal_exclusion() -> None:
    with pytest.raises(ValueError):
        PatternMatcher.of(["!"])


def test_files_the_daemon_drops() -> None:
    assert build_files_to_drop(None, "Dockerfile") == []
    assert build_files_to_drop("*.md\n", "Dockerfile") == []
    assert build_files_to_drop("Dockerfile\n.dockerignore\n", "Dockerfile") == [".dockerignore", "Dockerfile"]
    assert build_files_to_drop(".dockerfile.*\n", ".dockerfile.abc") == [".dockerfile.abc"]
