"""The CLI's argument parser: docker's error shapes and exit codes, docker's help layout, no abbreviations.

argparse's own messages ("unrecognized arguments", "invalid choice", "usage: ...") become docker's
("unknown flag: --x", "unknown command: ...", "'dockyard run' requires at least 1 argument"), each with
the command's usage line and the hint to ask for its help. The help text takes docker's words
(dockyard/cli/helptext.py, generated from the real CLI) and falls back to the help given in code.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from dockyard.cli.common import PROG

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from typing import Any, NoReturn

_FLAG_VALUE = "\x00"  # marks a flag value error already in docker's words


class UsageError(Exception):
    """A mistake on the command line: printed as is, then exit with `code` (docker: 125 or 1)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _words() -> dict[str, dict[str, Any]]:
    from dockyard.cli.helptext import HELP

    return HELP


def _columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil (it pulls in bz2, lzma, zlib)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's, with the width found as argparse finds it: argparse makes one for every
    add_argument, and its own lookup imports shutil (start-up time)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """argparse with docker's manners. Subparsers are of this class too (argparse's default)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `ps --al` is not `ps --all`
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._argv = list(args) if args is not None else sys.argv[1:]
        ns, extras = super().parse_known_args(args, namespace)
        if extras and self.path:
            # argparse would hand these up to the root parser, which knows nothing of this command's
            # usage: report them here, as docker reports them against the command.
            self.error("unrecognized arguments: " + " ".join(extras))
        return ns, extras

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        """A value its type refuses: docker's `invalid argument "v" for "-n, --last" flag: why`."""
        type_func = self._registry_get("type", action.type, action.type)
        try:
            return type_func(arg_string)
        except argparse.ArgumentTypeError as e:
            why = str(e)
        except (TypeError, ValueError):
            name = getattr(type_func, "__name__", "")
            why = {"int": f'strconv.ParseInt: parsing "{arg_string}": invalid syntax',
                   "float": f'strconv.ParseFloat: parsing "{arg_string}": invalid syntax'}.get(name, "invalid value")
        flags = ", ".join(action.option_strings) or str(action.dest)
        raise argparse.ArgumentError(action, f'{_FLAG_VALUE}invalid argument "{arg_string}" for "{flags}" flag: {why}')

    # ------------------------------------------------------------ names
    @property
    def path(self) -> str:
        """The command words after the program name: "run", "image ls", "" for the root."""
        return self.prog.split(" ", 1)[1] if " " in self.prog else ""

    def usage_line(self) -> str:
        words = _words().get(self.path)
        if words:
            return str(words["usage"])
        if self._subcommands() is not None:
            return f"{self.prog} COMMAND"
        pos = [a for a in self._actions if not a.option_strings]
        parts = [self.prog, "[OPTIONS]"] if any(a.option_strings and a.dest != "help" for a in self._actions) \
            else [self.prog]
        for a in pos:
            name = str(a.metavar or a.dest).upper()
            if a.nargs in ("*", argparse.REMAINDER):
                parts.append(f"[{name}...]")
            elif a.nargs == "?":
                parts.append(f"[{name}]")
            elif a.nargs == "+":
                parts.append(f"{name} [{name}...]")
            else:
                parts.append(name)
        return " ".join(parts)

    def description_line(self) -> str:
        words = _words().get(self.path)
        return str(words["description"]) if words and words.get("description") else (self.description or "")

    def _subcommands(self) -> argparse._SubParsersAction[Any] | None:
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction):
                return a
        return None

    # ------------------------------------------------------------ errors
    def error(self, message: str) -> NoReturn:
        raise UsageError(*self._docker_message(message))

    def _hint(self, see: bool = False) -> str:
        return f"{'See' if see else 'Run'} '{self.prog} --help' for more information"

    def _with_usage(self, first: str, see: bool = False) -> str:
        return f"{first}\n\nUsage:  {self.usage_line()}\n\n{self._hint(see)}"

    def _docker_message(self, message: str) -> tuple[str, int]:
        m = re.match(r"argument (\S+): invalid choice: '(.*?)'", message)
        sub = self._subcommands()
        if m and sub is not None and m.group(1) == sub.metavar:
            return self.unknown_command(m.group(2)), 1
        m = re.match(r"unrecognized arguments: (.*)", message)
        if m:
            extra = m.group(1).split()
            flag = next((x for x in extra if x.startswith("-") and x != "-"), None)
            if flag is not None:
                return self._with_usage(f"unknown flag: {flag.split('=', 1)[0]}"), 125
            return self._arg_count_message(), 1
        if message.startswith("the following arguments are required"):
            return self._arg_count_message(), 1
        m = re.match(r"argument (\S+): expected one argument", message)
        if m:
            forms = m.group(1).split("/")
            used = next((a for a in reversed(getattr(self, "_argv", [])) if a in forms), forms[-1])
            if not used.startswith("--"):  # pflag names the letter: flag needs an argument: 'e' in -e
                return self._with_usage(f"flag needs an argument: '{used[1:]}' in {used}"), 125
            return self._with_usage(f"flag needs an argument: {used}"), 125
        if _FLAG_VALUE in message:
            return self._with_usage(message.split(_FLAG_VALUE, 1)[1]), 125
        m = re.match(r"argument (\S+): invalid choice: '(.*?)' \(choose from (.*)\)", message)
        if m:
            flags = ", ".join(m.group(1).split("/"))
            return self._with_usage(f'invalid argument "{m.group(2)}" for "{flags}" flag: '
                                    f"must be one of {m.group(3)}"), 125
        return self._with_usage(f"{PROG}: {message}"), 125

    def _arg_count_message(self) -> str:
        """docker's argument count words (cli/required.go), from our positionals' arity."""
        lo, hi = 0, 0
        for a in self._actions:
            if a.option_strings or isinstance(a, argparse._SubParsersAction):
                continue
            if a.nargs is None:
                lo, hi = lo + 1, hi + 1
            elif isinstance(a.nargs, int):
                lo, hi = lo + a.nargs, hi + a.nargs
            elif a.nargs == "+":
                lo, hi = lo + 1, -1
            elif a.nargs in ("*", argparse.REMAINDER):
                hi = -1
            elif a.nargs == "?":
                hi = hi + 1 if hi >= 0 else hi
        quoted = f"'{self.prog}'"
        plural = "" if lo == 1 else "s"
        if hi == lo:
            first = f"{quoted} requires {lo} argument{plural}" if lo else f"{quoted} accepts no arguments"
            return self._with_usage(f"{PROG}: {first}")
        if lo == 0:
            return self._with_usage(f"{PROG}: {quoted} requires at most {hi} argument{'' if hi == 1 else 's'}",
                                    see=True)
        if hi < 0:
            return self._with_usage(f"{PROG}: {quoted} requires at least {lo} argument{plural}", see=True)
        return self._with_usage(f"{PROG}: {quoted} requires at least {lo} and at most {hi} arguments", see=True)

    def command_names(self) -> list[str]:
        sub = self._subcommands()
        return sorted(n for n in sub.choices if not n.startswith("_")) if sub is not None else []

    def unknown_command(self, word: str) -> str:
        msg = f"{PROG}: unknown command: {self.prog} {word}"
        close = suggest(word, self.command_names())
        if close:
            msg += f'\nDid you mean "{close}"?'
        if self.path:
            return f"{msg}\n\nUsage:  {self.usage_line()}\n\n{self._hint()}"
        return f"{msg}\n\n{self._hint()}"

    # ------------------------------------------------------------ help
    def format_help(self) -> str:
        out = [f"\nUsage:  {self.usage_line()}\n"]
        desc = self.description_line()
        if desc:
            out.append(f"{desc}\n")
        sub = self._subcommands()
        if sub is not None:
            words = _words()
            groups: list[tuple[str, str]] = []
            commands: list[tuple[str, str]] = []
            for a in sub._choices_actions:
                if a.dest.startswith("_"):
                    continue  # internal (`__complete`)
                p = sub.choices[a.dest]
                desc = (words.get(f"{self.path} {a.dest}".strip()) or {}).get("description") or a.help or ""
                (groups if isinstance(p, Parser) and p._subcommands() is not None else commands).append(
                    (a.dest, desc))
            if groups and not self.path:
                out.append(_table("Management Commands:", sorted(groups)))
            out.append(_table("Commands:", sorted(commands if not self.path else groups + commands)))
        opts = self.option_rows()
        if opts:
            out.append(_table("Options:", opts, indent=2))
        if sub is not None:
            out.append(f"Run '{self.prog} COMMAND --help' for more information on a command.\n")
        return "\n".join(out)

    def option_rows(self) -> list[tuple[str, str]]:
        """(flags, description) for each option: docker's words and value type where docker has the flag."""
        words = (_words().get(self.path) or {}).get("flags") or {}
        rows: list[tuple[str, str, str]] = []
        for a in self._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS or a.dest == "help":
                continue  # docker's help does not list --help either
            longs = [o for o in a.option_strings if o.startswith("--")]
            shorts = [o for o in a.option_strings if not o.startswith("--")]
            kind, text = "", a.help or ""
            for o in longs:
                if o in words:
                    kind, text = words[o]
                    break
            if not kind and a.nargs != 0 and not isinstance(a, (argparse._StoreTrueAction, argparse._HelpAction,
                                                                argparse.BooleanOptionalAction)):
                kind = "list" if isinstance(a, argparse._AppendAction) else "string"
            flag = (f"{shorts[0]}, " if shorts else "    ") + (longs[0] if longs else "")
            rows.append((longs[0] if longs else shorts[0], f"{flag} {kind}".rstrip(), text))
        return [(flag, text) for _, flag, text in sorted(rows)]  # docker lists flags by long name

    def print_help(self, file: Any = None) -> None:
        (file or sys.stdout).write(self.format_help())


def _table(title: str, rows: list[tuple[str, str]], indent: int = 2) -> str:
    width = max((len(k) for k, _ in rows), default=0) + 2
    lines = [title] + [f"{' ' * indent}{k:<{width}}{v}".rstrip() for k, v in rows]
    return "\n".join(lines) + "\n"


def suggest(word: str, names: list[str]) -> str | None:
    """The closest command name, as cobra suggests: a prefix, or within two edits."""
    for n in names:
        if n.startswith(word) and len(word) >= 2:
            return n
    best = None
    for n in names:
        d = _distance(word, n)
        if d <= 2 and (best is None or d < best[0]):
            best = (d, n)
    if best:
        return best[1]
    return None


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (short words only)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
