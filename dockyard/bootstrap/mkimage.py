"""Build real base images from Debian packages, offline from Docker Hub (like moby's old mkimage scripts).

- debian: `debootstrap --variant=minbase bookworm`, slimmed the way the official image is.
- nginx:  debian + Debian's `nginx` package as a second layer, laid out like the official image.
- busybox: Debian's `busybox-static` with a symlink per applet.

The result is a docker-archive tarball (see archive.py). Everything slow is cached under the cache
dir (default /var/cache/dockyard/bootstrap): debootstrap's .debs, apt's .debs, each built layer
(uncompressed tar named by diff_id) and a stamp per image, so a second run only rewrites the tarball.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dockyard.bootstrap import hostapt
from dockyard.bootstrap.archive import write_docker_archive
from dockyard.bootstrap.tarlayer import Entry, diff_entries, tree_entries, write_layer

DEFAULT_CACHE = Path("/var/cache/dockyard/bootstrap")
DEFAULT_EPOCH = 1735689600  # 2025-01-01T00:00:00Z; SOURCE_DATE_EPOCH overrides
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGES = ("busybox", "debian", "nginx")
DEFAULT_TAGS = {"busybox": "busybox:latest", "debian": "debian:bookworm-slim", "nginx": "nginx:latest"}
# Bump a recipe's revision when its steps change, so cached layers are rebuilt.
REVISIONS = {"busybox": 1, "debian": 1, "nginx": 1}

Log = Callable[[str], None]


def stderr_log() -> Log:
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[bootstrap {time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)
    return log


def _rm(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write(root: Path, rel: str, content: str, mode: int = 0o644) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    _rm(p)
    p.write_text(content)
    os.chmod(p, mode)


def _rfc3339(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Bootstrapper:
    def __init__(self, cache: Path = DEFAULT_CACHE, log: Log | None = None, epoch: int | None = None) -> None:
        self.cache = cache
        self.log = log or stderr_log()
        self.epoch = epoch if epoch is not None else int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
        self.debs, self.layers, self.work = cache / "debs", cache / "layers", cache / "work"
        for d in (self.debs, self.layers, self.work, cache / "images"):
            d.mkdir(parents=True, exist_ok=True)
        self._mirrors: tuple[str, str | None] | None = None

    # -- cache bookkeeping ---------------------------------------------------------------------

    @property
    def mirrors(self) -> tuple[str, str | None]:
        if self._mirrors is None:
            self._mirrors = hostapt.mirrors()
            self.log(f"Debian mirror {self._mirrors[0]} (security: {self._mirrors[1] or '-'})")
        return self._mirrors

    def _stamp_path(self, name: str) -> Path:
        return self.cache / "images" / f"{name}.json"

    def layer_path(self, diff_id: str) -> Path:
        return self.layers / (diff_id.split(":")[1] + ".tar")

    def cached(self, name: str) -> dict[str, Any] | None:
        """The image config of a finished build whose layers are all still cached, else None."""
        try:
            stamp = json.loads(self._stamp_path(name).read_text())
        except (OSError, ValueError):
            return None
        if stamp.get("rev") != REVISIONS[name] or stamp.get("epoch") != self.epoch:
            return None
        if name == "nginx":
            base = self.cached("debian")
            if base is None or stamp.get("base") != base["rootfs"]["diff_ids"]:
                return None
        config: dict[str, Any] = stamp["config"]
        if not all(self.layer_path(d).exists() for d in config["rootfs"]["diff_ids"]):
            return None
        return config

    def _save(self, name: str, config: dict[str, Any], base: list[str] | None = None) -> None:
        stamp = {"rev": REVISIONS[name], "epoch": self.epoch, "config": config, "base": base}
        tmp = self._stamp_path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(stamp, indent=1))
        os.replace(tmp, self._stamp_path(name))

    def _store_layer(self, entries: Iterator[Entry]) -> tuple[str, int]:
        fd, tmp = tempfile.mkstemp(dir=self.layers, prefix=".ingest-")
        try:
            with os.fdopen(fd, "wb") as f:
                diff_id, size = write_layer(entries, f)
            os.replace(tmp, self.layer_path(diff_id))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.log(f"layer {diff_id[:19]}… {size / 2**20:.1f} MiB")
        return diff_id, size

    def _image_config(self, cfg: dict[str, Any], diff_ids: list[str], history: list[dict[str, Any]]) -> dict[str, Any]:
        return {"architecture": "amd64", "os": "linux", "created": _rfc3339(self.epoch), "config": cfg,
                "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}

    def _env(self) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "LC_ALL": "C", "LANG": "C", "DEBIAN_FRONTEND": "noninteractive",
               "HOME": "/root"}
        p = hostapt.proxy()
        if p:
            env["http_proxy"] = p
        return env

    # -- public ------------------------------------------------------------------------------

    def ensure(self, name: str, force: bool = False) -> dict[str, Any]:
        """Build `name` unless a valid cached build exists; return its image config."""
        if name not in IMAGES:
            raise hostapt.BootstrapError(f"unknown image {name!r}; choose from {', '.join(IMAGES)}")
        with open(self.cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per cache dir
            config = None if force else self.cached(name)
            if config is not None:
                self.log(f"{name}: cached")
                return config
            self.log(f"{name}: building")
            return {"busybox": self._busybox, "debian": self._debian, "nginx": self._nginx}[name]()

    def write(self, name: str, out: Path, tags: list[str], force: bool = False) -> str:
        config = self.ensure(name, force)
        layers = [self.layer_path(d) for d in config["rootfs"]["diff_ids"]]
        image_id = write_docker_archive(out, config, layers, tags, self.epoch)
        self.log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) {', '.join(tags)} id {image_id[:19]}")
        return image_id

    # -- busybox -----------------------------------------------------------------------------

    def _busybox_deb(self) -> Path:
        have = sorted(self.debs.glob("busybox-static_*_amd64.deb"))
        if have:
            return have[-1]
        self.log("downloading busybox-static with the host's apt")
        with tempfile.TemporaryDirectory(dir=self.work) as dl:
            cmd = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", "busybox-static:amd64"]
            if subprocess.run(cmd, cwd=dl, capture_output=True).returncode != 0:
                subprocess.run(["apt-get", "-q", "update"], check=False, capture_output=True)
                subprocess.run(cmd, cwd=dl, check=True, capture_output=True)
            deb = next(Path(dl).glob("busybox-static_*.deb"))
            dest = self.debs / deb.name
            shutil.move(str(deb), dest)
        return dest

    def _busybox(self) -> dict[str, Any]:
        deb = self._busybox_deb()
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                                 text=True).stdout.strip()
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            ex, root = Path(tmp) / "deb", Path(tmp) / "rootfs"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(ex)], check=True)
            binary = next(p for p in (ex / "bin/busybox", ex / "usr/bin/busybox") if p.is_file())
            applets = subprocess.run([str(binary), "--list-full"], check=True, capture_output=True,
                                     text=True).stdout.split()
            _busybox_rootfs(binary, applets, root)
            diff_id, _ = self._store_layer(tree_entries(root, self.epoch))
        ts = _rfc3339(self.epoch)
        config = self._image_config({"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]}, [diff_id], [
            {"created": ts, "created_by": f"ADD busybox-static_{version}_amd64 rootfs /"},
            {"created": ts, "created_by": 'CMD ["sh"]', "empty_layer": True}])
        self._save("busybox", config)
        return config

    # -- debian ------------------------------------------------------------------------------

    def _debootstrap(self, target: Path) -> None:
        hostapt.ensure_tools({"debootstrap": "debootstrap", hostapt.KEYRING: "debian-archive-keyring"})
        mirror, _ = self.mirrors
        self.log(f"debootstrap --variant=minbase {hostapt.SUITE} (1-3 minutes on a cold cache)")
        cmd = ["debootstrap", "--variant=minbase", f"--keyring={hostapt.KEYRING}",
               f"--cache-dir={self.debs}", hostapt.SUITE, str(target), mirror]
        proc = subprocess.Popen(cmd, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        seen: dict[str, int] = {}  # phase ("Retrieving", "Extracting", ...) -> lines seen
        tail: list[str] = []
        last = time.monotonic()
        for line in proc.stdout:  # a line per new phase and a heartbeat, not one per package
            tail = (tail + [line.rstrip()])[-20:]
            words = line.split()
            if len(words) < 2 or words[0] != "I:":
                continue
            phase = words[1]
            seen[phase] = seen.get(phase, 0) + 1
            if seen[phase] == 1 or time.monotonic() - last > 10:
                self.log(f"  debootstrap: {line[3:].strip()[:70]} ({seen[phase]})")
                last = time.monotonic()
        if proc.wait() != 0:
            raise hostapt.BootstrapError("debootstrap failed:\n" + "\n".join(tail))

    def _apt_sources(self) -> str:
        mirror, security = self.mirrors
        s = (f"Types: deb\nURIs: {mirror}\nSuites: {hostapt.SUITE} {hostapt.SUITE}-updates\n"
             f"Components: main\nSigned-By: {hostapt.KEYRING}\n")
        if security:
            s += (f"\nTypes: deb\nURIs: {security}\nSuites: {hostapt.SUITE}-security\n"
                  f"Components: main\nSigned-By: {hostapt.KEYRING}\n")
        return s

    def _debian(self) -> dict[str, Any]:
        target = self.work / "debian-rootfs.tmp"
        _rm(target)
        self._debootstrap(target)
        self._slim(target)
        _write(target, "etc/apt/sources.list.d/debian.sources", self._apt_sources())
        _rm(target / "etc/apt/sources.list")
        _write(target, "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        _cleanup(target)
        final = self.work / "debian-rootfs"
        _rm(final)
        os.rename(target, final)
        diff_id, _ = self._store_layer(tree_entries(final, self.epoch))
        (self.work / "debian-rootfs.layer").write_text(diff_id)
        version = (final / "etc/debian_version").read_text().strip()
        ts = _rfc3339(self.epoch)
        config = self._image_config({"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["bash"]}, [diff_id], [
            {"created": ts, "created_by": f"# debootstrap --variant=minbase {hostapt.SUITE} + slim (debian {version})"},
            {"created": ts, "created_by": 'CMD ["bash"]', "empty_layer": True}])
        self._save("debian", config)
        return config

    def _slim(self, r: Path) -> None:
        """The official slim image's settings: no docs/man/locales, apt cleans after itself."""
        _write(r, "etc/dpkg/dpkg.cfg.d/docker", "".join(f"{kind} {path}\n" for kind, path in (
            ("path-exclude", "/usr/share/doc/*"), ("path-include", "/usr/share/doc/*/copyright"),
            ("path-exclude", "/usr/share/groff/*"), ("path-exclude", "/usr/share/info/*"),
            ("path-exclude", "/usr/share/linda/*"), ("path-exclude", "/usr/share/lintian/*"),
            ("path-exclude", "/usr/share/locale/*"), ("path-include", "/usr/share/locale/locale.alias"),
            ("path-exclude", "/usr/share/man/*"))))
        _write(r, "etc/dpkg/dpkg.cfg.d/docker-apt-speedup", "force-unsafe-io\n")
        clean = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"
        _write(r, "etc/apt/apt.conf.d/docker-clean",
               f'DPkg::Post-Invoke {{ "{clean}"; }};\nAPT::Update::Post-Invoke {{ "{clean}"; }};\n'
               'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')
        _write(r, "etc/apt/apt.conf.d/docker-no-languages", 'Acquire::Languages "none";\n')
        _write(r, "etc/apt/apt.conf.d/docker-gzip-indexes", 'Acquire::GzipIndexes "true";\n')
        _write(r, "etc/apt/apt.conf.d/docker-autoremove-suggests", 'Apt::AutoRemove::SuggestsImportant "false";\n')
        # package installs must not start daemons inside an image build or a container
        _write(r, "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)

    def _base_rootfs(self, base_diff: str) -> Path:
        """work/debian-rootfs matching the cached debian layer, unpacked from it when missing."""
        final, marker = self.work / "debian-rootfs", self.work / "debian-rootfs.layer"
        if final.is_dir() and marker.exists() and marker.read_text().strip() == base_diff:
            return final
        self.log("unpacking the cached debian layer")
        tmp = self.work / "debian-rootfs.tmp"
        _rm(tmp)
        tmp.mkdir()
        subprocess.run(["tar", "-xpf", str(self.layer_path(base_diff)), "-C", str(tmp), "--numeric-owner"],
                       check=True)
        _rm(final)
        os.rename(tmp, final)
        marker.write_text(base_diff)
        return final

    # -- nginx -------------------------------------------------------------------------------

    def _chroot(self, root: Path, *cmd: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["chroot", str(root), *cmd], env=self._env(), capture_output=quiet, text=True)
        if r.returncode != 0:
            raise hostapt.BootstrapError(f"chroot {' '.join(cmd)} failed:\n{(r.stdout or '')[-2000:]}"
                                         f"{(r.stderr or '')[-2000:]}")
        return r

    def _nginx(self) -> dict[str, Any]:
        base = self.ensure_unlocked("debian")
        base_diffs = base["rootfs"]["diff_ids"]
        base_root = self._base_rootfs(base_diffs[0])
        r = self.work / "nginx-rootfs"
        _rm(r)
        subprocess.run(["cp", "-a", "--reflink=auto", str(base_root), str(r)], check=True)
        try:
            shutil.copyfile("/etc/resolv.conf", r / "etc/resolv.conf")
            for n, (ma, mi) in {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                                "urandom": (1, 9), "tty": (5, 0)}.items():
                os.mknod(r / "dev" / n, 0o666 | stat.S_IFCHR, os.makedev(ma, mi))
                os.chmod(r / "dev" / n, 0o666)
            self.log("apt-get update (in the image)")
            for attempt in range(3):  # a mirror mid-sync fails now and then
                try:
                    self._chroot(r, "apt-get", "-q", "update")
                    break
                except hostapt.BootstrapError:
                    if attempt == 2:
                        raise
                    time.sleep(2)
            debdir = r / "var/cache/bootstrap-debs"
            (debdir / "partial").mkdir(parents=True)
            cached = {p.name for p in self.debs.glob("*.deb")}
            for name in cached:
                os.link(self.debs / name, debdir / name)
            self.log("apt-get install nginx (in the image)")
            self._chroot(r, "apt-get", "-q", "-y", "install", "--no-install-recommends",
                         "-o", "Dir::Cache::Archives=/var/cache/bootstrap-debs/", "nginx")
            for p in debdir.glob("*.deb"):
                if p.name not in cached:
                    shutil.copy2(p, self.debs / p.name)
            version = self._chroot(r, "dpkg-query", "-W", "-f", "${Version}", "nginx").stdout
            _rm(debdir)
            cfg, extra = _nginx_layout(r, version.split("-")[0].split(":")[-1])
            _cleanup(r)
            diff_id, _ = self._store_layer(diff_entries(r, base_root, self.epoch))
        finally:
            _rm(r)
        ts = _rfc3339(self.epoch)
        history = [h for h in base["history"] if not h.get("empty_layer")]
        history.append({"created": ts, "created_by": "RUN apt-get update && apt-get install -y "
                        "--no-install-recommends nginx && rm -rf /var/lib/apt/lists/*"})
        history += [{"created": ts, "created_by": h, "empty_layer": True} for h in extra]
        config = self._image_config(cfg, base_diffs + [diff_id], history)
        self._save("nginx", config, base_diffs)
        return config

    def ensure_unlocked(self, name: str) -> dict[str, Any]:
        """Like ensure() for a dependency, while the lock is already held."""
        config = self.cached(name)
        if config is not None:
            return config
        self.log(f"{name}: building (needed first)")
        return {"busybox": self._busybox, "debian": self._debian}[name]()


def _busybox_rootfs(binary: Path, applets: list[str], root: Path) -> None:
    for d, mode in (("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755), ("etc", 0o755),
                    ("root", 0o700), ("home", 0o755), ("tmp", 0o1777), ("var/spool/mail", 0o755),
                    ("var/www", 0o755), ("dev", 0o755), ("proc", 0o755), ("sys", 0o755)):
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)
    shutil.copyfile(binary, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    for a in applets:  # absolute symlinks, as `busybox --install -s` makes
        p = root / a.lstrip("/")
        if a.lstrip("/") != "bin/busybox" and not p.is_symlink():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to("/bin/busybox")
    users = [("root", 0, 0, "/root", "/bin/sh"), ("daemon", 1, 1, "/usr/sbin", "/bin/false"),
             ("bin", 2, 2, "/bin", "/bin/false"), ("sys", 3, 3, "/dev", "/bin/false"),
             ("mail", 8, 8, "/var/spool/mail", "/bin/false"), ("www-data", 33, 33, "/var/www", "/bin/false"),
             ("nobody", 65534, 65534, "/home", "/bin/false")]
    _write(root, "etc/passwd", "".join(f"{n}:x:{u}:{g}:{n}:{h}:{s}\n" for n, u, g, h, s in users))
    groups = [("root", 0), ("daemon", 1), ("bin", 2), ("sys", 3), ("adm", 4), ("tty", 5), ("disk", 6),
              ("mail", 8), ("wheel", 10), ("www-data", 33), ("users", 100), ("nogroup", 65534)]
    _write(root, "etc/group", "".join(f"{n}:x:{g}:\n" for n, g in groups))
    _write(root, "etc/shadow", "".join(f"{n}:*::0:::::\n" for n, *_ in users), 0o640)
    _write(root, "etc/nsswitch.conf", "hosts: files dns\nnetworks: files\n")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), 0, 0)


