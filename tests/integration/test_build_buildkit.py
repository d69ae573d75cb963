"""BuildKit's Dockerfile syntax in our builder (issue 14), against BuildKit itself: the same
Dockerfiles built by the docker 20.10 CLI with DOCKER_BUILDKIT=1 on the real dockerd and by
`dockyard build` on ours; what each build added to busybox (paths, types, modes, owners, contents)
must be the same. The reference runs its steps with --network none (its daemon has no bridge)."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

BUILDKIT_CLI = "/usr/bin/docker"  # Debian's docker.io 20.10: BuildKit built in, no buildx needed
SECRET = b"s3cr3t-" + secrets.token_hex(8).encode()


def _listing(host: str, ref: str) -> dict[str, tuple[Any, ...]]:
    """path -> (type, mode, uid, gid, content digest or link target) of the image's filesystem."""
    env = {**os.environ, "DOCKER_HOST": host}
    cid = subprocess.run([BUILDKIT_CLI, "create", ref, "true"], env=env, capture_output=True, check=True,
                         text=True).stdout.strip()
    try:
        data = subprocess.run([BUILDKIT_CLI, "export", cid], env=env, capture_output=True, check=True).stdout
    finally:
        subprocess.run([BUILDKIT_CLI, "rm", "-f", cid], env=env, capture_output=True)
    out: dict[str, tuple[Any, ...]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            body: Any = m.linkname
            if m.isfile():
                f = tf.extractfile(m)
                body = hashlib.sha256(f.read() if f else b"").hexdigest()[:16]
            out["/" + m.name.strip("/").removeprefix("./")] = (m.type, oct(m.mode & 0o7777), m.uid, m.gid, body)
    return out


def _added(host: str, ref: str) -> dict[str, tuple[Any, ...]]:
    """What the build added to busybox or changed in it."""
    base = _listing(host, "busybox:latest")
    return {p: v for p, v in _listing(host, ref).items() if base.get(p) != v and p not in ("/.dockerenv",)}


def _buildkit(host: str, ctx: Path, tag: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain"}
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run([BUILDKIT_CLI, "build", "--network", "none", "-t", tag, *args, str(ctx)], env=env,
                          capture_output=True, text=True, timeout=300)


def _rmi(host: str, *refs: str) -> None:
    subprocess.run([BUILDKIT_CLI, "rmi", "-f", *refs], env={**os.environ, "DOCKER_HOST": host},
                   capture_output=True)


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                found.append(str(p))
    return found


MOUNTS = """\
FROM busybox:latest AS gen
RUN mkdir /out && echo gen > /out/g
FROM busybox:latest
WORKDIR /w
RUN --mount=type=cache,target=/cache,id=c-RUNID echo x >> /cache/log && wc -l < /cache/log > /count
RUN --mount=type=cache,target=rel,id=c2-RUNID,uid=7,gid=8,mode=0700 stat -c '%a %u %g' /w/rel > /c2mode
RUN --mount=type=bind,target=/ctx cat /ctx/f.txt > /ctxf && ls /ctx > /ctxlist
RUN --mount=type=bind,target=/ctx,rw echo y > /ctx/new && ls /ctx > /ctxlist2
RUN --mount=type=bind,source=f.txt,target=/etc/f.txt cat /etc/f.txt > /bf
RUN --mount=type=bind,from=gen,source=/out,target=/g cat /g/g > /fromstage
RUN --mount=type=tmpfs,target=/tmp/t touch /tmp/t/gone && ls /tmp/t > /tmplist
RUN --mount=type=secret,id=s1 wc -c < /run/secrets/s1 > /seclen
RUN --mount=type=secret,id=s1,target=/etc/sec,mode=0440,uid=5,gid=6 stat -c '%a %u %g' /etc/sec > /secmode
RUN --mount=type=secret,id=absent echo ok > /optional
"""


def test_run_mounts_match_buildkit(daemon: Any, real_dockerd: str, tmp_path: Path) -> None:
    runid = secrets.token_hex(6)  # cache ids of this run only (20.10's BuildKit expands no --mount option)
    dockerfile = MOUNTS.replace("RUNID", runid)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "f.txt").write_text("hello\n")
    sec = tmp_path.parent / f"{tmp_path.name}-secret"
    sec.write_bytes(SECRET)
    tag = "bkmounts" + secrets.token_hex(4)
    try:
        ref = _buildkit(real_dockerd, tmp_path, tag, "--secret", f"id=s1,src={sec}")
        assert ref.returncode == 0, ref.stderr
        p = daemon.dockyard("build", "--secret", f"id=s1,src={sec}", "-t", tag,
                            str(tmp_path))
        theirs, ours = _added(real_dockerd, tag), _added(daemon.host, tag)
        assert {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)} \
            == {}
        assert "/run/secrets/s1" not in ours and "/etc/sec" not in ours and "/w/rel" in ours
        # the secret's bytes: in no layer, history line or log line
        saved = daemon.docker("save", tag).stdout
        assert SECRET not in saved
        assert SECRET.decode() not in p.stdout.decode() + p.stderr.decode()
        hist = daemon.docker("history", "--no-trunc", tag).stdout
        assert SECRET not in hist and b"--mount" not in hist
        assert _files_holding(daemon.data_root, SECRET) == []

        # The cache mount outlives the build; a step that changed runs again and sees it.
        (tmp_path / "Dockerfile").write_text(dockerfile.replace("wc -l < /cache/log > /count",
                                                            "wc -l < /cache/log > /count2"))
        daemon.dockyard("build", "--secret", f"id=s1,src={sec}", "-t", tag,
                        str(tmp_path))
        out = daemon.docker("run", "--rm", tag, "cat", "/count2").stdout
        assert out.strip() == b"2"
        df = daemon.docker("system", "df", "-v").stdout.decode()
        assert "exec.cachemount" in df
        pruned = daemon.docker("builder", "prune", "-af").stdout.decode()
        assert "Total reclaimed space" in pruned
        assert not any((daemon.data_root / "build" / "cache-mounts").iterdir())
    finally:
        _rmi(real_dockerd, tag)
        daemon.docker("rmi", "-f", tag, check=False)
        sec.unlink()


