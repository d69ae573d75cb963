"""Docker contexts, stored exactly as the docker CLI stores them, so both CLIs share them.

Layout under $DOCKER_CONFIG (default ~/.docker):
  contexts/meta/<sha256(name)>/meta.json   {"Name", "Metadata", "Endpoints": {"docker": {"Host", "SkipTLSVerify"}}}
  contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem
  config.json                              "currentContext": name
"""

from __future__ import annotations

import io
import json
import os
import re

from dockyard.client.transport import default_host

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    import ssl
    from pathlib import Path
    from typing import Any

DEFAULT = "default"
DEFAULT_DESCRIPTION = "Current DOCKER_HOST based configuration"
_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$"  # compiled when a name is checked (start-up time)
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


class ContextError(Exception):
    """A context operation failed; the message is docker's wording."""


def config_dir() -> Path:
    from pathlib import Path  # here: a command given -H or $DOCKER_HOST needs no store (start-up time)

    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def context_dir_name(name: str) -> str:
    import hashlib  # here: loading OpenSSL's digests costs ~3 ms of every command's start-up

    return hashlib.sha256(name.encode()).hexdigest()


class _Plain:
    """Equality and repr over the attributes: what @dataclass gave, without importing dataclasses
    (inspect, ast, dis: ~10 ms of every CLI command's start-up)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class TLSOptions(_Plain):
    """What a client needs for TLS: PEM bytes (from a context) or files (from flags/env)."""

    def __init__(self, verify: bool = True, ca: bytes | None = None, cert: bytes | None = None,
                 key: bytes | None = None) -> None:
        self.verify = verify
        self.ca = ca
        self.cert = cert
        self.key = key

    def ssl_context(self, server_hostname_check: bool = True) -> ssl.SSLContext:
        import ssl  # here, not at the top: only TLS endpoints pay its start-up cost

        ctx = ssl.create_default_context(cadata=self.ca.decode() if self.ca else None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.check_hostname = server_hostname_check
        if self.cert and self.key:
            import tempfile

            # ssl only loads client certificates from files: write them to a private temp dir briefly.
            with tempfile.TemporaryDirectory(prefix="dockyard-tls-") as d:
                cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
                with open(cert, "wb") as c:
                    c.write(self.cert)
                fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(self.key)
                ctx.load_cert_chain(cert, key)
        return ctx


class Context(_Plain):
    def __init__(self, name: str, host: str, description: str = "", skip_tls_verify: bool = False,
                 tls: dict[str, bytes] | None = None, metadata: dict[str, Any] | None = None) -> None:
        self.name = name
        self.host = host
        self.description = description
        self.skip_tls_verify = skip_tls_verify
        self.tls = {} if tls is None else tls  # file name -> PEM
        self.metadata = {} if metadata is None else metadata  # other Metadata keys, kept as found

    def meta_json(self) -> dict[str, Any]:
        meta = dict(self.metadata)
        if self.description:
            meta["Description"] = self.description
        return {"Name": self.name, "Metadata": meta,
                "Endpoints": {"docker": {"Host": self.host, "SkipTLSVerify": self.skip_tls_verify}}}

    def tls_options(self) -> TLSOptions | None:
        """docker's rule: TLS when the endpoint has TLS material or skips verification."""
        if not self.tls and not self.skip_tls_verify:
            return None
        return TLSOptions(verify=not self.skip_tls_verify, ca=self.tls.get("ca.pem"),
                          cert=self.tls.get("cert.pem"), key=self.tls.get("key.pem"))


def validate_name(name: str) -> None:
    if name == DEFAULT:
        raise ContextError(f'"{DEFAULT}" is a reserved context name')
    if not re.match(_NAME_RE, name):
        raise ContextError(
            f'context name "{name}" is invalid, names are validated against regexp "{_NAME_RE}"'
        )


class ContextStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or config_dir()
        self.meta_root = self.root / "contexts" / "meta"
        self.tls_root = self.root / "contexts" / "tls"

    # -- config.json ---------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "config.json").read_text())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def current(self) -> str:
        return str(self._config().get("currentContext") or DEFAULT)

    def set_current(self, name: str) -> None:
        cfg = self._config()
        cfg.setdefault("auths", {})
        if name == DEFAULT:
            cfg.pop("currentContext", None)
        else:
            cfg["currentContext"] = name
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "config.json.tmp"
        tmp.write_text(json.dumps(cfg, indent="\t"))
        os.replace(tmp, self.root / "config.json")

    # -- contexts ------------------------------------------------------------
    def default_context(self) -> Context:
        return Context(DEFAULT, os.environ.get("DOCKER_HOST") or default_host(), DEFAULT_DESCRIPTION)

    def exists(self, name: str) -> bool:
        return name == DEFAULT or (self.meta_root / context_dir_name(name) / "meta.json").is_file()

    def get(self, name: str) -> Context:
        if name == DEFAULT:
            return self.default_context()
        path = self.meta_root / context_dir_name(name) / "meta.json"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ContextError(
                f'context "{name}": context not found: open {path}: no such file or directory'
            ) from None
        return self._from_meta(doc)

    def _from_meta(self, doc: dict[str, Any]) -> Context:
        name = doc["Name"]
        ep = (doc.get("Endpoints") or {}).get("docker") or {}
        meta = dict(doc.get("Metadata") or {})
        desc = str(meta.pop("Description", "") or "")
        tls: dict[str, bytes] = {}
        tls_dir = self.tls_root / context_dir_name(name) / "docker"
        for fname in TLS_FILES:
            if (tls_dir / fname).is_file():
                tls[fname] = (tls_dir / fname).read_bytes()
        return Context(name, str(ep.get("Host") or ""), desc, bool(ep.get("SkipTLSVerify")), tls, meta)

    def list(self) -> list[Context]:
        out = [self.default_context()]
        if self.meta_root.is_dir():
            for d in self.meta_root.iterdir():
                try:
                    out.append(self._from_meta(json.loads((d / "meta.json").read_text())))
                except (OSError, ValueError, KeyError):
                    continue
        return sorted(out, key=lambda c: c.name)

    def save(self, ctx: Context) -> None:
        meta_dir = self.meta_root / context_dir_name(ctx.name)
        meta_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        (meta_dir / "meta.json").write_text(json.dumps(ctx.meta_json(), separators=(",", ":")))
        tls_dir = self.tls_root / context_dir_name(ctx.name)
        import shutil

        shutil.rmtree(tls_dir, ignore_errors=True)
        if ctx.tls:
            (tls_dir / "docker").mkdir(parents=True, mode=0o700)
            os.chmod(tls_dir, 0o700)
            for fname, data in ctx.tls.items():
                fd = os.open(tls_dir / "docker" / fname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)

    def create(self, ctx: Context) -> None:
        validate_name(ctx.name)
        if self.exists(ctx.name):
            raise ContextError(f'context "{ctx.name}" already exists')
        self.save(ctx)

    def remove(self, name: str, force: bool = False) -> None:
        if name == DEFAULT:
            raise ContextError("default: context \"default\" cannot be removed")
        if not self.exists(name):
            raise ContextError(f'context "{name}" does not exist')
        if self.current() == name:
            if not force:
                raise ContextError(f'context "{name}" is in use, set -f flag to force remove')
            self.set_current(DEFAULT)
        import shutil

        shutil.rmtree(self.meta_root / context_dir_name(name), ignore_errors=True)
        shutil.rmtree(self.tls_root / context_dir_name(name), ignore_errors=True)

    # -- export/import: docker's tar: meta.json, tls/, tls/docker/*.pem ----------------
    def export(self, name: str) -> bytes:
        import tarfile

        ctx = self.get(name)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            _add(tf, "meta.json", json.dumps(ctx.meta_json(), separators=(",", ":")).encode(), 0o644)
            _add_dir(tf, "tls")
            if ctx.tls:
                _add_dir(tf, "tls/docker")
                for fname in TLS_FILES:
                    if fname in ctx.tls:
                        _add(tf, f"tls/docker/{fname}", ctx.tls[fname], 0o600)
        return buf.getvalue()

    def import_(self, name: str, data: bytes) -> None:
        validate_name(name)
        if self.exists(name):
            raise ContextError(f'context "{name}" already exists')
        meta: dict[str, Any] | None = None
        tls: dict[str, bytes] = {}
        try:
            for mname, content in _tar_files(data):
                if mname == "meta.json":
                    meta = json.loads(content)
                elif mname.startswith("tls/docker/") and mname[len("tls/docker/"):] in TLS_FILES:
                    tls[mname[len("tls/docker/"):]] = content
        except ValueError as e:
            raise ContextError(f"invalid context: {e}") from None
        if meta is None:
            raise ContextError("invalid context: no metadata found")
        meta["Name"] = name
        ctx = self._from_meta(meta)
        ctx.tls = tls
        self.save(ctx)

    def inspect(self, name: str) -> dict[str, Any]:
        ctx = self.get(name)
        doc = ctx.meta_json()
        if name == DEFAULT:
            return {**doc, "TLSMaterial": {}, "Storage": {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"}}
        return {**doc, "TLSMaterial": {"docker": sorted(ctx.tls)} if ctx.tls else {},
                "Storage": {"MetadataPath": str(self.meta_root / context_dir_name(name)),
                            "TLSPath": str(self.tls_root / context_dir_name(name))}}


def _tar_files(data: bytes) -> list[tuple[str, bytes]]:
    """Regular files of a ustar archive. Hand-parsed because docker's export omits the archive's
    end blocks and the last file's padding, which tarfile rejects as truncated."""
    out: list[tuple[str, bytes]] = []
    off = 0
    while off + 512 <= len(data):
        h = data[off : off + 512]
        if not h.strip(b"\0"):
            break
        name = h[0:100].split(b"\0", 1)[0].decode()
        prefix = h[345:500].split(b"\0", 1)[0].decode() if h[257:262] == b"ustar" else ""
        size_field = h[124:136].strip(b"\0 ")
        size = int(size_field, 8) if size_field else 0
        if h[156:157] in (b"0", b"\0"):
            content = data[off + 512 : off + 512 + size]
            if len(content) != size:
                raise ValueError("unexpected end of data")
            out.append((f"{prefix}/{name}" if prefix else name, content))
        off += 512 + -(-size // 512) * 512
    return out


def _add(tf: Any, name: str, data: bytes, mode: int) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tf.addfile(info, io.BytesIO(data))


def _add_dir(tf: Any, name: str) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o700
    tf.addfile(info)


# -- resolving what the client connects to ------------------------------------------


class Endpoint(_Plain):
    """Where the client connects and how: the result of flags, environment and contexts."""

    def __init__(self, host: str, tls: TLSOptions | None = None, context: str = DEFAULT) -> None:
        self.host = host
        self.tls = tls
        self.context = context


def resolve_context_name(flag: str | None, hosts: list[str] | None, store: ContextStore) -> str:
    """docker's order: --context, -H, $DOCKER_HOST, $DOCKER_CONTEXT, config's currentContext."""
    if flag:
        if hosts:
            raise ContextError("conflicting options: cannot specify both --host and --context")
        return flag
    if hosts or os.environ.get("DOCKER_HOST"):
        return DEFAULT
    return os.environ.get("DOCKER_CONTEXT") or store.current()


def tls_from_flags(
    tls: bool | None = None, tlsverify: bool | None = None, cacert: str | None = None,
    cert: str | None = None, key: str | None = None,
) -> TLSOptions | None:
    """The default context's TLS: --tls/--tlsverify and files, or $DOCKER_TLS_VERIFY/$DOCKER_CERT_PATH."""
    env_verify = bool(os.environ.get("DOCKER_TLS_VERIFY"))
    verify = bool(tlsverify) or (tlsverify is None and env_verify)
    if not (tls or verify or os.environ.get("DOCKER_TLS")):
        return None
    from pathlib import Path

    certs = Path(os.environ.get("DOCKER_CERT_PATH") or config_dir())

    def read(explicit: str | None, fname: str, required: bool = False) -> bytes | None:
        path = Path(explicit) if explicit else certs / fname
        if explicit or required or path.is_file():
            try:
                return path.read_bytes()
            except OSError as e:  # docker's words: open /x/ca.pem: no such file or directory
                raise ContextError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
        return None

    # verifying needs a CA; a missing client cert/key just means no client authentication
    return TLSOptions(verify=verify, ca=read(cacert, "ca.pem", required=verify) if verify or cacert else None,
                      cert=read(cert, "cert.pem"), key=read(key, "key.pem"))


def resolve(
    context: str | None = None, hosts: list[str] | None = None, *, tls: bool | None = None,
    tlsverify: bool | None = None, tlscacert: str | None = None, tlscert: str | None = None,
    tlskey: str | None = None, store: ContextStore | None = None,
) -> Endpoint:
    if not context and (hosts or os.environ.get("DOCKER_HOST")):
        name = DEFAULT  # resolve_context_name's answer, without reading the store
    else:
        store = store or ContextStore()
        name = resolve_context_name(context, hosts, store)
    if name == DEFAULT:
        host = (hosts[-1] if hosts else None) or os.environ.get("DOCKER_HOST") or default_host()
        return Endpoint(host, tls_from_flags(tls, tlsverify, tlscacert, tlscert, tlskey), DEFAULT)
    assert store is not None
    ctx = store.get(name)
    return Endpoint(ctx.host, ctx.tls_options(), name)
