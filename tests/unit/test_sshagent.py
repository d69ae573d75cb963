"""The CLI's ssh agent for `dockyard build --ssh ID=KEY` (dockyard/cli/sshagent.py), against keys
ssh-keygen makes: the identities answer, signatures the public keys verify (RSA's three algorithms,
ECDSA's r and s), messages split across reads, and the read-only rule (adding a key fails)."""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from dockyard.cli.sshagent import KeyAgent, _message, _read_string, _string, load_key

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


def _keygen(tmp_path: Path, kind: str, *extra: str) -> Path:
    p = tmp_path / f"id_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(p)], check=True)
    return p


def _body(answer: bytes, kind: int) -> bytes:
    (n,) = struct.unpack(">I", answer[:4])
    assert len(answer) == 4 + n and answer[4] == kind, answer[:8]
    return answer[5:]


def test_identities_and_signatures(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    paths = [_keygen(tmp_path, "ed25519"), _keygen(tmp_path, "rsa", "-b", "2048"), _keygen(tmp_path, "ecdsa", "-b", "384")]
    conn = KeyAgent([load_key(str(p)) for p in paths]).connect()
    [ids] = conn.feed(_message(11))
    body = _body(ids, 12)
    assert struct.unpack(">I", body[:4])[0] == 3
    pos, blobs = 4, []
    for _ in range(3):
        blob, pos = _read_string(body, pos)
        _comment, pos = _read_string(body, pos)
        blobs.append(blob)
    # the blobs are the public keys ssh-keygen wrote
    assert blobs == [base64.b64decode(Path(f"{p}.pub").read_text().split()[1]) for p in paths]
    pubs = [serialization.load_ssh_public_key(Path(f"{p}.pub").read_bytes()) for p in paths]

    def sign(blob: bytes, flags: int) -> tuple[bytes, bytes]:
        req = _message(13, _string(blob) + _string(b"payload") + struct.pack(">I", flags))
        # split in two reads: the agent waits for the whole message
        assert conn.feed(req[:7]) == []
        [ans] = conn.feed(req[7:])
        sig, _ = _read_string(_body(ans, 14), 0)
        alg, pos = _read_string(sig, 0)
        raw, _ = _read_string(sig, pos)
        return alg, raw

    alg, raw = sign(blobs[0], 0)
    assert alg == b"ssh-ed25519"
    pubs[0].verify(raw, b"payload")
    for flags, name, h in ((0, b"ssh-rsa", hashes.SHA1()), (2, b"rsa-sha2-256", hashes.SHA256()),
                           (4, b"rsa-sha2-512", hashes.SHA512())):
        alg, raw = sign(blobs[1], flags)
        assert alg == name
        pubs[1].verify(raw, b"payload", padding.PKCS1v15(), h)
    alg, raw = sign(blobs[2], 0)
    assert alg == b"ecdsa-sha2-nistp384"
    r, pos = _read_string(raw, 0)
    s, _ = _read_string(raw, pos)
    der = utils.encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    pubs[2].verify(der, b"payload", ec.ECDSA(hashes.SHA384()))


def test_read_only_and_unknown_keys(tmp_path: Path) -> None:
    conn = KeyAgent([load_key(str(_keygen(tmp_path, "ed25519")))]).connect()
    # SSH_AGENTC_ADD_IDENTITY, REMOVE_ALL_IDENTITIES, LOCK: refused as by buildx's read-only agent
    for kind in (17, 19, 22):
        assert conn.feed(_message(kind, b"x")) == [_message(5)]
    assert conn.feed(_message(13, _string(b"no such key") + _string(b"d") + struct.pack(">I", 0))) == [_message(5)]
