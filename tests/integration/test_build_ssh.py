"""`RUN --mount=type=ssh` fed by `dockyard build --ssh` (issue 14): key files served by an agent in the
CLI (buildx's `--ssh ID=KEY[,KEY]`), the user's agent socket, the socket's mode/uid/gid as BuildKit
makes it, and a daemon on another host (here: TCP on loopback, so no client path is of use to it):
the agent travels over the build session. Inside the build a tiny static agent client (busybox has no
ssh-add) lists the keys and has each sign a fixed text; ed25519 and RSA (PKCS#1 v1.5) signatures are
deterministic, so the output is compared byte for byte with BuildKit's and checked with the public keys."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, own_daemon, static_binary
from tests.integration.test_build_buildkit import _added, _buildkit, _listing, _rmi

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"]), ("ecdsa", ["-b", "256"])):
        out[kind] = tmp_path / f"id_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"{kind}@test", "-f", str(out[kind])],
                       check=True)
    return out


@pytest.fixture
def agent(tmp_path: Path, keys: dict[str, Path]) -> Iterator[Path]:
    """A real ssh-agent holding the ECDSA key."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):  # the agent binds its socket before serving
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert sock.exists(), "ssh-agent did not start"
        subprocess.run(["ssh-add", str(keys["ecdsa"])], env={**os.environ, "SSH_AUTH_SOCK": str(sock)}, check=True,
                       capture_output=True)
        yield sock
    finally:
        proc.kill()
        proc.wait()


def _verify(line: str, data: bytes = b"dockyard") -> str:
    """A line of agent_ask's output checked: the signature verifies with the key blob. Gives the key type."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

    def strings(b: bytes) -> list[bytes]:
        out, pos = [], 0
        while pos < len(b):
            n = int.from_bytes(b[pos:pos + 4], "big")
            out.append(b[pos + 4:pos + 4 + n])
            pos += 4 + n
        return out

    blob_hex, sig_hex = line.split()
    blob, sig = bytes.fromhex(blob_hex), bytes.fromhex(sig_hex)
    kind = strings(blob)[0].decode()
    import base64

    pub = serialization.load_ssh_public_key(kind.encode() + b" " + base64.b64encode(blob))
    alg, raw = strings(sig)
    if isinstance(pub, ed25519.Ed25519PublicKey):
        pub.verify(raw, data)
    elif isinstance(pub, rsa.RSAPublicKey):
        assert alg == b"rsa-sha2-256"
        pub.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        r, s = (int.from_bytes(x, "big") for x in strings(raw))
        pub.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    return kind


SSH_MOUNTS = """\
FROM busybox:latest
COPY agent_ask /bin/agent_ask
RUN --mount=type=ssh stat -c '%a %u %g' "$SSH_AUTH_SOCK" > /m-default && agent_ask > /keys-default
RUN --mount=type=ssh,id=rsa,mode=0640,uid=7,gid=8,target=/tmp/agent.sock \
    stat -c '%a %u %g' /tmp/agent.sock > /m-set && echo "$SSH_AUTH_SOCK" > /env-set && agent_ask > /keys-rsa
