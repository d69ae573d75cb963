"""Legacy container links (`--link name:alias`), as dockerd 20.10 keeps them.

On the default bridge a link gives the container environment variables describing the linked one
(`ALIAS_PORT_80_TCP_ADDR=...`, `ALIAS_ENV_FOO=...`) and a hosts entry; on a user network it is only a
name the linking container's DNS answers (network service). HostConfig.Links holds them normalized,
"/target:/parent/alias", and `rm --link parent/alias` drops one.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.errors import InvalidParameter


@dataclass(frozen=True)
class Link:
    target: str  # the linked container's name, without "/"
    parent: str
    alias: str

    def spec(self) -> str:
        return f"/{self.target}:/{self.parent}/{self.alias}"


def parse(spec: str, parent: str) -> Link:
    """"name", "name:alias" or the stored "/name:/parent/alias"."""
    if not isinstance(spec, str) or not spec:
        raise InvalidParameter(f"invalid link: {spec!r}")
    target, _, alias = spec.partition(":")
    target = target.lstrip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else target
    if not target or not alias:
        raise InvalidParameter(f"invalid link: {spec}")
    return Link(target, parent, alias)


def env(link: Link, ip: str, exposed: list[str], child_env: list[str]) -> list[str]:
    """The variables a link adds: the default port, each port (and each run of consecutive ports), the
    link's name and the linked container's own environment (but HOME and PATH)."""
    prefix = link.alias.upper().replace("-", "_")
    ports = sorted((_port(k) for k in exposed), key=lambda p: (p[0], p[1] != "tcp"))
    out: list[str] = []
    if ports:
        port, proto = ports[0]
        out.append(f"{prefix}_PORT={proto}://{ip}:{port}")
    for start, end, proto in _runs(ports):
        if start != end:
            base = f"{prefix}_PORT_{start}_{proto.upper()}"
            out += [f"{base}_START={proto}://{ip}:{start}", f"{base}_ADDR={ip}", f"{base}_PORT_START={start}",
                    f"{base}_PORT_END={end}", f"{base}_END={proto}://{ip}:{end}"]
    for port, proto in ports:
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [f"{base}={proto}://{ip}:{port}", f"{base}_ADDR={ip}", f"{base}_PORT={port}", f"{base}_PROTO={proto}"]
    out.append(f"{prefix}_NAME=/{link.parent}/{link.alias}")
    for kv in child_env:
        k, eq, v = kv.partition("=")
        if eq and k not in ("HOME", "PATH"):
            out.append(f"{prefix}_ENV_{k}={v}")
    return out


def _port(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), (proto or "tcp").lower()


def _runs(ports: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """Consecutive ports of one protocol, in the sorted order: [(start, end, proto)]."""
    runs: list[tuple[int, int, str]] = []
    for port, proto in ports:
        if runs and runs[-1][2] == proto and runs[-1][1] + 1 == port:
            runs[-1] = (runs[-1][0], port, proto)
        else:
            runs.append((port, port, proto))
    return runs