def test_secret_required_and_mount_errors(daemon: Any, tmp_path: Path) -> None:
    cases = {
        "RUN --mount=type=secret,id=x,required cat /run/secrets/x": "secret x: not found",
        "RUN --mount=type=tmpfs,target=/t,mode=0700 true": 'mode not allowed for "tmpfs" type mounts',
        "RUN --mount=type=bind,target=/t,size=1m true": "unexpected key 'size' for mount type 'bind'",
        "RUN --mount=type=foo,target=/t true": 'unsupported mount type "foo"',
        "RUN --mount=type=cache,target=/t,sharing=nope true": 'unsupported sharing value "nope"',
        "RUN --mount=type=cache,target=/t,bogus=1 true": "unexpected key 'bogus' in 'bogus=1'",
        "RUN --frob true": "Unknown flag: frob",
    }
    for line, msg in cases.items():
        (tmp_path / "Dockerfile").write_text(f"FROM busybox:latest\nRUN true\n{line}\n")
        p = daemon.dockyard("build", str(tmp_path), check=False)
        assert p.returncode != 0
        assert msg in p.stderr.decode(), (line, p.stderr)
        assert "line 3" in p.stderr.decode() or "secret" in msg, (line, p.stderr)


def test_network_none_and_secret_env(daemon: Any, tmp_path: Path) -> None:
    """Beyond docker 20.10's BuildKit (RUN --network is in its labs channel, secret env= and tmpfs
    size came later): the values newer BuildKit gives."""
    sec = tmp_path.parent / f"{tmp_path.name}-secret"
    sec.write_bytes(SECRET)
    (tmp_path / "Dockerfile").write_text(
        "# syntax=docker/dockerfile:1\n# check=skip=all\n# frobnicate=yes\nFROM busybox:latest\n"
        "ARG SZ\n"
        "RUN --network=none ls /sys/class/net > /nets\n"
        "RUN --mount=type=secret,id=s1,env=TOKEN,target=/s echo ${#TOKEN} > /envlen\n"
        "RUN --mount=type=tmpfs,target=/t,size=${SZ:-2m} df -k /t | tail -1 | awk '{print $2}' > /tsize\n")
    tag = "bknet" + secrets.token_hex(4)
    try:
        daemon.dockyard("build", "--secret", f"id=s1,src={sec}", "-t", tag, str(tmp_path))
        out = daemon.docker("run", "--rm", tag, "cat", "/nets", "/envlen", "/tsize").stdout.decode().split()
        assert out == ["lo", str(len(SECRET)), "2048"]
        assert SECRET not in daemon.docker("save", tag).stdout
        inspect = daemon.docker("image", "inspect", tag).stdout
        assert SECRET not in inspect
        assert _files_holding(daemon.data_root, SECRET) == []
    finally:
        daemon.docker("rmi", "-f", tag, check=False)
        sec.unlink()


