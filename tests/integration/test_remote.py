"""Remote daemons: a client in a network namespace drives a daemon over TCP+TLS and over ssh://.

The daemon runs in the host namespace and listens on one end of a veth pair; the client runs
in a fresh namespace (`ip netns exec`) holding the other end, so it reaches the daemon only by
the network. Certificates come from `openssl`, sshd from Debian's openssh-server.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI, ROOT, Daemon, own_daemon
from tests.subnets import free_subnet

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, daemon)")

VENV_BIN = str(Path(sys.executable).parent)


class Net:
    """A namespace joined to the host by a veth pair: host side .1, namespace side .2."""

    def __init__(self) -> None:
        # a /30 reserved for this run: its names too are no other live run's, so a leftover that
        # has them is a dead run's
        subnet = free_subnet(30)
        tag = subnet.network_address.packed[1:].hex()
        self.ns = f"dyrem{tag}"
        self.host_if, self.ns_if = f"dyrh{tag}", f"dyrn{tag}"
        self.host_ip, self.ns_ip = str(subnet.network_address + 1), str(subnet.network_address + 2)

    def up(self) -> None:
        for cmd in (
            ["ip", "netns", "add", self.ns],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.ns],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if],
            ["ip", "-n", self.ns, "link", "set", self.ns_if, "up"],
            ["ip", "-n", self.ns, "link", "set", "lo", "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, cn: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "2", "-subj", f"/CN={cn}", cwd=d)


def make_cert(ca: Path, out: Path, cn: str, ext: str) -> None:
    """out/{cert,key}.pem signed by the CA in `ca`, plus a copy of its ca.pem (DOCKER_CERT_PATH layout)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "ext.cnf").write_text(ext + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "req.csr", "-subj", f"/CN={cn}",
             cwd=out)
    _openssl("x509", "-req", "-in", "req.csr", "-CA", str(ca / "ca.pem"), "-CAkey", str(ca / "ca-key.pem"),
             "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf", cwd=out)
    shutil.copy(ca / "ca.pem", out / "ca.pem")


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    n = Net()
    n.down()  # a leftover from a killed run that had the same subnet
    n.up()
    try:
        yield n
    finally:
        n.down()


@pytest.fixture(scope="module")
def certs(net: Net) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="dyrem-certs-"))
    try:
        make_ca(d / "ca", "dockyard-test-ca")
        make_cert(d / "ca", d / "server", "server", f"subjectAltName=IP:{net.host_ip}\nextendedKeyUsage=serverAuth")
        make_cert(d / "ca", d / "client", "client", "extendedKeyUsage=clientAuth")
        make_ca(d / "rogue", "rogue-ca")
        make_cert(d / "rogue", d / "rogue-client", "client", "extendedKeyUsage=clientAuth")
        shutil.copy(d / "ca" / "ca.pem", d / "rogue-client" / "ca.pem")  # trusts the server; its cert is the lie
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_daemon(net: Net, certs: Path) -> Iterator[Daemon]:
    s = certs / "server"
    with own_daemon("dy-", "-H", f"tcp://{net.host_ip}:2376", "--tlsverify", "--tlscacert", str(s / "ca.pem"),
                    "--tlscert", str(s / "cert.pem"), "--tlskey", str(s / "key.pem")) as d:
        yield d


def in_ns(net: Net, argv: list[str], env: dict[str, str], input: bytes | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ip", "netns", "exec", net.ns, *argv], env=env, input=input, capture_output=True,
                          timeout=timeout, cwd=ROOT)


def client_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(tmp / "docker-config")
    env.update(extra)
    return env


