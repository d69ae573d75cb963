"""`verify-signatures` in daemon.json and `--verify-signatures` on the command line (daemon/config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.daemon.config import load
from dockyard.errors import InvalidParameter


def test_daemon_json_key_and_flag(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text("-----BEGIN PUBLIC KEY-----\n")
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"verify-signatures": str(pub)}))
    assert load(["--config-file", str(conf)]).verify_signatures == str(pub)
    conf.write_text("{}")
    assert load(["--config-file", str(conf)]).verify_signatures == ""
    assert load(["--config-file", str(conf), "--verify-signatures", str(pub)]).verify_signatures == str(pub)


def test_a_missing_key_file_is_refused_at_start(tmp_path: Path) -> None:
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"verify-signatures": str(tmp_path / "nope.pub")}))
    with pytest.raises(InvalidParameter, match="no public key file"):
        load(["--config-file", str(conf)])