RUN --mount=type=ssh,id=rsa,mode=0777 stat -c '%a' "$SSH_AUTH_SOCK" > /m-777
USER 7
RUN --mount=type=ssh,id=rsa,uid=7 agent_ask > /tmp/keys-user7
"""


def test_ssh_key_files_mode_uid_gid_match_buildkit(daemon: Any, real_dockerd: str, tmp_path: Path,
                                                   keys: dict[str, Path]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    static_binary("agent_ask", ctx)
    (ctx / "Dockerfile").write_text(SSH_MOUNTS)
    # --no-cache: neither cache key holds the keys (BuildKit's neither), and each run makes new ones
    flags = ["--no-cache", "--ssh", f"default={keys['ed25519']},{keys['rsa']}", "--ssh", f"rsa={keys['rsa']}"]
    tag = "bksshkeys" + secrets.token_hex(4)
    try:
        ref = _buildkit(real_dockerd, ctx, tag, *flags)
        assert ref.returncode == 0, ref.stderr
        daemon.dockyard("build", *flags, "-t", tag, str(ctx))
        theirs, ours = _added(real_dockerd, tag), _added(daemon.host, tag)
        assert {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)} \
            == {}
        out = daemon.docker("run", "--rm", tag, "cat", "/m-default", "/m-set", "/env-set", "/m-777").stdout.decode()
        assert out.split("\n") == ["600 0 0", "640 7 8", "/tmp/agent.sock", "777", ""]
        lines = daemon.docker("run", "--rm", tag, "cat", "/keys-default").stdout.decode().splitlines()
        assert [_verify(line) for line in lines] == ["ssh-ed25519", "ssh-rsa"]
        user7 = daemon.docker("run", "--rm", tag, "cat", "/tmp/keys-user7").stdout.decode().splitlines()
        assert [_verify(line) for line in user7] == ["ssh-rsa"]
        assert not any(p.startswith("/run/buildkit/") or p == "/tmp/agent.sock" for p in _listing(daemon.host, tag))
    finally:
        _rmi(real_dockerd, tag)
        daemon.docker("rmi", "-f", tag, check=False)


def test_ssh_flag_errors(daemon: Any, tmp_path: Path, keys: dict[str, Path], agent: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\n")
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(locked)], check=True)
    cases = {
        f"default={tmp_path}/nokey": f"stat {tmp_path}/nokey: no such file or directory",
        f"default={garbage}": f"failed to parse {garbage}: ssh: no key found",
        f"default={locked}": f"failed to parse {locked}: this private key is passphrase protected",
        f"default={keys['rsa']},{agent}": "invalid combination of keys and sockets",
        f"default={agent},{keys['rsa']}": "only single socket allowed",
    }
    for flag, msg in cases.items():
        p = daemon.dockyard("build", "--ssh", flag, str(tmp_path), check=False)
        assert p.returncode != 0 and msg in p.stderr.decode(), (flag, p.stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The client's side in a mount namespace of its own, its agent socket on a tmpfs only that namespace
# sees: the daemon cannot reach the agent by path, only through the session.
_PRIVATE_CLIENT = """
set -e
mount -t tmpfs tmpfs "$AGENT_DIR"
ssh-agent -D -a "$AGENT_DIR/agent.sock" >/dev/null 2>&1 &
agent=$!
trap 'kill $agent' EXIT
i=0
while [ ! -S "$AGENT_DIR/agent.sock" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
SSH_AUTH_SOCK="$AGENT_DIR/agent.sock" ssh-add "$AGENT_KEY" >/dev/null 2>&1
[ -n "$USE_AGENT" ] && export SSH_AUTH_SOCK="$AGENT_DIR/agent.sock"
"$@"
"""


def test_ssh_to_a_daemon_on_tcp(tmp_path: Path, keys: dict[str, Path]) -> None:
    """The daemon listens on TCP, the client keeps its agent where the daemon cannot see it: key files
    served from the CLI process, and the user's agent ($SSH_AUTH_SOCK, or `ID=SOCKET`), both reach the
    step through the build session."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    static_binary("agent_ask", ctx)
    (ctx / "Dockerfile").write_text(
        "FROM busybox:latest\nCOPY agent_ask /bin/agent_ask\n"
        "RUN --mount=type=ssh --mount=type=ssh,id=other,target=/run/other.sock agent_ask > /keys && "
        "SSH_AUTH_SOCK=/run/other.sock agent_ask > /other-keys\n")
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    port = _free_port()
    with own_daemon("dy-sshtcp-", "-H", f"tcp://127.0.0.1:{port}") as d:
        env = {**d.env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "AGENT_DIR": str(agent_dir),
               "AGENT_KEY": str(keys["ecdsa"])}
        env.pop("SSH_AUTH_SOCK", None)

        def client(*args: str, use_agent: bool = False) -> subprocess.CompletedProcess[bytes]:
            e = {**env, "USE_AGENT": "1" if use_agent else ""}
            return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE_CLIENT,
                                   "client", sys.executable, "-m", "dockyard.cli.main", *args], env=e,
                                  capture_output=True, timeout=300, cwd=ROOT)

        p = client("build", "--ssh", f"default={keys['ed25519']},{keys['rsa']}", "--ssh",
                   f"other={agent_dir}/agent.sock", "-t", "sshtcp", str(ctx))
        assert p.returncode == 0, p.stderr
        assert not list(agent_dir.iterdir())  # the agent's socket was never in the daemon's view
        out = d.docker("run", "--rm", "sshtcp", "cat", "/keys").stdout.decode().splitlines()
        assert [_verify(line) for line in out] == ["ssh-ed25519", "ssh-rsa"]
        other = d.docker("run", "--rm", "sshtcp", "cat", "/other-keys").stdout.decode().splitlines()
        assert [_verify(line) for line in other] == ["ecdsa-sha2-nistp256"]
        # `--ssh default` with no path: $SSH_AUTH_SOCK, forwarded the same way; required and absent: BuildKit's error
        (ctx / "Dockerfile").write_text("FROM busybox:latest\nCOPY agent_ask /bin/agent_ask\n"
                                        "RUN --mount=type=ssh agent_ask > /keys\n"
                                        "RUN --mount=type=ssh,id=nope,required true\n")
        p = client("build", "--ssh", "default", "-t", "sshtcp", str(ctx), use_agent=True)
        assert p.returncode != 0 and 'no SSH key "nope" forwarded from the client' in p.stderr.decode(), p.stderr
        assert "Step 4/4" in p.stdout.decode()  # the first RUN (through $SSH_AUTH_SOCK's agent) passed
        p = client("build", "--ssh", "default", str(ctx))
        assert p.returncode != 0 and "invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set" in \
            p.stderr.decode()
