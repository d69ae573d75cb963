"""What the monitor reads of runc's state.json (runtime/monitor.py `_RuncState`): runc 1.1's own layout."""

from __future__ import annotations

import json

from dockyard.runtime.monitor import _runc_state_decoder

_NO_HOOKS: dict[str, object] = {"createContainer": None, "createRuntime": None, "poststart": None, "poststop": None,
             "prestart": None, "startContainer": None}


def _state(hooks: dict[str, object]) -> bytes:
    # as runc 1.1 writes it: the config's fields capitalised where libcontainer's json tags say so
    return json.dumps({"init_process_pid": 42, "init_process_start": 7, "cgroup_paths": {"pids": "/x"},
                       "config": {"rootfs": "/r", "Hooks": hooks, "labels": []}}).encode()


def test_a_spec_without_hooks_has_none() -> None:
    st = _runc_state_decoder.decode(_state(_NO_HOOKS))
    assert st.init_process_pid == 42 and st.cgroup_paths == {"pids": "/x"}
    assert st.config is not None and not st.config.has_hooks()


def test_a_poststop_hook_is_seen() -> None:
    # runc delete runs poststop hooks: the monitor must then leave the delete to runc
    st = _runc_state_decoder.decode(_state({**_NO_HOOKS, "poststop": [{"path": "/bin/true"}]}))
    assert st.config is not None and st.config.has_hooks()
