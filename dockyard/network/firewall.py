"""nftables rules for our bridges, rendered as text and applied atomically with `nft -f`.

One table per daemon (`ip <table>`), replaced as a whole when it changes: the rules are derived
state, rebuilt from the DB, so there is never a half-updated rule set. The one exception is the
`run -p` path: ports only added since our last full replace go in as appended rules (`sync`),
because replacing the table re-registers its hooks and waits out an RCU grace period (10-20 ms).
Rule sets go to libnftables in-process when it loads (no fork/exec of nft), else to `nft -f -`.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass

from dockyard import trace
from dockyard.errors import SystemError_


@dataclass(frozen=True)
class BridgeNet:
    bridge: str
    subnet: str  # "172.18.0.0/16"
    internal: bool = False
    subnet6: str = ""  # "fd00:1::/64" on a dual-stack network


@dataclass(frozen=True)
class PortMap:
    proto: str  # "tcp" | "udp"
    host_ip: str  # "0.0.0.0" for any
    host_port: int
    ip: str  # the container's address
    port: int


def _q(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def render(table: str, nets: list[BridgeNet], ports: list[PortMap]) -> str:
    """The whole table. Starting with add+delete makes `nft -f` replace it in one transaction."""
    bridges = [n.bridge for n in nets]
    out = [f"add table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]
    # Published ports: DNAT anything addressed to a local address, from outside (prerouting)
    # and from the host itself (output), so 127.0.0.1:8080 and the host's other IPs all work.
    out += ["  chain ports {"]
    out += [f"    {_port_rule(p)}" for p in ports]
    out += ["  }"]
    out += ["  chain prerouting {", "    type nat hook prerouting priority -100; policy accept;",
            "    fib daddr type local jump ports", "  }"]
    out += ["  chain output {", "    type nat hook output priority -100; policy accept;",
            "    fib daddr type local jump ports", "  }"]
    out += ["  chain postrouting {", "    type nat hook postrouting priority 100; policy accept;"]
    for n in nets:
        br = _q(n.bridge)
        if not n.internal:  # outbound NAT for containers
            out.append(f"    ip saddr {n.subnet} oifname != {br} masquerade")
        # Loopback clients DNATed to a container: 127.x is not routable on the bridge
        # (route_localnet lets it through), so the source becomes the bridge address.
        out.append(f"    ip saddr 127.0.0.0/8 oifname {br} masquerade")
        # Hairpin: a container reaching a published port that lands on its own bridge must see
        # replies come back through the host, not straight from the peer.
        out.append(f"    ct status dnat ip saddr {n.subnet} oifname {br} masquerade")
    out += ["  }"]
    out += ["  chain forward {", "    type filter hook forward priority 0; policy accept;",
            "    ct state established,related accept",
            "    ct status dnat accept"]  # published ports are reachable from any network
    for n in nets:
        br = _q(n.bridge)
        others = [_q(b) for b in bridges if b != n.bridge]
        if n.internal:  # no way in or out except the bridge itself
            out.append(f"    iifname {br} oifname != {br} drop")
            out.append(f"    oifname {br} iifname != {br} drop")
        elif others:  # isolation between our networks
            out.append(f"    iifname {br} oifname {{ {', '.join(others)} }} drop")
    out += ["  }", "}"]
    out += _render6(table, nets)
    return "\n".join(out) + "\n"


def _render6(table: str, nets: list[BridgeNet]) -> list[str]:
    """IPv6: isolation between our networks and no way out of an internal one, as for v4. No NAT:
    like dockerd without ip6tables, v6 is routed. The table exists only while a network has v6."""
    out = [f"add table ip6 {table}", f"delete table ip6 {table}"]
    v6 = [n for n in nets if n.subnet6]
    if not v6:
        return out
    out += [f"table ip6 {table} {{", "  chain forward {", "    type filter hook forward priority 0; policy accept;",
            "    ct state established,related accept"]
    for n in v6:
        br = _q(n.bridge)
        others = [_q(o.bridge) for o in nets if o.bridge != n.bridge]
        if n.internal:
            out.append(f"    iifname {br} oifname != {br} drop")
            out.append(f"    oifname {br} iifname != {br} drop")
        elif others:
            out.append(f"    iifname {br} oifname {{ {', '.join(others)} }} drop")
    out += ["  }", "}"]
    return out


def _port_rule(p: PortMap) -> str:
    match = "" if p.host_ip in ("", "0.0.0.0") else f"ip daddr {p.host_ip} "
    return f"{match}{p.proto} dport {p.host_port} dnat to {p.ip}:{p.port}"


# table -> (nets, ports) as last applied by sync(), to tell a pure port addition from anything else
_applied: dict[str, tuple[tuple[BridgeNet, ...], Counter[PortMap]]] = {}
_lock = threading.Lock()


def sync(table: str, nets: list[BridgeNet], ports: list[PortMap]) -> None:
    """Make the table hold exactly these networks and ports. When the only change since the last sync
    is added ports, they are appended to the ports chain; anything else replaces the table."""
    want = (tuple(nets), Counter(ports))
    with _lock:
        prev = _applied.pop(table, None)
        added = want[1] - prev[1] if prev is not None else Counter()
        if prev is not None and prev[0] == want[0] and added and not prev[1] - want[1]:
            script = "".join(f"add rule ip {table} ports {_port_rule(p)}\n" for p in added.elements())
            try:
                with trace.step("nft", script.strip().replace("\n", "; "), _PORTS_WHY) as s:
                    s.result = _echoed(_run(script, echo=trace.ENABLED))
                _applied[table] = want
                return
            except SystemError_:
                pass  # the table went away behind our back: rebuild it whole
        if prev is not None and prev[0] == want[0]:
            why = _PORTS_WHY if added else "published ports went away with their container: the table is rebuilt without them"
        else:
            why = "the networks changed: NAT, isolation and published ports are rebuilt as one transaction"
        with trace.step("nft", f"nft -f - (replace table ip {table}: {len(nets)} bridges, {len(ports)} ports)",
                        why, [f"ports: {_port_rule(p)}" for p in ports]) as s:
            s.result = _echoed(_run(render(table, nets, ports), echo=trace.ENABLED))
        _applied[table] = want


_PORTS_WHY = "-p: connections to the host port are DNATed to the container's address and port"


def _echoed(out: str) -> str:
    """What the kernel echoed back for the rules that rewrite addresses (with their handles)."""
    rules = [ln.strip() for ln in out.splitlines() if "dnat to" in ln]
    if rules:
        return "; ".join(rules)
    handles = [ln for ln in out.splitlines() if "# handle" in ln]
    return f"the kernel echoed {len(handles)} rules and chains back" if handles else "applied"


def delete_table(table: str) -> None:
    with _lock:
        _applied.pop(table, None)
    for family in ("ip", "ip6"):
        r = subprocess.run(["nft", "list", "table", family, table], capture_output=True, text=True)
        if r.returncode == 0:
            with trace.step("nft", f"nft delete table {family} {table}", "no network left to serve: the rules go"):
                _nft(["delete", "table", family, table])


_NFT_OUTPUT_HANDLE, _NFT_OUTPUT_ECHO = 1 << 3, 1 << 5  # libnftables' nft_ctx_output_flags


class _LibNft:
    """libnftables through ctypes: the same parser and netlink code as the nft binary, minus its exec."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib
        self.libc = ctypes.CDLL(None)

    def run(self, script: str, echo: bool = False) -> str:
        """Run the script; with echo, return what the kernel echoed back (the rules, with handles)."""
        ctx = self.lib.nft_ctx_new(0)
        if not ctx:
            raise SystemError_("nft: cannot create a libnftables context")
        try:
            self.lib.nft_ctx_buffer_output(ctx)  # keep its messages off our stdout/stderr
            self.lib.nft_ctx_buffer_error(ctx)
            if echo:
                self.lib.nft_ctx_output_set_flags(ctx, _NFT_OUTPUT_HANDLE | _NFT_OUTPUT_ECHO)
            if self.lib.nft_run_cmd_from_buffer(ctx, script.encode()) != 0:
                err = (self.lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
                raise SystemError_(f"nft -f -: {err.strip()}")
            return (self.lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace") if echo else ""
        finally:
            self.lib.nft_ctx_free(ctx)
            # libnftables caches the host's whole ruleset per run and frees it into malloc's arenas;
            # hand those pages back, or the daemon keeps ~4 MiB more for good.
            self.libc.malloc_trim(0)


@functools.cache
def _libnft() -> _LibNft | None:
    try:
        return _LibNft()
    except (OSError, AttributeError):  # no libnftables.so.1 (or too old): use the nft binary
        return None


def _run(script: str, echo: bool = False) -> str:
    """Run an nft script as one transaction; with echo, return the kernel's echo of what it added.
    Callers hold _lock: libnftables is not thread-safe."""
    lib = _libnft()
    if lib is not None:
        return lib.run(script, echo)
    return _nft(["--echo", "--handle", "-f", "-"] if echo else ["-f", "-"], script)


def table_exists(table: str) -> bool:
    return subprocess.run(["nft", "list", "table", "ip", table], capture_output=True).returncode == 0


def _nft(args: list[str], stdin: str | None = None) -> str:
    r = subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemError_(f"nft {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


# --- Coexisting with a FORWARD DROP policy ----------------------------------------------------
# A packet dropped by any base chain is dropped, so when dockerd (iptables-nft) has set
# `-P FORWARD DROP` our accept cannot win. Like netavark, we then insert accepts for our bridges
# into iptables' FORWARD chain, tagged with a comment naming our table so we can remove exactly ours.

def _iptables(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


def forward_policy_drops() -> bool:
    try:
        r = _iptables(["-S", "FORWARD"])
    except FileNotFoundError:
        return False
    return r.returncode == 0 and "-P FORWARD DROP" in r.stdout


def ensure_forward_accept(table: str, bridge: str) -> None:
    if not forward_policy_drops():
        return
    for direction in ("-i", "-o"):
        rule = ["FORWARD", direction, bridge, "-m", "comment", "--comment", f"dockyard:{table}", "-j", "ACCEPT"]
        if _iptables(["-C", *rule]).returncode != 0:
            with trace.step("iptables", f"iptables -I {' '.join(rule)}",
                            "the host's FORWARD policy is DROP (dockerd's doing): let this bridge's traffic through") as s:
                s.result = f"exit {_iptables(['-I', *rule]).returncode}"


def remove_forward_accept(table: str, bridge: str | None = None) -> None:
    """Our accepts for `bridge` (all our bridges when None)."""
    try:
        r = _iptables(["-S", "FORWARD"])
    except FileNotFoundError:
        return
    for line in r.stdout.splitlines():
        if f"dockyard:{table}" not in line or not line.startswith("-A FORWARD "):
            continue
        parts = [w.strip('"') for w in line.split()]
        if bridge is not None and bridge not in parts:
            continue
        # -S quotes the comment; it has no spaces, so split() and unquoting give the exact rule.
        _iptables(["-D", *parts[1:]])


def list_rules(table: str) -> list[tuple[str, str]]:
    """The rules of our table as the kernel holds them now: [(chain, rule text)] (empty when absent)."""
    r = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)
    out: list[tuple[str, str]] = []
    chain = ""
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        text = line.strip()
        if text.startswith("chain "):
            chain = text.split()[1]
        elif text and text != "}" and not text.startswith(("type ", "table ")):
            out.append((chain, text))
    return out
