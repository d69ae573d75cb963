"""The config dispatchers (dockerfile/dispatch.py) the builder and `--change` share."""

from __future__ import annotations

import pytest

from dockyard.dockerfile.dispatch import DISPATCH, ConfigState, apply_changes
from dockyard.dockerfile.parser import parse
from dockyard.errors import InvalidParameter


def run(config: dict[str, object], *lines: str, env: dict[str, str] | None = None) -> tuple[ConfigState, list[str]]:
    st = ConfigState(dict(config), dict(env or {}))
    texts = [DISPATCH[i.cmd](st, i) for i in parse("FROM scratch\n" + "\n".join(lines)).stages[0].instructions]
    return st, texts


def test_env_expands_and_replaces() -> None:
    st, texts = run({"Env": ["PATH=/bin", "A=old"]}, "ENV A=new B=${A}x", 'ENV C="a b"')
    assert st.config["Env"] == ["PATH=/bin", "A=new", "B=newx", "C=a b"]
    assert texts == ["ENV A=new B=newx", "ENV C=a b"]


def test_cmd_and_entrypoint_follow_dockers_rule() -> None:
    st, _ = run({"Cmd": ["inherited"]}, 'ENTRYPOINT ["/e"]')
    assert st.config == {"Cmd": None, "Entrypoint": ["/e"]}  # an inherited CMD goes with a new ENTRYPOINT
    st, _ = run({}, "CMD run me", 'ENTRYPOINT ["/e"]')
    assert st.config == {"Cmd": ["/bin/sh", "-c", "run me"], "Entrypoint": ["/e"]}
    st, _ = run({}, 'SHELL ["/bin/bash", "-xc"]', "CMD echo hi")
    assert st.config["Cmd"] == ["/bin/bash", "-xc", "echo hi"]


def test_the_rest() -> None:
    st, texts = run({"WorkingDir": "/app"}, "EXPOSE 80 53/udp", "VOLUME /data $V", "WORKDIR sub", "USER $U",
                    "STOPSIGNAL SIGINT", "LABEL a=b", "ONBUILD RUN true",
                    "HEALTHCHECK --interval=5s --retries=2 CMD true", env={"V": "/v", "U": "nobody"})
    c = st.config
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and c["Volumes"] == {"/data": {}, "/v": {}}
    assert (c["WorkingDir"], c["User"], c["StopSignal"], c["Labels"]) == ("/app/sub", "nobody", "SIGINT", {"a": "b"})
    assert c["OnBuild"] == ["RUN true"]
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert texts[0] == "EXPOSE 53/udp 80/tcp" and texts[2] == "WORKDIR /app/sub"


def test_apply_changes_is_the_same_dispatch() -> None:
    cfg = apply_changes({"Env": ["A=1"], "Cmd": ["sh"]},
                        ["ENV B=$A", 'CMD ["cat", "/f"]', "EXPOSE 8080", "WORKDIR /tmp\nUSER 1000", "LABEL k=v"])
    assert cfg == {"Env": ["A=1", "B=1"], "Cmd": ["cat", "/f"], "ExposedPorts": {"8080/tcp": {}},
                   "WorkingDir": "/tmp", "User": "1000", "Labels": {"k": "v"}}


@pytest.mark.parametrize("change,message", [
    ("RUN true", "run is not a valid change command"),
    ("FROM x", "from is not a valid change command"),
    ("ENV", "Dockerfile parse error line 1: ENV requires at least one argument"),
    ("LABEL nokey", "Dockerfile parse error line 1: LABEL requires at least one argument"),
])
def test_apply_changes_refuses(change: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        apply_changes({}, [change])
    assert e.value.message == message
