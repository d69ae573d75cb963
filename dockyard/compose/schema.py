"""Validation against the compose-spec JSON schema (vendored in data/, see data/NOTICE)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from dockyard.compose.errors import ComposeError

SCHEMA_PATH = Path(__file__).with_name("data") / "compose-spec.json"


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    # The schema says draft-07 (its $schema URL lacks the '#' jsonschema looks up, hence explicit).
    # Formats ("duration", "ports", ...) are checked by the normaliser, which names the key.
    return jsonschema.Draft7Validator(schema)


def _dotted(path: Any) -> str:
    parts: list[str] = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _message(err: Any) -> str:
    where = _dotted(err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        extra = [e for e in extra if not str(e).startswith("x-")] or extra
        key = f"{where}.{extra[0]}" if where and extra else (extra[0] if extra else where)
        return f"{key}: additional property {extra[0] if extra else '?'} is not allowed"
    if err.validator == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{where or '(root)'} must be a {want}"
    if err.validator in ("oneOf", "anyOf") and err.context:
        # The closest alternative explains best (e.g. "ports[0] must be a string").
        best = min(err.context, key=lambda e: (-len(e.absolute_path), e.validator == "type"))
        return _message(best)
    return f"{where or '(root)'}: {err.message}"


@lru_cache(maxsize=1)
def _fast() -> Any:
    """jsonschema-rs: a valid file (the usual case) is checked in ~1 ms, and importing it costs
    ~20 ms where jsonschema's import alone is ~150 ms of every compose command; errors are then
    explained by jsonschema, whose messages name the key."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    return jsonschema_rs.Draft7Validator(json.loads(SCHEMA_PATH.read_text()), validate_formats=False)


def validate(doc: Any, filename: str) -> None:
    """Raise ComposeError "validating FILE: services.web.ports[0] ..." for the first violation."""
    fast = _fast()
    if fast is not None:
        try:
            if fast.is_valid(doc):
                return
        except (ValueError, TypeError):
            pass  # a value JSON cannot hold (a YAML date, say): jsonschema decides
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        # The deepest error is the most specific one.
        err = max(errors, key=lambda e: len(list(e.absolute_path)))
        raise ComposeError(f"validating {filename}: {_message(err)}")
