"""`dockyard build` (docker's classic builder client) and `dockyard builder prune`.

The context goes to POST /build as a tar streamed from a temporary file, so a large context is
never held in memory; `.dockerignore` is applied here, as the docker CLI does, with Docker's
rules (dockyard.util.dockerignore: patterns rooted at the context, `**`, `!` exceptions).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dockyard.cli import prune
from dockyard.cli.common import CLIError, Command, Ctx
from dockyard.cli.formatting import human_size

# The build's secrets travel in this header (base64url of {id: base64 bytes}), never in the query
# string or the context, so no access log, context hash or layer holds them.
SECRETS_HEADER = "X-Dockyard-Build-Secrets"

_CHUNK = 1 << 20


def context_files(root: Path, dockerfile_rel: str | None) -> Iterator[tuple[Path, str]]:
    """(path, name in the tar) for everything .dockerignore keeps, as the docker CLI decides
    (dockyard.util.dockerignore); the Dockerfile and .dockerignore always go, as docker sends them
    (the daemon drops them again when the patterns exclude them)."""
    from dockyard.util.dockerignore import PatternMatcher, read_patterns

    ig = root / ".dockerignore"
    pm = PatternMatcher.of(read_patterns(ig.read_text(errors="replace"))) if ig.is_file() else None
    always = {".dockerignore", os.path.normpath(dockerfile_rel or "Dockerfile")}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        keep_dirs = []
        for name in [*dirnames, *sorted(filenames)]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            full = Path(dirpath) / name
            is_dir = name in dirnames and not full.is_symlink()
            if pm is not None and rel not in always and pm.matches(rel):
                if is_dir and pm.may_reinclude_under(rel):
                    keep_dirs.append(name)  # walk in: an exception may bring back something below
                continue
            if is_dir:
                keep_dirs.append(name)
            yield full, rel
        dirnames[:] = keep_dirs


def write_context(root: Path, out: IO[bytes], dockerfile_rel: str | None,
                  extra: tuple[str, bytes] | None = None, named: dict[str, Path] | None = None) -> None:
    """The context as a tar; `named` directories (`--build-context NAME=DIR`, each with its own
    .dockerignore) go under `.dockyard-contexts/NAME/`, which the daemon takes out of the main context."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        files = [(full, rel) for full, rel in context_files(root, dockerfile_rel)]
        for name, d in (named or {}).items():
            files += [(full, f".dockyard-contexts/{name}/{rel}") for full, rel in context_files(d, None)]
        for full, rel in files:
            ti = tf.gettarinfo(str(full), arcname=rel)
            if ti is None:
                continue  # a unix socket: tar cannot hold one, and docker skips it too
            ti.uid = ti.gid = 0
            ti.mtime = int(ti.mtime)  # whole seconds: no PAX header per file
            ti.uname = ti.gname = ""
            if ti.isreg():
                with open(full, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
        if extra is not None:  # a Dockerfile from outside the context, under a private name
            import io

            ti = tarfile.TarInfo(extra[0])
            ti.size, ti.mode = len(extra[1]), 0o644
            tf.addfile(ti, io.BytesIO(extra[1]))


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    f.seek(0)
    while chunk := f.read(_CHUNK):
        yield chunk


def _read_full(f: IO[bytes], n: int) -> bytes:
    out = b""
    while len(out) < n and (chunk := f.read(n - len(out))):
        out += chunk
    return out


def _is_archive(head: bytes) -> bool:
    """docker's IsArchive: a compressed stream, or a tar header (its checksum holds)."""
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
        return True
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def _build_args(values: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in values:
        k, eq, val = v.partition("=")
        out[k] = val if eq else os.environ.get(k)  # like docker: a bare name takes the client's env
    return out


def _kv(values: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (s.partition("=") for s in values)}


def _secrets(values: list[str]) -> str | None:
    """`--secret id=x,src=FILE|env=VAR` (buildx's forms) as the build API's header value."""
    import base64

    out: dict[str, str] = {}
    for v in values:
        kv = dict(f.partition("=")[::2] for f in v.split(","))
        sid = kv.get("id", "")
        src = kv.get("src") or kv.get("source")
        env = kv.get("env")
        if kv.get("type") == "env" and not env:
            env = src or sid
            src = None
        if not sid:
            sid = os.path.basename(src) if src else (env or "")
        if not sid:
            raise CLIError(f"invalid secret: {v}: id is required")
        if src:
            try:
                data = Path(src).expanduser().read_bytes()
            except OSError as e:
                raise CLIError(f"failed to read secret {sid}: open {src}: {e.strerror.lower() if e.strerror else e}") from None
        elif (env or sid) in os.environ:
            data = os.environ[env or sid].encode()
        else:
            raise CLIError(f"secret {sid}: no source: give src=FILE or env=VAR")
        out[sid] = base64.b64encode(data).decode()
    if not out:
        return None
    return base64.urlsafe_b64encode(json.dumps(out).encode()).decode()


def _build_contexts(values: list[str], client: Any, loaded: list[str]) -> tuple[dict[str, str], dict[str, Path]]:
    """`--build-context NAME=DIR|docker-image://REF|oci-layout://PATH|git URL|http(s) URL`: (what the
    daemon is told, the dirs to send). Git and http(s) URLs are fetched by the daemon, as BuildKit's;
    an OCI layout is loaded into the daemon's store first (dockyard/cli/oci_context.py; the ids it
    loaded anew go in `loaded`, to remove after the build)."""
    import re

    from dockyard.util import gitref

    contexts: dict[str, str] = {}
    dirs: dict[str, Path] = {}
    for v in values:
        name, eq, value = v.partition("=")
        if not eq or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
            raise CLIError(f"invalid context value: {v}, expected key=value")
        if value.startswith(("docker-image://", "http://", "https://")) or gitref.is_git_url(value):
            contexts[name] = value
        elif value.startswith("oci-layout://"):
            from dockyard.cli import oci_context

            image_id, had = oci_context.load(client, value)
            contexts[name] = "docker-image://" + image_id
            if not had:
                loaded.append(image_id)
        elif "://" in value:
            raise CLIError(f"unsupported context source {value.split('://', 1)[0]} for {name}")
        else:
            if not Path(value).is_dir():
                raise CLIError(f'unable to prepare context: path "{value}" not found')
            contexts[name] = "dir"
            dirs[name] = Path(value)
    return contexts, dirs


def _cache_specs(value: str) -> list[str]:
    """A --cache-from/--cache-to value: `type=...,k=v` as it is (a local dir made absolute, as the
    daemon reads it), else image references separated by commas (docker's `strings` flag)."""
    if not value.startswith("type="):
        return [v for v in value.split(",") if v]
    parts = []
    for part in value.split(","):
        k, eq, v = part.partition("=")
        if eq and k in ("src", "dest") and v:
            v = os.path.abspath(v)
        parts.append(f"{k}{eq}{v}")
    return [",".join(parts)]


def cmd_build(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.util import gitref

    if not gitref.is_git_url(args.path):
        return _build(ctx, args)
    # A git context, as the docker CLI's: cloned here (BuildKit's rules: `#ref:subdir`, no .git sent)
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-git-context-"))
    try:
        try:
            root, _commit = gitref.checkout(gitref.parse(args.path), tmp / "repo")
        except gitref.GitError as e:
            raise CLIError(f"unable to prepare context: {e}") from None
        args.path = str(root)
        if args.file and args.file != "-" and not os.path.isabs(args.file):
            args.file = str(root / args.file)  # -f names a file of the repository
        return _build(ctx, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(ctx: Ctx, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "t": args.tag or None, "target": args.target or None, "nocache": args.no_cache or None,
        "pull": args.pull or None, "q": args.quiet or None, "rm": args.rm, "forcerm": args.force_rm or None,
        "networkmode": args.network or None, "platform": args.platform or None,
        "labels": json.dumps(_kv(args.label)) if args.label else None,
        "buildargs": json.dumps(_build_args(args.build_arg)) if args.build_arg else None,
    }
    loaded: list[str] = []  # images of oci-layout:// contexts, removed after the build
    built: list[str] = []  # the build's image id (when it is one of those, it stays)
    try:
        return _build_with(ctx, args, params, loaded, built)
    finally:
        from dockyard.cli import oci_context

        for image_id in loaded:
            if image_id not in built:
                oci_context.unload(ctx.client, image_id)


def _build_with(ctx: Ctx, args: argparse.Namespace, params: dict[str, Any], loaded: list[str],
                built: list[str]) -> int:
    from dockyard.client import APIError

    secret_header = _secrets(args.secret)
    contexts, named_dirs = _build_contexts(args.build_context, ctx.client, loaded)
    agents = None
    if args.ssh:
        from dockyard.cli.sshagent import agents_from_flags

        agents = agents_from_flags(args.ssh)
    if args.progress not in ("auto", "plain", "tty", "quiet", "rawjson"):
        raise CLIError(f'invalid progress mode "{args.progress}" (auto, plain, tty, quiet or rawjson)')
    if args.progress == "plain" or getattr(args, "explain", False):
        params["explaincache"] = 1  # a step that misses the cache says which input changed
    if args.progress == "quiet":
        args.quiet = params["q"] = True
    if args.cache_from:
        params["cachefrom"] = json.dumps([c for v in args.cache_from for c in _cache_specs(v)])
    if args.cache_to:
        params["cacheto"] = json.dumps([c for v in args.cache_to for c in _cache_specs(v)])
    if args.no_cache_filter:
        params["nocachefilter"] = json.dumps([n for v in args.no_cache_filter for n in v.split(",") if n])
    if contexts:
        params["buildcontexts"] = json.dumps(contexts)
    output = None
    if args.output:
        from dockyard.cli.build_output import parse_output

        output = parse_output(args.output)
    # a tar on stdout: the progress goes to stderr, as docker's
    progress = sys.stderr if output and output["type"] == "tar" and output["dest"] == "-" else sys.stdout
    with tempfile.TemporaryFile(prefix="dockyard-context-") as tmp:
        if args.path == "-":  # a tar context on stdin, passed through; or a lone Dockerfile
            head = _read_full(sys.stdin.buffer, 512)
            params["dockerfile"] = args.file or None
            if _is_archive(head):
                tmp.write(head)
                while chunk := sys.stdin.buffer.read(_CHUNK):
                    tmp.write(chunk)
            elif args.file == "-":
                raise CLIError("build context is not an archive")
            else:  # as docker: the text is the Dockerfile of an otherwise empty context
                with tarfile.open(fileobj=tmp, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    data = head + sys.stdin.buffer.read()
                    import io

                    ti = tarfile.TarInfo("Dockerfile")
                    ti.size, ti.mode = len(data), 0o644
                    tf.addfile(ti, io.BytesIO(data))
                params["dockerfile"] = "Dockerfile"
        else:
            root = Path(args.path)
            if not root.is_dir():
                raise CLIError(f'unable to prepare context: path "{args.path}" not found')
            df_rel: str | None = None
            extra = None
            if args.file:
                dfp = Path(args.file) if os.path.isabs(args.file) else Path.cwd() / args.file
                if args.file == "-":
                    extra = (f".dockerfile.{secrets.token_hex(10)}", sys.stdin.buffer.read())
                    df_rel = extra[0]
                elif not dfp.is_file():
                    raise CLIError(f"unable to prepare context: the Dockerfile ({args.file}) cannot be empty"
                                   if dfp.exists() else f"the Dockerfile ({args.file}) cannot be found")
                else:
                    rel = os.path.relpath(dfp.resolve(), root.resolve())
                    if rel.startswith(".."):
                        extra = (f".dockerfile.{secrets.token_hex(10)}", dfp.read_bytes())
                        df_rel = extra[0]
                    else:
                        df_rel = rel
            params["dockerfile"] = df_rel
            write_context(root, tmp, df_rel, extra, named_dirs)
        size = tmp.tell()
        if not args.quiet:
            print(f"Sending build context to Docker daemon  {human_size(size)}", flush=True, file=progress)
        from dockyard.cli.progress import show

        image_id = ""
        failed: list[dict[str, Any]] = []

        def shown(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            """The events to display: the image ID and an error are kept for the end."""
            nonlocal image_id
            for ev in events:
                if ev.get("error") or ev.get("errorDetail"):
                    failed.append(ev)
                    return
                if isinstance(ev.get("aux"), dict) and ev["aux"].get("ID"):
                    image_id = ev["aux"]["ID"]
                    continue
                yield ev

        session = None
        try:
            headers = {"Content-Type": "application/x-tar"}
            if secret_header:
                headers[SECRETS_HEADER] = secret_header
            if agents:  # the daemon reaches these agents through a session, wherever it runs
                from dockyard.cli.build_session import BuildSession
                from dockyard.util.buildsession import HEADER

                session = BuildSession(ctx.client, agents)
                headers[HEADER] = session.id
            with ctx.client.stream("POST", "/build", params, data=_chunks(tmp), headers=headers) as s:
                show(shown(s.json()), progress, quiet=args.quiet)  # a FROM's pull: bars on a terminal
        except APIError as e:
            raise CLIError(str(e)) from None
        finally:
            if session is not None:
                session.close()
        if failed:
            ev = failed[0]
            msg = ev.get("error") or (ev.get("errorDetail") or {}).get("message", "build failed")
            code = int((ev.get("errorDetail") or {}).get("code") or 1)
            print(msg, file=sys.stderr)
            return code if 0 < code < 256 else 1  # as docker: the failed step's code
    built.append(image_id)
    if args.quiet and image_id:
        print(image_id, file=progress)
    if args.iidfile and image_id:
        Path(args.iidfile).write_text(image_id)
    if output and image_id:
        from dockyard.cli.build_output import export

        export(ctx.client, image_id, output)
    return 0


def setup_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("-f", "--file")
    p.add_argument("--target")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--pull", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--network")
    p.add_argument("--platform")
    p.add_argument("--iidfile")
    p.add_argument("--secret", action="append", default=[])
    p.add_argument("-o", "--output")
    p.add_argument("--build-context", action="append", default=[])
    p.add_argument("--no-cache-filter", action="append", default=[])
    p.add_argument("--cache-from", action="append", default=[])
    p.add_argument("--cache-to", action="append", default=[])
    p.add_argument("--progress", default="auto")
    p.add_argument("--ssh", action="append", default=[])
    p.add_argument("--rm", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--force-rm", action="store_true")
    p.add_argument("path", metavar="PATH")


def cmd_builder_prune(ctx: Ctx, args: argparse.Namespace) -> int:
    return prune.prune(ctx, "WARNING! This will remove all dangling build cache.", args.force,
                       [(prune.build_cache(args.all), None)])


def setup_builder_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])


COMMANDS = [
    Command("build", cmd_build, setup_build, "image", help="Build an image from a Dockerfile"),
    Command("prune", cmd_builder_prune, setup_builder_prune, "builder", top=False, help="Remove build cache"),
]