def _cleanup(r: Path) -> None:
    """What the official images' `apt-get clean && rm -rf /var/lib/apt/lists/*` etc. leave behind."""
    def rm_children(rel: str, keep: tuple[str, ...] = ()) -> None:
        d = r / rel
        if d.is_dir() and not d.is_symlink():
            for c in d.iterdir():
                if c.name not in keep:
                    _rm(c)

    rm_children("var/lib/apt/lists", keep=("partial",))
    rm_children("var/lib/apt/lists/partial")
    rm_children("var/cache/apt/archives", keep=("partial", "lock"))
    rm_children("var/cache/apt/archives/partial")
    for p in (r / "var/cache/apt").glob("*.bin"):
        p.unlink()
    for rel in ("var/cache/debconf", "var/lib/dpkg"):
        for p in (r / rel).glob("*-old"):
            _rm(p)
    for rel in ("tmp", "var/tmp", "dev"):
        rm_children(rel)
    rm_children("run", keep=("lock",))
    # truncate logs, never following symlinks: nginx's point at /dev/stdout, the host's here
    for dirpath, _dirs, files in os.walk(r / "var/log"):
        for n in files:
            p = Path(dirpath) / n
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_size:
                os.truncate(p, 0)
    for rel in ("etc/resolv.conf", "etc/hostname"):
        _rm(r / rel)
    for sub in ("man", "groff", "info", "lintian", "linda"):
        rm_children(f"usr/share/{sub}")
    rm_children("usr/share/locale", keep=("locale.alias",))
    docs = r / "usr/share/doc"
    if docs.is_dir():
        for pkg in docs.iterdir():
            if pkg.is_dir() and not pkg.is_symlink():
                for c in pkg.iterdir():
                    if c.name != "copyright":
                        _rm(c)