COPY_FLAGS = """\
FROM busybox:latest
COPY --chmod=750 d /o1/
COPY --chmod=0640 --chown=5:6 d/a.txt /o2
COPY --chmod=4755 d/sub /o3
ADD --chmod=600 d/b.md /o4/
"""


def _tree_ctx(root: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "a.txt").write_text("a\n")
    (root / "d" / "a.txt").chmod(0o600)
    (root / "d" / "b.md").write_text("b\n")
    (root / "d" / "sub" / "c.txt").write_text("c\n")
    (root / "d" / "sub" / "e.md").write_text("e\n")


def test_copy_chmod_matches_buildkit(daemon: Any, real_dockerd: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(COPY_FLAGS)
    _tree_ctx(tmp_path)
    tag = "bkcopy" + secrets.token_hex(4)
    try:
        ref = _buildkit(real_dockerd, tmp_path, tag)
        assert ref.returncode == 0, ref.stderr
        daemon.dockyard("build", "-t", tag, str(tmp_path))
        theirs, ours = _added(real_dockerd, tag), _added(daemon.host, tag)
        assert {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)} \
            == {}
        assert ours["/o1/sub/c.txt"][1] == "0o750" and ours["/o2"][1:4] == ("0o640", 5, 6)
    finally:
        _rmi(real_dockerd, tag)
        daemon.docker("rmi", "-f", tag, check=False)


