"""What a CLI command imports at start-up (issue 20: each module is milliseconds of every command):
`ps` against a daemon named with -H reads no context store and needs none of socket.py, urllib.parse,
pathlib or http.client; `run` and `create` build their body without msgspec and the wire structs, and
`run` imports nothing beyond `ps`'s but its own few modules; `--mount` still checks its Mount with the
structs (msgspec without typing_extensions and the inspect, ast and dis it brings, or sqlite3); the
hand-written URL quoting says what urllib.parse would."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

from dockyard.client.base import _params, q

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("socket", "urllib.parse", "pathlib", "http.client", "ssl", "email", "typing_extensions", "inspect",
         "sqlite3", "platform")

# Each ~1-3 ms, and none needed by the commands people run most (docker's CLI starts in ~20 ms): typing
# (annotations only: TYPE_CHECKING), gettext and locale (argparse's translations; there are none).
LIGHT = ("typing", "gettext", "locale")

PROBE = """
import sys
from dockyard.cli.main import main
code = main(["-H", "unix://" + sys.argv[1], *sys.argv[3:]])
print(code, "msgspec" in sys.modules, " ".join(m for m in sys.argv[2].split(",") if m in sys.modules))
"""


def imports(tmp_path: Path, *argv: str, heavy: tuple[str, ...] = HEAVY) -> tuple[bool, str]:
    """Whether the command imported msgspec, and which of `heavy` it imported."""
    # -S: no site hooks (this venv's editable-install finder imports pathlib for every interpreter);
    # the packages come in through PYTHONPATH, as an installed CLI would find them.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()]),
           "DOCKER_CONFIG": str(tmp_path)}
    env.pop("DOCKER_HOST", None)
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, str(tmp_path / "none.sock"), ",".join(heavy),
                          *argv], env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    code, wire, found = (out.stdout.strip().splitlines()[-1] + " ").split(" ", 2)  # after any output
    assert code == "1", out  # no daemon there: the connection error, after the imports
    return wire == "True", found.strip()


def test_ps_start_up_imports(tmp_path: Path) -> None:
    assert imports(tmp_path, "ps") == (False, "")


def test_hot_commands_import_no_typing_nor_gettext(tmp_path: Path) -> None:
    for argv in (["version"], ["ps"], ["images"], ["inspect", "x"], ["logs", "x"]):
        assert imports(tmp_path, *argv, heavy=HEAVY + LIGHT) == (False, ""), argv


def test_create_start_up_imports(tmp_path: Path) -> None:
    assert imports(tmp_path, "create", "busybox", "true") == (False, "")
    assert imports(tmp_path, "create", "--mount", "type=tmpfs,target=/t", "busybox") == (True, "")


MODULES = """
import sys
from dockyard.cli.main import main
code = main(["-H", "unix://" + sys.argv[1], *sys.argv[2:]])
print(code, " ".join(sorted(sys.modules)))
"""


def modules(tmp_path: Path, *argv: str) -> set[str]:
    """Every module a command imported (as in imports(): no site hooks, no daemon)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()]),
           "DOCKER_CONFIG": str(tmp_path)}
    env.pop("DOCKER_HOST", None)
    out = subprocess.run([sys.executable, "-S", "-c", MODULES, str(tmp_path / "none.sock"), *argv], env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    code, _, mods = out.stdout.strip().splitlines()[-1].partition(" ")
    assert code == "1", out
    return set(mods.split())


# What `run` may import beyond `ps`: its command module, the flags and body (opts), the stream pump
# (stdio, detachkeys, select). A module added to run's path (msgspec and the wire structs, typing,
# signal's enums...) fails this: each is milliseconds of every run, the docker CLI's ~20 ms start beside it.
RUN_BEYOND_PS = {"dockyard.cli.run", "dockyard.cli.opts", "dockyard.cli.stdio", "dockyard.util.detachkeys",
                 "select"}


def test_run_imports_only_its_own_modules_beyond_ps(tmp_path: Path) -> None:
    ps = modules(tmp_path, "ps")
    run = modules(tmp_path, "run", "--rm", "busybox", "true")
    assert run - ps == RUN_BEYOND_PS
    assert not run & {*HEAVY, *LIGHT, "msgspec", "dockyard.wire", "signal", "contextlib"}


def test_uuid_imported_through_msgspec_knows_the_system() -> None:
    """dockyard.wire lets uuid (through msgspec) ask os.uname instead of platform; after it, platform is
    the real module, and uuid knows what platform would have told it."""
    probe = ("import dockyard.wire, uuid, platform; "
             "print(uuid._LINUX == (platform.system() == 'Linux'), uuid._AIX, hasattr(platform, 'machine'))")
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "False", "True"], out


def test_quoting_matches_urllib() -> None:
    for s in ["abc", "a b", "x/y:z@w", "é😀", "a+b&c=d", "~_.-", "%41", '{"label":["a=b"]}', "", " ", "/"]:
        assert q(s) == quote(s, safe="/:@"), s
        assert _params({"k": s, "f k": [s, "x"], "b": True}) == "?" + urlencode(
            [("k", s), ("f k", s), ("f k", "x"), ("b", "1")]), s