def dockyard(net: Net, env: dict[str, str], *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return in_ns(net, [sys.executable, "-m", "dockyard.cli.main", *args], env, input)


def ok(p: subprocess.CompletedProcess[bytes]) -> str:
    assert p.returncode == 0, f"rc={p.returncode}\nstdout: {p.stdout!r}\nstderr: {p.stderr!r}"
    return p.stdout.decode()


# -- TCP + TLS -------------------------------------------------------------------------


def test_tls_env_default_port(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path) -> None:
    # No port in DOCKER_HOST: with TLS the client picks 2376, as docker does.
    env = client_env(tmp_path, DOCKER_HOST=f"tcp://{net.host_ip}", DOCKER_TLS_VERIFY="1",
                     DOCKER_CERT_PATH=str(certs / "client"))
    assert ok(dockyard(net, env, "version", "--format", "{{.Server.ApiVersion}}")).strip()
    assert "CONTAINER ID" in ok(dockyard(net, env, "ps", "-a"))
    assert "busybox" in ok(dockyard(net, env, "images"))


def test_tls_flags(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path) -> None:
    c = certs / "client"
    env = client_env(tmp_path)
    out = ok(dockyard(net, env, "-H", f"tcp://{net.host_ip}:2376", "--tlsverify", "--tlscacert", str(c / "ca.pem"),
                      "--tlscert", str(c / "cert.pem"), "--tlskey", str(c / "key.pem"), "images", "-q"))
    assert out.strip()


def test_tls_real_docker_cli(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path) -> None:
    env = client_env(tmp_path, DOCKER_HOST=f"tcp://{net.host_ip}:2376", DOCKER_TLS_VERIFY="1",
                     DOCKER_CERT_PATH=str(certs / "client"))
    assert "busybox" in ok(in_ns(net, [DOCKER_CLI, "images"], env))


@pytest.mark.parametrize("case", ["no-cert", "rogue-cert", "plain-http"])
def test_tls_refuses_unauthenticated(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path, case: str) -> None:
    host = f"tcp://{net.host_ip}:2376"
    if case == "no-cert":
        args = ["--tlsverify", "--tlscacert", str(certs / "client" / "ca.pem")]
        env = client_env(tmp_path, DOCKER_CERT_PATH=str(tmp_path / "empty"))
    elif case == "rogue-cert":
        args = ["--tlsverify"]
        env = client_env(tmp_path, DOCKER_CERT_PATH=str(certs / "rogue-client"))
    else:
        args, env = [], client_env(tmp_path)
    p = dockyard(net, env, "-H", host, *args, "ps")
    assert p.returncode != 0
    assert b"CONTAINER ID" not in p.stdout
    plain = b"Client sent an HTTP request to an HTTPS server."  # what dockerd (Go's net/http) answers
    assert (plain in p.stderr) == (case == "plain-http"), p.stderr
    # and the same with the real docker CLI, which the daemon must refuse as well
    p = in_ns(net, [DOCKER_CLI, "-H", host, *args, "ps"], env)
    assert p.returncode != 0
    assert (plain in p.stderr) == (case == "plain-http"), p.stderr


def test_tls_client_verifies_server(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path) -> None:
    # A client trusting only the rogue CA must refuse our daemon's certificate.
    r = certs / "rogue-client"
    env = client_env(tmp_path)
    p = dockyard(net, env, "-H", f"tcp://{net.host_ip}:2376", "--tlsverify", "--tlscacert",
                 str(certs / "rogue" / "ca.pem"), "--tlscert", str(r / "cert.pem"), "--tlskey", str(r / "key.pem"), "ps")
    assert p.returncode != 0
    assert b"CERTIFICATE_VERIFY_FAILED" in p.stderr


def in_pty(net: Net, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """argv with a terminal on stdin/stdout (util-linux `script`), as `-it` needs."""
    return in_ns(net, ["script", "-qec", shlex.join(argv), "/dev/null"], env, input=b"")


def test_tls_run_logs_exec(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path) -> None:
    env = client_env(tmp_path, DOCKER_HOST=f"tcp://{net.host_ip}:2376", DOCKER_TLS_VERIFY="1",
                     DOCKER_CERT_PATH=str(certs / "client"))
    assert ok(dockyard(net, env, "run", "--rm", "busybox", "echo", "hi")) == "hi\n"
    name = f"remote-{os.getpid()}"
    try:
        # logs -f follows over TLS until the container ends
        ok(dockyard(net, env, "run", "-d", "--name", name, "busybox", "sh", "-c", "echo one; sleep 1; echo two"))
        assert ok(dockyard(net, env, "logs", "-f", name)) == "one\ntwo\n"
        ok(dockyard(net, env, "rm", name))
        ok(dockyard(net, env, "run", "-d", "--name", name, "busybox", "sleep", "300"))
        # exec -it: a terminal in the container, through the hijacked TLS stream
        out = ok(in_pty(net, [sys.executable, "-m", "dockyard.cli.main", "exec", "-it", name, "sh", "-c",
                              "tty; echo done"], env))
        assert "/dev/pts/" in out and "done" in out
        p = dockyard(net, env, "exec", name, "sh", "-c", "exit 7")
        assert p.returncode == 7
        # and the real docker CLI the same way
        out = ok(in_pty(net, [DOCKER_CLI, "exec", "-it", name, "sh", "-c", "tty; echo done"], env))
        assert "/dev/pts/" in out and "done" in out
        assert ok(in_ns(net, [DOCKER_CLI, "run", "--rm", "busybox", "echo", "hi"], env)) == "hi\n"
    finally:
        dockyard(net, env, "rm", "-f", name)


def test_tls_context(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path) -> None:
    """A context made by the real docker CLI, used by ours (and the other way round), over TLS."""
    c = certs / "client"
    env = client_env(tmp_path)
    spec = f"host=tcp://{net.host_ip}:2376,ca={c / 'ca.pem'},cert={c / 'cert.pem'},key={c / 'key.pem'}"
    ok(in_ns(net, [DOCKER_CLI, "context", "create", "theirs", "--docker", spec], env))
    ok(dockyard(net, env, "context", "create", "ours", "--docker", spec))
    assert "busybox" in ok(dockyard(net, env, "--context", "theirs", "images"))
    assert "busybox" in ok(in_ns(net, [DOCKER_CLI, "--context", "ours", "images"], env))
    ok(dockyard(net, env, "context", "use", "ours"))
    assert ok(in_ns(net, [DOCKER_CLI, "context", "show"], env)).strip() == "ours"
    assert "busybox" in ok(dockyard(net, env, "images"))
    assert "busybox" in ok(dockyard(net, {**env, "DOCKER_CONTEXT": "theirs"}, "images"))


# -- plain TCP ----------------------------------------------------------------------------


def test_plain_tcp_on_network_address_refused(net: Net, tmp_path: Path) -> None:
    base = tmp_path / "d"
    p = subprocess.run([sys.executable, "-m", "dockyard.daemon.main", "-H", f"tcp://{net.host_ip}:2375",
                        "--data-root", str(base / "data"), "--exec-root", str(base / "run"),
                        "--config-file", str(_empty_json(tmp_path))],
                       capture_output=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1
    assert b"--insecure-tcp" in p.stderr


def _empty_json(tmp: Path) -> Path:
    f = tmp / "daemon.json"
    f.write_text("{}")
    return f


def test_plain_tcp_with_insecure_flag_warns(net: Net, tmp_path: Path) -> None:
    d = Daemon(Path(tempfile.mkdtemp(prefix="dy-", dir="/tmp")))
    try:
        d.start("-H", f"tcp://{net.host_ip}:2375", "--insecure-tcp")
        assert "WITHOUT TLS" in d.log.read_text()
        env = client_env(tmp_path, DOCKER_HOST=f"tcp://{net.host_ip}:2375")
        assert ok(dockyard(net, env, "version", "--format", "{{.Server.ApiVersion}}")).strip()
    finally:
        d.teardown()


# -- ssh:// -----------------------------------------------------------------------------


class SSHD:
    """Debian's sshd on the host end of the veth, root login by a temp key; sessions see the test daemon."""

    def __init__(self, net: Net, daemon: Daemon) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dyrem-ssh-"))
        self.ip, self.port = net.host_ip, 2222
        d = self.dir
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        (d / "sshd_config").write_text(
            f"ListenAddress {self.ip}\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPidFile none\n"
            # the remote `dockyard` (and `docker`) must be on PATH and dial the test daemon
            f"SetEnv PATH={VENV_BIN}:/usr/local/bin:/usr/bin:/bin DOCKER_HOST={daemon.host}\n"
        )
        (d / "known_hosts").write_text(f"[{self.ip}]:{self.port} {(d / 'host_key.pub').read_text()}")
        # Clients find `ssh` on PATH (docker does the same): this one uses our key and known_hosts only.
        (d / "bin").mkdir()
        wrapper = d / "bin" / "ssh"
        wrapper.write_text(
            f"#!/bin/sh\nexec /usr/bin/ssh -F /dev/null -i {d / 'client_key'} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={d / 'known_hosts'} -o StrictHostKeyChecking=yes \"$@\"\n"
        )
        wrapper.chmod(0o755)
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        self.log = open(d / "sshd.log", "wb")
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config"), "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self) -> None:
        import socket
        import time

        while self.proc.poll() is None:
            try:
                socket.create_connection((self.ip, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")

    def env(self, tmp: Path, **extra: str) -> dict[str, str]:
        return client_env(tmp, PATH=f"{self.dir / 'bin'}:{os.environ['PATH']}", **extra)

    @property
    def url(self) -> str:
        return f"ssh://root@{self.ip}:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd(net: Net, tls_daemon: Daemon) -> Iterator[SSHD]:
    if not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("openssh-server is not installed (scripts/setup installs it)")
    s = SSHD(net, tls_daemon)
    try:
        yield s
    finally:
        s.close()


def test_ssh_host(net: Net, sshd: SSHD, tmp_path: Path) -> None:
    env = sshd.env(tmp_path, DOCKER_HOST=sshd.url)
    assert ok(dockyard(net, env, "version", "--format", "{{.Server.ApiVersion}}")).strip()
    assert "CONTAINER ID" in ok(dockyard(net, env, "ps", "-a"))
    assert "busybox" in ok(dockyard(net, env, "-H", sshd.url, "images"))


def test_dial_stdio_half_close(net: Net, sshd: SSHD, tmp_path: Path) -> None:
    """stdin's end reaches the daemon as a half-close; the answer still comes back, then dial-stdio exits."""
    env = sshd.env(tmp_path)
    request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"  # keep-alive: the daemon closes on our EOF
    p = in_ns(net, ["ssh", "-p", str(sshd.port), f"root@{sshd.ip}", "--", "dockyard", "system", "dial-stdio"],
              env, input=request, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"HTTP/1.1 200")
    assert p.stdout.endswith(b"\r\n\r\nOK")


def test_ssh_real_docker_cli_to_our_daemon(net: Net, sshd: SSHD, tmp_path: Path) -> None:
    # The real CLI runs `ssh ... docker system dial-stdio`; that remote docker dials our daemon.
    env = sshd.env(tmp_path, DOCKER_HOST=sshd.url)
    assert "busybox" in ok(in_ns(net, [DOCKER_CLI, "images"], env))


def test_ssh_context_both_clis(net: Net, sshd: SSHD, tmp_path: Path) -> None:
    env = sshd.env(tmp_path)
    ok(in_ns(net, [DOCKER_CLI, "context", "create", "remote", "--docker", f"host={sshd.url}"], env))
    assert "busybox" in ok(dockyard(net, env, "--context", "remote", "images"))
    assert "busybox" in ok(dockyard(net, {**env, "DOCKER_CONTEXT": "remote"}, "images"))


def test_ssh_run_attach_stdin(net: Net, sshd: SSHD, tmp_path: Path) -> None:
    env = sshd.env(tmp_path, DOCKER_HOST=sshd.url)
    assert ok(dockyard(net, env, "run", "--rm", "busybox", "echo", "hi")) == "hi\n"
    # hijacked attach through ssh, ended by stdin's half-close
    assert ok(dockyard(net, env, "run", "-i", "--rm", "busybox", "cat", input=b"hi\n")) == "hi\n"


# -- build and compose over the remote link ------------------------------------------------


def _build_ctx(tmp: Path) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "msg.txt").write_text("built remotely\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY msg.txt /msg.txt\nRUN cp /msg.txt /out.txt\n"
                                    'CMD ["cat", "/out.txt"]\n')
    return ctx


COMPOSE_YML = """\
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo served-by-web > /www/index.html && exec httpd -f -p 80 -h /www"]
  client:
    image: busybox
    depends_on: [web]
    command: ["sh", "-c", "until wget -qO- http://web/; do sleep 0.2; done"]
"""


def _compose_dir(tmp: Path) -> Path:
    d = tmp / "proj"
    d.mkdir()
    (d / "compose.yaml").write_text(COMPOSE_YML)
    return d


def _compose(net: Net, env: dict[str, str], proj: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return dockyard(net, env, "compose", "-f", str(proj / "compose.yaml"), "-p", "rproj", *args)


def _check_build_both_clis(net: Net, env: dict[str, str], ctx: Path) -> None:
    try:
        ok(in_ns(net, [DOCKER_CLI, "build", "-t", "remote-built", str(ctx)], {**env, "DOCKER_BUILDKIT": "0"}))
        assert ok(in_ns(net, [DOCKER_CLI, "run", "--rm", "remote-built"], env)) == "built remotely\n"
        ok(dockyard(net, env, "build", "-t", "remote-built2", str(ctx)))
        assert ok(dockyard(net, env, "run", "--rm", "remote-built2")) == "built remotely\n"
    finally:
        dockyard(net, env, "rmi", "-f", "remote-built", "remote-built2")


def _check_compose(net: Net, env: dict[str, str], proj: Path) -> None:
    try:
        ok(_compose(net, env, proj, "up", "-d"))
        ps = ok(_compose(net, env, proj, "ps", "-a"))
        assert "rproj-web-1" in ps and "rproj-client-1" in ps
        # the client fetches from `web` by service name, then exits; its log comes back over the link
        assert ok(dockyard(net, env, "wait", "rproj-client-1")).strip() == "0"
        assert "served-by-web" in ok(_compose(net, env, proj, "logs", "client"))
    finally:
        ok(_compose(net, env, proj, "down", "-v"))
    assert "rproj" not in ok(dockyard(net, env, "ps", "-a"))


def test_tls_build_and_compose(net: Net, certs: Path, tls_daemon: Daemon, tmp_path: Path) -> None:
    env = client_env(tmp_path, DOCKER_HOST=f"tcp://{net.host_ip}:2376", DOCKER_TLS_VERIFY="1",
                     DOCKER_CERT_PATH=str(certs / "client"))
    _check_build_both_clis(net, env, _build_ctx(tmp_path))
    _check_compose(net, env, _compose_dir(tmp_path))


def test_ssh_build_and_compose(net: Net, sshd: SSHD, tmp_path: Path) -> None:
    env = sshd.env(tmp_path, DOCKER_HOST=sshd.url)
    _check_build_both_clis(net, env, _build_ctx(tmp_path))
    _check_compose(net, env, _compose_dir(tmp_path))
