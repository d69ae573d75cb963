"""Parsing of -v / --mount / --tmpfs specs into mount specs, with Docker's error messages."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.errors import InvalidParameter
from dockyard.store.mounts import _parse_bind, _parse_mount, _tmpfs_options, anonymous_volume_name
from dockyard.wire.container import Mount, convert


def test_bind_forms() -> None:
    s = _parse_bind("data:/var/lib/data")
    assert (s.type, s.source, s.destination, s.rw, s.mode) == ("volume", "data", "/var/lib/data", True, "z")
    s = _parse_bind("/host/dir:/x/../y:ro")
    assert (s.type, s.source, s.destination, s.rw, s.mode, s.propagation) == ("bind", "/host/dir", "/y", False,
                                                                            "ro", "rprivate")
    s = _parse_bind("/anon")
    assert (s.type, s.source, s.mode) == ("volume", "", "")
    assert _parse_bind("/h:/c:rshared,z").propagation == "rshared"
    assert _parse_bind("v1:/c:nocopy").nocopy


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        ("/tmp/hb:rel", "invalid volume specification: '/tmp/hb:rel': invalid mount config for type \"bind\": "
                        "invalid mount path: 'rel' mount path must be absolute"),
        ("rel", "invalid mount path: 'rel' mount path must be absolute"),
        ("/foo:rw", "invalid volume specification: '/foo:rw'"),
        ("/a:/b:bogus", "invalid mode: bogus"),
        ("/a:/b:ro,rw", "invalid mode: ro,rw"),
        ("/a:/", "destination can't be '/'"),
        ("a:b:c:d", "invalid volume specification"),
    ],
)
def test_bind_errors(raw: str, msg: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        _parse_bind(raw)
    assert msg in e.value.message


def test_mount_forms(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = _mount({"Type": "bind", "Source": str(tmp_path), "Target": "/t", "ReadOnly": True,
                      "BindOptions": {"Propagation": "rslave"}})
    assert (s.type, s.rw, s.propagation, s.mode) == ("bind", False, "rslave", "")
    s = _mount({"Type": "volume", "Source": "v1", "Target": "/t",
                      "VolumeOptions": {"NoCopy": True, "DriverConfig": {"Options": {"type": "tmpfs"}}}})
    assert s.nocopy and s.volume_opts == {"type": "tmpfs"} and s.mode == "z"
    s = _mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1770}})
    assert s.tmpfs_options == ["size=1024k", "mode=1770"]


@pytest.mark.parametrize(
    ("m", "msg"),
    [
        ({"Type": "bind", "Source": "/nonexistent-dockyard", "Target": "/x"},
         'invalid mount config for type "bind": bind source path does not exist: /nonexistent-dockyard'),
        ({"Type": "bind", "Target": "/x"}, 'invalid mount config for type "bind": field Source must not be empty'),
        ({"Type": "volume", "Source": "v", "Target": "x"},
         "invalid mount config for type \"volume\": invalid mount path: 'x' mount path must be absolute"),
        ({"Type": "volume", "Source": "v"}, 'invalid mount config for type "volume": field Target must not be empty'),
        ({"Type": "tmpfs", "Source": "s", "Target": "/x"},
         'invalid mount config for type "tmpfs": field Source must not be specified'),
        ({"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}},
         'invalid mount config for type "volume": field BindOptions must not be specified'),
        ({"Type": "npipe", "Target": "/x"}, 'invalid mount config for type "npipe": mount type unknown'),
    ],
)
def test_mount_errors(m: dict, msg: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        _mount(m)
    assert e.value.message == msg


def test_tmpfs_options_merge() -> None:
    assert _tmpfs_options([]) == ["noexec", "nosuid", "nodev"]
    assert _tmpfs_options(["exec", "size=1m", "size=2m"]) == ["nosuid", "nodev", "exec", "size=2m"]


def test_anonymous_names_are_stable() -> None:
    a = anonymous_volume_name("c1", "/data")
    assert a == anonymous_volume_name("c1", "/data") and len(a) == 64
    assert a != anonymous_volume_name("c2", "/data")


def _mount(m: dict[str, Any]) -> Any:
    return _parse_mount(convert(m, Mount))
