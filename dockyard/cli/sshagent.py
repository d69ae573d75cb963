"""The ssh agents `dockyard build --ssh` offers a build, as buildx's: `ID=KEY[,KEY]` serves the keys
from memory (OpenSSH or PEM private keys: ed25519, RSA, ECDSA; parsed and signed with `cryptography`),
`ID=SOCKET` or no path ($SSH_AUTH_SOCK) passes requests to the user's agent. Either way the build
gets a read-only agent: it may list keys and sign, never add, remove or lock (buildx's readOnlyAgent).

The agent protocol (draft-miller-ssh-agent): each message is a uint32 length, a type byte, a body.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.cli.common import CLIError

FAILURE, REQUEST_IDENTITIES, IDENTITIES_ANSWER, SIGN_REQUEST, SIGN_RESPONSE = 5, 11, 12, 13, 14
RSA_SHA2_256, RSA_SHA2_512 = 2, 4
_MAX_MESSAGE = 256 * 1024  # OpenSSH's agent refuses longer messages too


def _string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _mpint(n: int) -> bytes:
    return _string(n.to_bytes(n.bit_length() // 8 + 1, "big") if n else b"")


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise ValueError("short agent message")
    (n,) = struct.unpack_from(">I", buf, pos)
    if pos + 4 + n > len(buf):
        raise ValueError("short agent message")
    return buf[pos + 4:pos + 4 + n], pos + 4 + n


def _message(kind: int, body: bytes = b"") -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


class _Key:
    """One private key: its public blob as the agent protocol names it, and how it signs."""

    def __init__(self, key: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        self.key = key
        openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        self.blob = base64.b64decode(openssh.split()[1])

    def sign(self, data: bytes, flags: int) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

        k = self.key
        if isinstance(k, ed25519.Ed25519PrivateKey):
            return _string(b"ssh-ed25519") + _string(k.sign(data))
        h: hashes.HashAlgorithm
        if isinstance(k, rsa.RSAPrivateKey):
            alg, h = (b"rsa-sha2-512", hashes.SHA512()) if flags & RSA_SHA2_512 else \
                (b"rsa-sha2-256", hashes.SHA256()) if flags & RSA_SHA2_256 else (b"ssh-rsa", hashes.SHA1())
            return _string(alg) + _string(k.sign(data, padding.PKCS1v15(), h))
        if isinstance(k, ec.EllipticCurvePrivateKey):
            bits = k.curve.key_size
            curve_h: dict[int, tuple[bytes, hashes.HashAlgorithm]] = {
                256: (b"nistp256", hashes.SHA256()), 384: (b"nistp384", hashes.SHA384()),
                521: (b"nistp521", hashes.SHA512())}
            name, h = curve_h[bits]
            r, s = utils.decode_dss_signature(k.sign(data, ec.ECDSA(h)))
            return _string(b"ecdsa-sha2-" + name) + _string(_mpint(r) + _mpint(s))
        raise ValueError("unsupported key type")


def load_key(path: str) -> _Key:
    """A private key file, as buildx reads one (100 KiB at most), with its error words."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        with open(path, "rb") as f:
            data = f.read(100 * 1024)
    except OSError as e:
        raise CLIError(f"failed to open {path}: {(e.strerror or str(e)).lower()}") from None
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key: Any = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:  # TypeError: encrypted, and no password
        why = "this private key is passphrase protected" if isinstance(e, TypeError) else "ssh: no key found"
        raise CLIError(f"failed to parse {path}: {why}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CLIError(f"failed to parse {path}: ssh: unsupported key type")
    return _Key(key)


class AgentConn:
    """One connection to an agent, fed the build's bytes and giving back the agent's answers."""

    def __init__(self, answer: Callable[[int, bytes], bytes], close: Callable[[], None] = lambda: None) -> None:
        self.buf = b""
        self._answer = answer
        self.close = close

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from(">I", self.buf)
            if n == 0 or n > _MAX_MESSAGE:
                raise ValueError("bad agent message length")
            if len(self.buf) < 4 + n:
                break
            msg, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            kind, body = msg[0], msg[1:]
            out.append(self._answer(kind, body) if kind in (REQUEST_IDENTITIES, SIGN_REQUEST) else _message(FAILURE))
        return out


class KeyAgent:
    """An agent holding key files in memory (buildx: a keyring of AddedKeys, no comments)."""

    def __init__(self, keys: list[_Key]) -> None:
        self.keys = keys

    def _answer(self, kind: int, body: bytes) -> bytes:
        if kind == REQUEST_IDENTITIES:
            return _message(IDENTITIES_ANSWER, struct.pack(">I", len(self.keys)) +
                            b"".join(_string(k.blob) + _string(b"") for k in self.keys))
        try:
            blob, pos = _read_string(body, 0)
            data, pos = _read_string(body, pos)
            flags = struct.unpack_from(">I", body, pos)[0] if pos + 4 <= len(body) else 0
        except (ValueError, struct.error):
            return _message(FAILURE)
        for k in self.keys:
            if k.blob == blob:
                return _message(SIGN_RESPONSE, _string(k.sign(data, flags)))
        return _message(FAILURE)

    def connect(self) -> AgentConn:
        return AgentConn(self._answer)


class SocketAgent:
    """The user's agent behind a unix socket; only listing and signing go through."""

    def __init__(self, path: str) -> None:
        self.path = path

    def connect(self) -> AgentConn:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)  # an agent that asks the user to confirm may take a while
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            raise

        def answer(kind: int, body: bytes) -> bytes:
            s.sendall(_message(kind, body))
            head = _recv_exact(s, 4)
            (n,) = struct.unpack(">I", head)
            if n == 0 or n > _MAX_MESSAGE:
                raise ValueError("bad agent message length")
            return head + _recv_exact(s, n)

        return AgentConn(answer, s.close)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("the agent closed the connection")
        out += chunk
    return out


Agent = KeyAgent | SocketAgent


def agents_from_flags(values: list[str]) -> dict[str, Agent]:
    """`--ssh default|ID[=SOCKET|KEY[,KEY...]]` (buildx's), each id's agent; no path: $SSH_AUTH_SOCK."""
    out: dict[str, Agent] = {}
    for v in values:
        sid, eq, rest = v.partition("=")
        sid = sid or "default"
        paths = [p for p in rest.split(",") if p] if eq else []
        if not paths:
            sock = os.environ.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise CLIError("invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set")
            paths = [sock]
        keys: list[_Key] = []
        sock_path = ""
        for p in paths:
            if sock_path:
                raise CLIError("only single socket allowed")
            p = str(Path(p).expanduser())
            try:
                st = os.stat(p)
            except OSError as e:
                raise CLIError(f"stat {p}: {(e.strerror or str(e)).lower()}") from None
            if stat.S_ISSOCK(st.st_mode):
                if keys:
                    raise CLIError("invalid combination of keys and sockets")
                sock_path = p
                continue
            keys.append(load_key(p))
        out[sid] = SocketAgent(sock_path) if sock_path else KeyAgent(keys)
    return out
