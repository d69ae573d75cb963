"""compose watch's parts that need no daemon: .dockerignore matching, rules, inotify batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.compose.errors import ComposeError
from dockyard.compose.loader import Options, load
from dockyard.compose.watch import Tree, rules_of
from dockyard.util.dockerignore import PatternMatcher, read_patterns


@pytest.mark.parametrize("path,excluded", [
    ("node_modules", True), ("node_modules/x/y.js", True), ("node_modules/keep", False),
    ("src/node_modules", False),  # rooted, unlike gitignore
    ("x.pyc", True), ("src/x.pyc", False), ("a/b/tmp", True), ("build/o", True), ("src/a.py", False),
])
def test_dockerignore_semantics(path: str, excluded: bool) -> None:
    text = "# comment\nnode_modules\n!node_modules/keep\n*.pyc\n**/tmp\n./build/\n"
    assert PatternMatcher.of(read_patterns(text)).matches(path) is excluded


def _project(tmp_path: Path, watch: str, build: bool = True) -> object:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / ".dockerignore").write_text("src/secret\n")
    b = "    build: .\n" if build else "    image: busybox\n"
    (tmp_path / "compose.yaml").write_text(f"services:\n  app:\n{b}    develop:\n      watch:\n{watch}")
    return load(Options(), tmp_path)


def test_rules_resolve_paths_and_apply_both_ignores(tmp_path: Path) -> None:
    p = _project(tmp_path, "        - {action: sync, path: ./src, target: /app, ignore: ['*.log']}\n")
    (rule,) = rules_of(p, ["app"])  # type: ignore[arg-type]
    src = tmp_path / "src"
    assert rule.path == src and rule.container_path(src / "a" / "b.py") == "/app/a/b.py"
    assert rule.wanted(src / "a.py") and not rule.wanted(src / "x.log")
    assert not rule.wanted(src / "secret")  # the build context's .dockerignore
    assert not rule.wanted(src / ".git" / "HEAD") and not rule.wanted(src / "a.py.swp")
    assert not rule.wanted(tmp_path / "elsewhere.py")


def test_rule_errors(tmp_path: Path) -> None:
    p = _project(tmp_path, "        - {action: rebuild, path: ./src}\n", build=False)
    with pytest.raises(ComposeError, match="with action rebuild without a build context"):
        rules_of(p, ["app"])  # type: ignore[arg-type]
    p = _project(tmp_path, "        - {action: sync+exec, path: ./src, target: /app}\n")
    with pytest.raises(ComposeError, match="exec.command is required"):
        rules_of(p, ["app"])  # type: ignore[arg-type]


def test_tree_reports_new_directories_with_their_files(tmp_path: Path) -> None:
    tree = Tree([tmp_path])
    try:
        (tmp_path / "a.txt").write_text("1")
        changed = tree.read(5)
        assert tmp_path / "a.txt" in changed
        # A directory made with content already in it (mkdir -p, a checkout): the files come along.
        (tmp_path / "new").mkdir()
        changed = tree.read(5)
        (tmp_path / "new" / "deep").mkdir()
        (tmp_path / "new" / "deep" / "f").write_text("x")
        while tmp_path / "new" / "deep" / "f" not in changed:
            more = tree.read(5)
            assert more, "no event for a file in a new directory"
            changed |= more
        (tmp_path / "a.txt").unlink()
        assert tmp_path / "a.txt" in tree.read(5)
    finally:
        tree.close()


@pytest.mark.parametrize("word,argv", [
    ("up", ["up", "-d", "--wait"]), ("ps", ["-f", "a.yaml", "-p", "x", "--dry-run", "ps", "--format", "json"]),
    ("run", ["--profile", "p", "--env-file", "e", "run", "--rm", "web", "echo", "hi"]),
    ("cp", ["cp", "web:/a", "b"]), ("config", ["--project-directory", "d", "config", "--hash", "*"]),
])
def test_compose_parses_the_same_with_only_its_command_built(word: str, argv: list[str]) -> None:
    from dockyard.compose.cli import _command_of, _parser

    built: list[str] = []
    alone = _parser(_command_of(argv), built)
    assert built == [word]
    assert vars(alone.parse_args(argv)) == vars(_parser().parse_args(argv))
