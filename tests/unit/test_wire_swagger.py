"""dockyard/wire's container structs against moby's swagger, v1.41..v1.47 (tests/data/moby-container-defs.json,
vendored by tests/data/vendor_container_defs.py): every property of ContainerConfig, HostConfig (and its
Resources), NetworkingConfig, the definitions they reach and the exec bodies has a field of the same JSON
name and a compatible type, so a struct drifting from the API fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import msgspec
import pytest

from dockyard.wire import container as w

DEFS = json.loads((Path(__file__).parents[1] / "data" / "moby-container-defs.json").read_text())["definitions"]

STRUCTS: dict[str, type[w.Wire]] = {
    "ContainerConfig": w.Config, "HostConfig": w.HostConfig, "Resources": w.Resources,
    "NetworkingConfig": w.NetworkingConfig, "EndpointSettings": w.EndpointSettings,
    "EndpointIPAMConfig": w.EndpointIPAMConfig, "PortBinding": w.PortBinding, "Mount": w.Mount,
    "RestartPolicy": w.RestartPolicy, "DeviceMapping": w.DeviceMapping, "DeviceRequest": w.DeviceRequest,
    "ThrottleDevice": w.ThrottleDevice, "HealthConfig": w.HealthConfig, "ExecConfig": w.ExecConfig,
    "ExecStartConfig": w.ExecStartConfig,
}
ALIASES = {"MountType": {"type": "string"}, "PortMap": {"type": "object", "additionalProperties": {
    "type": "array", "items": {"$ref": "#/definitions/PortBinding"}}}}


def _strip(tp: Any) -> list[Any]:
    """The alternatives a field's type allows (Optional and Annotated taken off)."""
    if get_origin(tp) is Annotated:
        return _strip(get_args(tp)[0])
    if get_origin(tp) is Union or type(tp).__name__ == "UnionType":
        return [x for a in get_args(tp) if a is not type(None) for x in _strip(a)]
    return [tp]


def _compatible(schema: dict[str, Any], tp: Any, where: str) -> list[str]:
    """Problems of `tp` as the Python type of a swagger schema ([] when none)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in ALIASES:
            return _compatible(ALIASES[name], tp, where)
        want = STRUCTS[name]
        return [] if want in _strip(tp) else [f"{where}: {tp} is not {want.__name__}"]
    if "allOf" in schema:
        return [p for part in schema["allOf"] for p in _compatible(part, tp, where)]
    kinds = _strip(tp)
    kind = schema.get("type", "object")
    if kind == "string":
        ok = str in kinds
    elif kind == "integer":
        ok = int in kinds
    elif kind == "boolean":
        ok = bool in kinds
    elif kind == "array":
        lists = [k for k in kinds if get_origin(k) is list]
        if not lists:
            return [f"{where}: {tp} is not a list"]
        return _compatible(schema.get("items", {}), get_args(lists[0])[0], where + "[]")
    elif "additionalProperties" in schema:
        maps = [k for k in kinds if get_origin(k) is dict]
        if not maps:
            return [f"{where}: {tp} is not a map"]
        return _compatible(schema["additionalProperties"], get_args(maps[0])[1], where + "{}")
    elif "properties" in schema:  # an inline object: a struct of its own
        structs = [k for k in kinds if isinstance(k, type) and issubclass(k, msgspec.Struct)]
        if not structs:
            return [f"{where}: {tp} is not a struct"]
        return _properties(schema, structs[0], where)
    else:  # an object of anything (ExposedPorts' {}: Go's struct{})
        ok = any(k is Any or get_origin(k) is dict for k in kinds)
    return [] if ok else [f"{where}: {tp} does not hold a swagger {kind}"]


def _properties(schema: dict[str, Any], struct: type[msgspec.Struct], where: str) -> list[str]:
    props: dict[str, Any] = {}
    for part in schema.get("allOf", [schema]):
        if "$ref" in part:
            props.update(_all_properties(DEFS[part["$ref"].rsplit("/", 1)[1]][-1]["schema"]))
        props.update(part.get("properties", {}))
    fields = {f.encode_name: f.name for f in msgspec.structs.fields(struct)}
    hints = get_type_hints(struct, include_extras=True)
    problems = []
    for name, sub in props.items():
        if name not in fields:
            problems.append(f"{where}.{name}: no field")
            continue
        problems += _compatible(sub, hints[fields[name]], f"{where}.{name}")
    return problems


def _all_properties(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in schema.get("allOf", [schema]):
        out.update(part.get("properties", {}))
    return out


@pytest.mark.parametrize(("name", "form"), [(n, f) for n, forms in DEFS.items() if n in STRUCTS for f in forms],
                         ids=lambda x: x if isinstance(x, str) else ",".join(x["versions"]))
def test_every_swagger_property_has_a_field_of_a_compatible_type(name: str, form: dict[str, Any]) -> None:
    assert _properties(form["schema"], STRUCTS[name], name) == []


def test_every_vendored_definition_is_checked() -> None:
    assert set(DEFS) == set(STRUCTS) | set(ALIASES)
    assert {v for forms in DEFS.values() for f in forms for v in f["versions"]} == {f"1.{n}" for n in range(41, 48)}


def test_the_check_sees_drift() -> None:
    """A renamed field, a field of another type and a missing one are each reported."""

    class Drifted(w.Wire):
        host_ip: int = field_named("HostIp")
        port: str = ""

    schema = DEFS["PortBinding"][0]["schema"]
    assert _properties(schema, Drifted, "PortBinding") == [
        "PortBinding.HostIp: <class 'int'> does not hold a swagger string", "PortBinding.HostPort: no field"]
    assert _properties(DEFS["HostConfig"][-1]["schema"], w.Resources, "HostConfig")  # HostConfig's own fields


def field_named(name: str) -> Any:
    return msgspec.field(default=0, name=name)
