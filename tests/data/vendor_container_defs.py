#!/usr/bin/env python3
"""Vendor the container definitions of moby's Engine API swagger (v1.41..v1.47) as test data.

    python tests/data/vendor_container_defs.py MOBY_CHECKOUT_OR_GIT_DIR > tests/data/moby-container-defs.json

Reads api/docs/v1.4N.yaml from a moby checkout (a bare git dir works: read at HEAD), keeps the
definitions reachable from ContainerConfig, HostConfig and NetworkingConfig (and the create and update
bodies' parts) and the exec bodies the swagger defines inline (ExecConfig, ExecStartConfig), drops
descriptions and examples, and prints one JSON document: {"_license": ..., "definitions": {"Name": [{"versions": ["1.41", ...], "schema": {...}}, ...]}} (a definition once per distinct form).
tests/unit/test_wire_swagger.py checks dockyard/wire's structs against it."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

VERSIONS = [f"1.{n}" for n in range(41, 48)]
ROOTS = ["ContainerConfig", "HostConfig", "NetworkingConfig", "Resources"]
# Bodies the swagger defines inline, under a path: kept under their titles.
INLINE = {"ExecConfig": "/containers/{id}/exec", "ExecStartConfig": "/exec/{id}/start"}
KEEP = {"type", "format", "items", "properties", "additionalProperties", "$ref", "allOf", "x-nullable", "enum"}
LICENSE = ("Extracted from moby/moby api/docs/v1.41.yaml .. v1.47.yaml (the Docker Engine API swagger), "
           "Copyright 2013-2018 Docker, Inc., licensed under the Apache License, Version 2.0 "
           "(https://www.apache.org/licenses/LICENSE-2.0). Descriptions and examples removed by "
           "tests/data/vendor_container_defs.py; otherwise unchanged.")


def read(src: Path, version: str) -> str:
    path = f"api/docs/v{version}.yaml"
    if (src / path).exists():
        return (src / path).read_text()
    return subprocess.run(["git", "-C", str(src), "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def strip(node: object) -> object:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "properties":
                out[k] = {name: strip(p) for name, p in v.items()}
            elif k in KEEP:
                out[k] = strip(v)
        return out
    if isinstance(node, list):
        return [strip(x) for x in node]
    return node


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for x in node for r in refs(x)]
    return []


def main() -> None:
    src = Path(sys.argv[1])
    forms: dict[str, list[dict[str, object]]] = {}
    for version in VERSIONS:
        doc = yaml.safe_load(read(src, version))
        defs = doc["definitions"]
        for title, path in INLINE.items():
            body = next(p for p in doc["paths"][path]["post"]["parameters"] if p.get("in") == "body")
            defs[title] = body["schema"]
        kept: dict[str, object] = {}
        todo = [*ROOTS, *INLINE]
        while todo:
            name = todo.pop()
            if name in kept:
                continue
            kept[name] = strip(defs[name])
            todo += refs(kept[name])
        for name, schema in sorted(kept.items()):
            seen = forms.setdefault(name, [])
            same = [f for f in seen if f["schema"] == schema]
            if same:
                same[0]["versions"].append(version)  # type: ignore[attr-defined]
            else:
                seen.append({"versions": [version], "schema": schema})
    out = {"_license": LICENSE, "definitions": forms}
    json.dump(out, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
