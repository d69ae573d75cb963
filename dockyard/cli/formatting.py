"""Docker's output conventions: go-units durations and sizes, tabwriter tables, --format handling."""

from __future__ import annotations

import json
import sys
import time

from dockyard.util.timefmt import human_duration

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any


def ago(ts: float) -> str:
    return human_duration(time.time() - ts) + " ago"


_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def _go_g(value: float, precision: int) -> str:
    out = f"{value:.{precision}g}"
    if "e" in out:  # Go writes e+03, Python e+03: same; keep
        return out
    return out


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision (decimal units)."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return _go_g(size, precision) + _UNITS[i]


def bytes_size(size: float, precision: int = 4) -> str:
    """go-units BytesSize (binary units), used by stats."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return _go_g(size, precision) + units[i]


def ellipsis(s: str, width: int) -> str:
    if len(s) <= width:
        return s
    return s[: width - 1] + "…"


def short_id(i: str) -> str:
    if ":" in i:
        i = i.split(":", 1)[1]
    return i[:12]


def tabwrite(lines: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """text/tabwriter with docker's settings (minwidth 10, tabwidth 1, padding 3, spaces)."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for cells in rows:
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        parts.append(cells[-1])
        out.append("".join(parts))
    return "".join(line + "\n" for line in out)


def prepare_format(fmt: str) -> tuple[bool, str]:
    """('table' prefix?, template with \\t and \\n unescaped)."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table") :]
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, fmt


def _plain_fields(src: str) -> list[str] | None:
    """The field names of a template that is only `{{.A}}\t{{.B}}...`, else None."""
    fields = []
    for part in src.split("\t"):
        name = part[3:-2] if part.startswith("{{.") and part.endswith("}}") else ""
        if not name.isidentifier():
            return None
        fields.append(name)
    return fields


def write_rows(
    fmt: str,
    rows: list[dict[str, Any]],
    headers: dict[str, str],
    default_table: str,
    quiet_field: str | None = None,
    out: Any = None,
) -> None:
    """Render rows like docker's formatter: `table ...`, a plain template, or `json`."""
    out = out or sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
        return
    if not fmt or fmt == "table":
        fmt = default_table
    table, src = prepare_format(fmt)
    fields = _plain_fields(src)
    if fields is not None and all(f in headers for f in fields) \
            and all(isinstance(row.get(f), str) and "\n" not in row[f] for row in rows for f in fields):
        # Only {{.Field}}s between tabs and every cell a string: what the template would render, without
        # importing the template engine (the default tables of ps, images, ...: start-up time).
        lines = ["\t".join(headers[f] for f in fields)] if table else []
        lines += ["\t".join(row[f] for f in fields) for row in rows]
        out.write(tabwrite(lines) if table else "".join(line + "\n" for line in lines))
        out.flush()
        return
    from dockyard.cli.common import CLIError
    from dockyard.cli.gotemplate import Template, TemplateError

    try:
        # Strict, as docker's formatters are structs: a field they lack is an error, not an empty cell.
        tmpl = Template(src, strict=True)
    except TemplateError as e:
        raise CLIError(f"template parsing error: template: {e}", 1) from None
    known = dict.fromkeys(headers, "")
    try:
        tmpl.render(known)  # as docker: a field the formatter lacks is an error even with no rows
        if table:
            lines = [tmpl.render(headers)]
            lines += [tmpl.render({**known, **row}) for row in rows]
            out.write(tabwrite("\n".join(lines).split("\n")) if rows or lines else "")
        else:
            for row in rows:
                out.write(tmpl.render({**known, **row}) + "\n")
    except TemplateError as e:
        raise CLIError(f"failed to execute template: template: {e}", 1) from None
    out.flush()


def render_each(fmt: str, items: Iterable[Any], out: Any = None, on_error: Callable[[Exception], None] | None = None
                ) -> None:
    """`inspect -f`: one rendering per object, each followed by a newline."""
    from dockyard.cli.gotemplate import Template

    out = out or sys.stdout
    _, src = prepare_format(fmt)
    tmpl = Template(src)
    for item in items:
        out.write(tmpl.render(item) + "\n")
    out.flush()


def display_ports(ports: list[dict[str, Any]]) -> str:
    """docker's DisplayablePorts (without range grouping)."""
    seen: list[str] = []
    for p in sorted(ports or [], key=lambda p: (p.get("PublicPort", 0), p.get("PrivatePort", 0),
                                                 p.get("IP", ""))):
        if p.get("PublicPort"):
            ip = p.get("IP", "")
            host = f"[{ip}]" if ":" in ip else ip
            s = f"{host}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}"
        else:
            s = f"{p['PrivatePort']}/{p.get('Type', 'tcp')}"
        if s not in seen:
            seen.append(s)
    return ", ".join(seen)