def test_copy_flags_beyond_20_10(daemon: Any, tmp_path: Path) -> None:
    """Flags newer BuildKit has (20.10's refuses them as unknown): symbolic --chmod, --exclude,
    --parents, --link; ADD of a URL with --checksum (a server of the test's own, on loopback)."""
    import http.server
    import threading

    _tree_ctx(tmp_path)
    (tmp_path / "srv").mkdir()
    payload = b"payload\n"
    (tmp_path / "srv" / "file.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(tmp_path / "srv"), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    tag = "bkflags" + secrets.token_hex(4)
    try:
        (tmp_path / "Dockerfile").write_text(
            "FROM busybox:latest\n"
            "COPY --chmod=u+x,g-r,o= d /s/\n"
            "COPY --chmod=a+X d/sub /x/\n"
            "COPY --exclude=*.md --exclude=sub/c.txt d /e/\n"
            "COPY --parents d/sub/c.txt d/./sub/e.md /p/\n"
            "COPY --link d/b.md /l/\n"
            f"ADD --checksum=sha256:{digest} {url} /u/\n")
        daemon.dockyard("build", "-t", tag, str(tmp_path))
        ls = _listing(daemon.host, tag)
        assert ls["/s/a.txt"][1] == "0o700" and ls["/s/b.md"][1] == "0o700" and ls["/s/sub"][1] == "0o710"
        assert ls["/x/c.txt"][1] == "0o644" and ls["/x"][1] == "0o755"
        assert sorted(p for p in ls if p.startswith("/e/")) == ["/e/a.txt", "/e/sub", "/e/sub/e.md"]  # `*.md`: the top level only
        assert "/p/d/sub/c.txt" in ls and "/p/sub/e.md" in ls and "/p/d/sub/e.md" not in ls
        assert "/l/b.md" in ls
        assert ls["/u/file.bin"][1] == "0o600" and ls["/u/file.bin"][4] == digest[:16]
        (tmp_path / "Dockerfile").write_text(f"FROM busybox:latest\nADD --checksum=sha256:{'0' * 64} {url} /u/\n")
        bad = daemon.dockyard("build", str(tmp_path), check=False)
        assert bad.returncode != 0
        assert f"digest mismatch sha256:{'0' * 64}: sha256:{digest}" in bad.stderr.decode()
        (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nADD --checksum=sha256:00 d/b.md /u/\n")
        bad = daemon.dockyard("build", str(tmp_path), check=False)
        assert "checksum can't be specified for non-HTTP(S) sources" in bad.stderr.decode()
    finally:
        srv.shutdown()
        srv.server_close()
        daemon.docker("rmi", "-f", tag, check=False)


OUTPUT = """\
FROM busybox:latest AS b
RUN mkdir -p /out/sub /out/gone && echo hi > /out/sub/f && chmod 750 /out/sub && ln -s sub/f /out/link
RUN rm -r /out/gone
FROM scratch
COPY --from=b /out /
COPY f.txt /top.txt
"""


def _dir_listing(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = p.lstat()
            body = os.readlink(p) if p.is_symlink() else \
                hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else ""
            out["/" + str(p.relative_to(root))] = (oct(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def _tar_listing(data: bytes) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name.strip("/")] = (m.type, oct(m.mode & 0o7777), m.uid, m.gid,
                                      m.linkname or (hashlib.sha256(f.read()).hexdigest()[:16] if f else ""))
    return out


def test_output_local_and_tar_match_buildkit(daemon: Any, real_dockerd: str, tmp_path: Path) -> None:
    """(No owner or hard link in the copied stage: BuildKit's COPY --from keeps both, the classic
    builder's, which ours follows on this endpoint, does not.)"""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(OUTPUT)
    (ctx / "f.txt").write_text("top\n")
    ref = _buildkit(real_dockerd, ctx, "unused-" + secrets.token_hex(3), "--output", f"type=local,dest={tmp_path}/theirs")
    assert ref.returncode == 0, ref.stderr
    ref = _buildkit(real_dockerd, ctx, "unused-" + secrets.token_hex(3), "--output",
                    f"type=tar,dest={tmp_path}/theirs.tar")
    assert ref.returncode == 0, ref.stderr
    daemon.dockyard("build", "--output", f"type=local,dest={tmp_path}/ours", "--iidfile", str(tmp_path / "iid"),
                    str(ctx))
    p = daemon.dockyard("build", "-o", "-", str(ctx))
    theirs, ours = _dir_listing(tmp_path / "theirs"), _dir_listing(tmp_path / "ours")
    assert ours == theirs and "/link" in ours and "/gone" not in ours
    t_theirs, t_ours = _tar_listing((tmp_path / "theirs.tar").read_bytes()), _tar_listing(p.stdout)
    assert {k: (t_ours.get(k), t_theirs.get(k)) for k in set(t_ours) | set(t_theirs)
            if t_ours.get(k) != t_theirs.get(k)} == {}
    assert (tmp_path / "iid").read_text().startswith("sha256:")
    assert b"Step 1/" in p.stderr  # the progress moved to stderr: stdout is the tar


def test_named_build_contexts(daemon: Any, tmp_path: Path) -> None:
    """--build-context (buildx's; 20.10's CLI has none): a directory for COPY --from and a bind mount's
    from, an image replacing a FROM and a stage of the same name; the named dir stays out of `COPY .`."""
    ctx, extra = tmp_path / "ctx", tmp_path / "extra"
    ctx.mkdir()
    (extra / "sub").mkdir(parents=True)
    (extra / "sub" / "x.txt").write_text("from extra\n")
    (extra / "skip.txt").write_text("ignored\n")
    (extra / ".dockerignore").write_text("skip.txt\n")
    (ctx / "main.txt").write_text("main\n")
    (ctx / "Dockerfile").write_text(
        "FROM scratch AS base\n"  # replaced by the named image context
        "FROM base\n"
        "COPY --from=extra sub/x.txt /x.txt\n"
        "COPY . /all/\n"
        "RUN --mount=type=bind,from=extra,target=/e cat /e/sub/x.txt > /via-mount && ls -A /e > /e-list\n")
    tag = "bkctx" + secrets.token_hex(4)
    try:
        daemon.dockyard("build", "--build-context", f"extra={extra}", "--build-context",
                        "base=docker-image://busybox:latest", "-t", tag, str(ctx))
        out = daemon.docker("run", "--rm", tag, "sh", "-c", "cat /x.txt /via-mount /e-list; ls -A /all").stdout
        assert out.decode().split("\n") == ["from extra", "from extra", ".dockerignore", "sub", "Dockerfile",
                                            "main.txt", ""]
        bad = daemon.dockyard("build", "--build-context", "extra=docker-image://127.0.0.1:1/nosuch:1", str(ctx),
                              check=False)
        assert bad.returncode != 0
    finally:
        daemon.docker("rmi", "-f", tag, check=False)


def test_docker_cli_classic_endpoint_takes_mounts(daemon: Any, tmp_path: Path) -> None:
    """The docker CLI without BuildKit (the classic POST /build, which dockerd answers with 'the
    --mount option requires BuildKit') builds the same Dockerfile on ours; a cache mount persists."""
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox:latest\nARG N\n"
        f"RUN --mount=type=cache,target=/c,id=cli-{secrets.token_hex(4)} echo $N >> /c/log && cat /c/log > /seen\n"
        "RUN --mount=type=tmpfs,target=/t --mount=type=bind,target=/ctx ls /ctx > /ctx-list\n"
        f"RUN --mount=type=cache,target=/s,id=seed-{secrets.token_hex(4)},from=busybox:latest,source=/etc "
        "ls /s/passwd > /seeded && touch /s/mine\n")
    (tmp_path / "a.txt").write_text("a\n")
    tag = "bkcli" + secrets.token_hex(4)
    env = {"DOCKER_BUILDKIT": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        daemon.docker("build", "--build-arg", "N=1", "-t", tag, str(tmp_path))
        daemon.docker("build", "--build-arg", "N=2", "-t", tag, str(tmp_path))
        out = daemon.docker("run", "--rm", tag, "cat", "/seen", "/ctx-list", "/seeded").stdout.decode()
        assert out.split() == ["1", "2", "Dockerfile", "a.txt", "/s/passwd"]  # cache from=, source=: seeded
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        daemon.docker("rmi", "-f", tag, check=False)


def test_no_cache_filter(daemon: Any, tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    (tmp_path / "Dockerfile").write_text(
        f"FROM busybox:latest AS a\nRUN echo a-{token} > /a\n"
        f"FROM busybox:latest\nRUN echo b-{token} > /b\nCOPY --from=a /a /a\n")
    tag = "bkncf" + token
    try:
        daemon.dockyard("build", "-t", tag, str(tmp_path))
        again = daemon.dockyard("build", "--no-cache-filter", "a", "-t", tag, str(tmp_path)).stdout.decode()
        assert again.count("Running in") == 1 and f"echo a-{token}" in again.split("Running in")[0]
        assert again.count("Using cache") >= 1  # stage b's RUN came from the cache
    finally:
        daemon.docker("rmi", "-f", tag, check=False)


def test_ssh_mount_from_agent(daemon: Any, tmp_path: Path) -> None:
    """RUN --mount=type=ssh with `--ssh default` (buildx's; 20.10's BuildKit gets it over its session):
    the client's agent socket at BuildKit's default target, SSH_AUTH_SOCK set, nothing left in the image."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    tag = "bkssh" + secrets.token_hex(4)
    try:
        for _ in range(200):  # the agent binds its socket before serving
            if sock.exists() or agent.poll() is not None:
                break
            time.sleep(0.05)
        assert sock.exists(), "ssh-agent did not start"
        (tmp_path / "Dockerfile").write_text(
            "FROM busybox:latest\n"
            "RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /sock\n"
            "RUN --mount=type=ssh,id=other echo not-required > /other\n")
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            daemon.dockyard("build", "--ssh", "default", "-t", tag, str(tmp_path))
        finally:
            os.environ.pop("SSH_AUTH_SOCK", None)
        ls = _listing(daemon.host, tag)
        assert "/run/buildkit/ssh_agent.0" not in ls and "/run/buildkit" in ls
        assert daemon.docker("run", "--rm", tag, "cat", "/sock").stdout == b"/run/buildkit/ssh_agent.0\n"
        (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nRUN --mount=type=ssh,required true\n")
        bad = daemon.dockyard("build", str(tmp_path), check=False)
        assert "no SSH key \"default\" forwarded from the client" in bad.stderr.decode()
    finally:
        agent.kill()
        agent.wait()
        daemon.docker("rmi", "-f", tag, check=False)


def test_twenty_parallel_stages(daemon: Any, tmp_path: Path) -> None:
    """Twenty stages run at once, each creating its RUN container (bench build-stages found two of them
    given the same random name)."""
    (tmp_path / "Dockerfile").write_text(
        "".join(f"FROM busybox:latest AS s{i}\nRUN echo {i} > /out{i}\n" for i in range(20))
        + "FROM busybox:latest\n" + "".join(f"COPY --from=s{i} /out{i} /outs/\n" for i in range(20)))
    tag = "bkstages" + secrets.token_hex(4)
    try:
        daemon.dockyard("build", "--no-cache", "--network", "none", "-t", tag, str(tmp_path))
        assert len(daemon.docker("run", "--rm", tag, "ls", "/outs").stdout.split()) == 20
    finally:
        daemon.docker("rmi", "-f", tag, check=False)