NGINX_DEFAULT_CONF = """\
server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
"""

NGINX_INDEX = """\
<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

NGINX_50X = """\
<!DOCTYPE html>
<html>
<head>
<title>Error</title>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
</body>
</html>
"""


def _nginx_layout(r: Path, version: str) -> tuple[dict[str, Any], list[str]]:
    """Debian's nginx made to look like the official image; returns (container config, history)."""
    _rm(r / "etc/nginx/sites-enabled/default")
    _write(r, "etc/nginx/conf.d/default.conf", NGINX_DEFAULT_CONF)
    _write(r, "usr/share/nginx/html/index.html", NGINX_INDEX)
    _write(r, "usr/share/nginx/html/50x.html", NGINX_50X)
    logdir = r / "var/log/nginx"
    logdir.mkdir(parents=True, exist_ok=True)
    for n, target in (("access.log", "/dev/stdout"), ("error.log", "/dev/stderr")):
        _rm(logdir / n)
        (logdir / n).symlink_to(target)
    cfg = {"ExposedPorts": {"80/tcp": {}}, "Env": [f"PATH={DEFAULT_PATH}", f"NGINX_VERSION={version}"],
           "Cmd": ["nginx", "-g", "daemon off;"], "StopSignal": "SIGQUIT"}
    return cfg, [f"ENV NGINX_VERSION={version}", "EXPOSE map[80/tcp:{}]", "STOPSIGNAL SIGQUIT",
                 'CMD ["nginx" "-g" "daemon off;"]']


def normalize_tag(tag: str) -> str:
    return tag if ":" in tag.rsplit("/", 1)[-1] else tag + ":latest"


def build(name: str, out: str | os.PathLike[str] | None = None, tags: list[str] | None = None,
          cache_dir: str | os.PathLike[str] | None = None, log: Log | None = None, force: bool = False) -> Path:
    """Build (or take from the cache) image `name` and write it as a docker-archive; return the path.

    `out` defaults to <cache>/<name>.tar; `tags` to the image's usual tag (nginx:latest, ...).
    """
    cache = Path(cache_dir or os.environ.get("DOCKYARD_BOOTSTRAP_CACHE") or DEFAULT_CACHE).resolve()
    b = Bootstrapper(cache, log)
    path = Path(out) if out else cache / f"{name}.tar"
    b.write(name, path, [normalize_tag(t) for t in (tags or [DEFAULT_TAGS.get(name, name)])], force)
    return path
