"""Regenerate moby-api-v1.47.yaml: moby's swagger for API v1.47, kept to the paths Dockyard serves.

    git show <moby commit>:api/docs/v1.47.yaml > /tmp/v1.47.yaml
    python tests/data/trim_swagger.py /tmp/v1.47.yaml > tests/data/moby-api-v1.47.yaml
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def served() -> set[tuple[str, str]]:
    out = subprocess.run(["grep", "-rhoE", r'(add|r)\("[A-Z]+", "[^"]+"', str(ROOT / "dockyard/api")],
                         capture_output=True, text=True).stdout
    routes = set()
    for m in re.finditer(r'"([A-Z]+)", "([^"]+)"', out):
        routes.add((m.group(1).lower(), re.sub(r"\{(\w+):path\}", r"{\1}", m.group(2))))
    return routes


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        for v in node.values():
            found |= refs(v)
        return found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


def strip_prose(node: Any) -> Any:
    """Drop `description` texts (most of the file's size); schemas, examples and enums stay."""
    if isinstance(node, dict):
        return {k: strip_prose(v) for k, v in node.items()
                if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip_prose(v) for v in node]
    return node


def main() -> None:
    spec = yaml.safe_load(open(sys.argv[1]))
    ours = served()
    paths: dict[str, Any] = {}
    for path, ops in spec["paths"].items():
        kept = {m: op for m, op in ops.items() if (m, path) in ours or m == "parameters"}
        if set(kept) - {"parameters"}:
            paths[path] = kept
    defs = spec["definitions"]
    need, todo = set(), refs(paths)
    while todo:
        name = todo.pop()
        if name not in need and name in defs:
            need.add(name)
            todo |= refs(defs[name])
    spec["paths"] = paths
    spec["definitions"] = {k: v for k, v in defs.items() if k in need}
    spec.pop("tags", None)
    spec = strip_prose(spec)
    print("# Trimmed from moby/moby api/docs/v1.47.yaml (Apache-2.0); see tests/data/README.md.")
    print(yaml.safe_dump(spec, sort_keys=False, width=110))


if __name__ == "__main__":
    main()
