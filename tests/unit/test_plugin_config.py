"""The daemon's plugin settings: flags and daemon.json keys (dockerd's `authorization-plugins`, and
Dockyard's own discovery dirs and retry time), the flag winning over the file."""

from __future__ import annotations

import json
from pathlib import Path

from dockyard.daemon.config import load


def test_daemon_json_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "daemon.json"
    f.write_text(json.dumps({"authorization-plugins": ["a", "b"], "plugin-discovery-dirs": [str(tmp_path)],
                             "plugin-retry-seconds": 2.5}))
    cfg = load(["--config-file", str(f)])
    assert cfg.authorization_plugins == ["a", "b"]
    assert cfg.plugin_discovery_dirs == [str(tmp_path)] and cfg.plugin_retry_seconds == 2.5
    cfg = load(["--config-file", str(f), "--authorization-plugin", "c", "--plugin-retry-seconds", "1"])
    assert cfg.authorization_plugins == ["c"] and cfg.plugin_retry_seconds == 1
    f.write_text("{}")
    cfg = load(["--config-file", str(f)])
    assert cfg.authorization_plugins == [] and cfg.plugin_discovery_dirs == [] and cfg.plugin_retry_seconds == 30
