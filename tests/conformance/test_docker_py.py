"""docker-py 7 against our daemon: the engine core (containers, images, events) and storage (volumes, mounts)."""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import docker
import docker.errors
import docker.types
import pytest

from tests.conftest import Daemon

BB = "busybox"


@pytest.fixture()
def client(clean_daemon: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=clean_daemon.host, timeout=60)
    try:
        yield c
    finally:
        c.close()


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- system ---------------------------------------------------------------


def test_version_info_ping(client: docker.DockerClient) -> None:
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"] >= "1.44"
    assert v["Os"] == "linux"
    info = client.info()
    assert info["Driver"] == "overlay2"
    assert info["Images"] >= 1
    assert "Containers" in info


def test_df(client: docker.DockerClient) -> None:
    df = client.df()
    assert {"Images", "Containers", "Volumes", "LayersSize"} <= set(df)
    assert any("busybox:latest" in (i.get("RepoTags") or []) for i in df["Images"])


# --- containers -----------------------------------------------------------


def test_run_remove_returns_output(client: docker.DockerClient) -> None:
    assert client.containers.run(BB, "echo hi", remove=True) == b"hi\n"
    assert client.containers.list(all=True) == []


def test_run_nonzero_raises_container_error(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.ContainerError) as ei:
        client.containers.run(BB, "sh -c 'echo oops >&2; exit 4'", remove=True)
    assert ei.value.exit_status == 4
    assert b"oops" in ei.value.stderr


def test_detached_logs_wait(client: docker.DockerClient) -> None:
    c = client.containers.run(BB, ["sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.1; done; exit 5"], detach=True)
    streamed = b"".join(c.logs(stream=True, follow=True))
    assert streamed == b"l1\nl2\nl3\n"
    assert c.wait() == {"StatusCode": 5, "Error": None} or c.wait()["StatusCode"] == 5
    assert c.logs() == b"l1\nl2\nl3\n"
    assert c.logs(tail=1) == b"l3\n"
    c.reload()
    assert c.status == "exited"
    assert c.attrs["State"]["ExitCode"] == 5
    c.remove()


def test_stop_kill_reload_state(client: docker.DockerClient) -> None:
    c = client.containers.run(BB, "sleep 300", detach=True)
    c.reload()
    st = c.attrs["State"]
    assert st["Status"] == "running" and st["Running"] is True and st["Pid"] > 0
    c.stop(timeout=1)
    c.reload()
    assert c.attrs["State"]["Running"] is False
    assert c.attrs["State"]["ExitCode"] == 137
    c.start()
    c.reload()
    assert c.status == "running"
    c.kill()
    assert c.wait()["StatusCode"] == 137
    c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_rename_get_list_filters(client: docker.DockerClient) -> None:
    label = uniq("dpy")
    a = client.containers.create(BB, "true", labels={"suite": label}, name=uniq("a"))
    b = client.containers.create(BB, "true", labels={"suite": label, "role": "b"})
    client.containers.create(BB, "true")  # no label: filtered out
    new = uniq("renamed")
    a.rename(new)
    a.reload()
    assert a.name == new
    assert client.containers.get(new).id == a.id
    assert client.containers.get(a.id[:12]).id == a.id
    found = {c.id for c in client.containers.list(all=True, filters={"label": f"suite={label}"})}
    assert found == {a.id, b.id}
    assert [c.id for c in client.containers.list(all=True, filters={"label": "role=b"})] == [b.id]
    assert client.containers.list(filters={"label": f"suite={label}"}) == []  # none running
    assert client.containers.list(all=True, filters={"name": new})[0].id == a.id


def test_exec_run_exit_code(client: docker.DockerClient) -> None:
    c = client.containers.run(BB, "sleep 300", detach=True)
    r = c.exec_run("sh -c 'exit 3'")
    assert r.exit_code == 3
    r = c.exec_run(["sh", "-c", "echo $X; echo e >&2"], environment={"X": "y"})
    assert r.exit_code == 0
    assert r.output == b"y\ne\n"
    r = c.exec_run("id -u", user="1000")
    assert r.output == b"1000\n"
    r = c.exec_run("pwd", workdir="/tmp")
    assert r.output == b"/tmp\n"
    r = c.exec_run("nosuch")
    assert r.exit_code == 127
    assert r.output == (b'OCI runtime exec failed: exec failed: unable to start container process: '
                        b'exec: "nosuch": executable file not found in $PATH: unknown\r\n')
    # The process starts only after the stream is hijacked (as in moby): no output may race the headers.
    for i in range(20):
        assert c.exec_run(f"echo {i}").output == f"{i}\n".encode()
    c.remove(force=True)


def test_put_get_archive_export_diff(client: docker.DockerClient) -> None:
    c = client.containers.run(BB, "sleep 300", detach=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"payload\n"
        ti = tarfile.TarInfo("hello.txt")
        ti.size = len(data)
        ti.mode = 0o640
        tf.addfile(ti, io.BytesIO(data))
    assert c.put_archive("/tmp", buf.getvalue()) is True
    assert c.exec_run("cat /tmp/hello.txt").output == b"payload\n"
    chunks, stat = c.get_archive("/tmp/hello.txt")
    assert stat["name"] == "hello.txt" and stat["size"] == 8
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
        member = tf.getmember("hello.txt")
        assert member.mode & 0o777 == 0o640
        f = tf.extractfile(member)
        assert f is not None and f.read() == b"payload\n"
    with pytest.raises(docker.errors.NotFound):
        c.get_archive("/no/such/path")
    diff = {(d["Path"], d["Kind"]) for d in c.diff()}
    assert ("/tmp", 0) in diff and ("/tmp/hello.txt", 1) in diff
    exported = b"".join(c.export())
    with tarfile.open(fileobj=io.BytesIO(exported)) as tf:
        names = set(tf.getnames())
    assert {"bin/busybox", "tmp/hello.txt"} <= {n.lstrip("./") for n in names}
    c.remove(force=True)


def test_error_statuses(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.NotFound) as nf:
        client.containers.get("no-such-container-xyz")
    assert nf.value.status_code == 404
    assert "No such container" in str(nf.value.explanation)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("no-such-image:nope")
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("no-such-image:nope", "true")
    c = client.containers.run(BB, "sleep 300", detach=True)
    with pytest.raises(docker.errors.APIError) as conflict:
        c.remove()
    assert conflict.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as dup:
        client.containers.create(BB, "true", name=c.name)
    assert dup.value.status_code == 409
    c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        c.reload()


# --- images ---------------------------------------------------------------


def test_images_list_get_history(client: docker.DockerClient) -> None:
    imgs = client.images.list()
    assert any("busybox:latest" in i.tags for i in imgs)
    bb = client.images.get(BB)
    assert "busybox:latest" in bb.tags
    assert bb.id.startswith("sha256:") and len(bb.id) == 71
    assert bb.attrs["Os"] == "linux"
    hist = bb.history()
    assert hist and all("Created" in h and "Size" in h for h in hist)
    assert client.images.list(name="busybox")[0].id == bb.id


def test_tag_remove_save_load_prune(client: docker.DockerClient) -> None:
    bb = client.images.get(BB)
    repo = uniq("dpytag")
    assert bb.tag(repo, "v1") is True
    assert client.images.get(f"{repo}:v1").id == bb.id
    blob = b"".join(client.images.get(f"{repo}:v1").save(named=f"{repo}:v1"))
    client.images.remove(f"{repo}:v1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{repo}:v1")
    loaded = client.images.load(blob)
    assert [i.id for i in loaded] == [bb.id]
    assert client.images.get(f"{repo}:v1").id == bb.id
    client.images.remove(f"{repo}:v1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.remove(f"{repo}:v1")
    pr = client.images.prune()
    assert "SpaceReclaimed" in pr
    assert client.images.get(BB).id == bb.id  # tagged: not pruned


# --- volumes and mounts ---------------------------------------------------


def test_volume_lifecycle(client: docker.DockerClient) -> None:
    name = uniq("vol")
    v = client.volumes.create(name, labels={"suite": name})
    assert v.name == name and v.attrs["Driver"] == "local" and v.attrs["Labels"] == {"suite": name}
    assert [x.name for x in client.volumes.list(filters={"label": f"suite={name}"})] == [name]
    assert client.volumes.get(name).attrs["Mountpoint"]
    v.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(name)
    anon = client.volumes.create(uniq("prunable"))
    pr = client.volumes.prune(filters={"all": "true"})
    assert anon.name in (pr["VolumesDeleted"] or [])


def test_named_volume_persists(client: docker.DockerClient) -> None:
    name = uniq("data")
    spec = {name: {"bind": "/data", "mode": "rw"}}
    client.containers.run(BB, "sh -c 'echo kept > /data/f'", volumes=spec, remove=True)
    assert client.containers.run(BB, "cat /data/f", volumes=spec, remove=True) == b"kept\n"
    c = client.containers.create(BB, "true", volumes=spec)
    m = c.attrs["Mounts"][0]
    assert (m["Type"], m["Name"], m["Destination"], m["RW"]) == ("volume", name, "/data", True)
    c.remove()
    with pytest.raises(docker.errors.APIError) as busy:
        c2 = client.containers.create(BB, "true", volumes=spec)
        try:
            client.volumes.get(name).remove()
        finally:
            c2.remove()
    assert busy.value.status_code == 409
    client.volumes.get(name).remove()


def test_bind_mount_readonly(client: docker.DockerClient) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/in.txt", "w") as f:
            f.write("host\n")
        ro = {tmp: {"bind": "/h", "mode": "ro"}}
        assert client.containers.run(BB, "cat /h/in.txt", volumes=ro, remove=True) == b"host\n"
        with pytest.raises(docker.errors.ContainerError) as ei:
            client.containers.run(BB, "touch /h/x", volumes=ro, remove=True)
        assert b"Read-only file system" in ei.value.stderr
        c = client.containers.create(BB, "true", volumes=ro)
        m = c.attrs["Mounts"][0]
        assert (m["Type"], m["Source"], m["Destination"], m["RW"]) == ("bind", tmp, "/h", False)
        c.remove()
        rw = {tmp: {"bind": "/h", "mode": "rw"}}
        client.containers.run(BB, "sh -c 'echo back > /h/out.txt'", volumes=rw, remove=True)
        with open(f"{tmp}/out.txt") as f:
            assert f.read() == "back\n"


def test_tmpfs(client: docker.DockerClient) -> None:
    out = client.containers.run(BB, "sh -c 'grep \" /t \" /proc/mounts'", tmpfs={"/t": "size=1m"}, remove=True)
    assert out.startswith(b"tmpfs /t tmpfs") and b"size=1024k" in out


def test_mount_types(client: docker.DockerClient) -> None:
    vol = uniq("mnt")
    with tempfile.TemporaryDirectory() as tmp:
        mounts = [
            docker.types.Mount("/v", vol, type="volume"),
            docker.types.Mount("/b", tmp, type="bind", read_only=True),
            docker.types.Mount("/t", None, type="tmpfs", tmpfs_size=1 << 20),
        ]
        out = client.containers.run(BB, "sh -c 'echo x > /v/f && cat /v/f && ! touch /b/y 2>/dev/null && "
                                    "echo ro && grep \" /t \" /proc/mounts'", mounts=mounts, remove=True)
        assert out.startswith(b"x\nro\ntmpfs /t tmpfs")
        c = client.containers.create(BB, "true", mounts=mounts)
        by_dest = {m["Destination"]: m for m in c.attrs["Mounts"]}
        assert by_dest["/v"]["Type"] == "volume" and by_dest["/v"]["Name"] == vol
        assert by_dest["/b"]["Type"] == "bind" and by_dest["/b"]["RW"] is False
        assert by_dest["/t"]["Type"] == "tmpfs"
        c.remove(v=True)
    client.volumes.get(vol).remove()


# --- networks -------------------------------------------------------------


def test_network_name_resolution(client: docker.DockerClient) -> None:
    net = client.networks.create(uniq("n1"))
    try:
        srv_name = uniq("srv")
        srv = client.containers.run(BB, "sh -c 'echo hello-net > /www/index.html; httpd -f -p 80 -h /www'",
                                    detach=True, name=srv_name, network=net.name,
                                    tmpfs={"/www": ""})
        out = b""
        for _ in range(600):  # httpd binds asynchronously (late on a loaded host)
            try:
                out = client.containers.run(BB, f"wget -qO- http://{srv_name}", network=net.name, remove=True)
                break
            except docker.errors.ContainerError:
                time.sleep(0.1)
        assert out == b"hello-net\n"
        net.reload()
        assert srv.id in {c.id for c in net.containers}
        other = client.containers.run(BB, "sleep 300", detach=True)
        net.connect(other, aliases=["alias1"])
        other.reload()
        assert net.name in other.attrs["NetworkSettings"]["Networks"]
        assert other.exec_run("wget -qO- http://" + srv_name).output == b"hello-net\n"
        net.disconnect(other)
        other.reload()
        assert net.name not in other.attrs["NetworkSettings"]["Networks"]
        srv.remove(force=True)
        other.remove(force=True)
    finally:
        net.remove()
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(net.id)


# --- events ---------------------------------------------------------------


def test_events_lifecycle(client: docker.DockerClient) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    c = client.containers.run(BB, "true", detach=True)
    c.wait()
    c.remove()
    until = datetime.now(UTC) + timedelta(seconds=1)
    evs = [e for e in client.events(decode=True, since=since, until=until,
                                    filters={"container": c.id})]
    actions = [e["Action"] for e in evs if e.get("Type") == "container"]
    for want in ("create", "start", "die", "destroy"):
        assert want in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
    die = next(e for e in evs if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "0"


def test_events_stream_live(client: docker.DockerClient) -> None:
    got: list[dict] = []
    stream = client.events(decode=True, filters={"type": "container", "event": "start"})

    def reader() -> None:
        for e in stream:
            got.append(e)
            break

    t = threading.Thread(target=reader, daemon=True)
    t.start()  # the daemon subscribed before it answered the events request: no wait for the reader
    c = client.containers.run(BB, "true", detach=True)
    t.join(30)
    stream.close()
    assert got and got[0]["id"] == c.id and got[0]["status"] == "start"
    c.remove(force=True)


def test_error_messages_match_docker(client: docker.DockerClient) -> None:
    """Explanations as dockerd words them (clients and compose match on them)."""
    run = client.containers.run(BB, "sleep 300", detach=True, name=uniq("errc"))
    stopped = client.containers.create(BB, "true")

    def explain(f: object, status: int) -> str:
        with pytest.raises(docker.errors.APIError) as ei:
            f()  # type: ignore[operator]
        assert ei.value.status_code == status, ei.value
        return str(ei.value.explanation)

    in_use = (f'Conflict. The container name "/{run.name}" is already in use by container "{run.id}". '
              "You have to remove (or rename) that container to be able to reuse that name.")
    assert explain(lambda: client.containers.create(BB, "true", name=run.name), 409) == in_use
    assert explain(lambda: stopped.rename(run.name), 409) == "Error when allocating new name: " + in_use
    assert explain(lambda: stopped.exec_run("true"), 409) == f"Container {stopped.id} is not running"
    assert explain(lambda: stopped.kill(), 409) == \
        f"Cannot kill container: {stopped.id}: Container {stopped.id} is not running"
    assert explain(lambda: run.get_archive("/nope"), 404) == f"Could not find the file /nope in container {run.id}"
    assert explain(lambda: run.put_archive("/nope", b""), 404) == \
        f"Could not find the file /nope in container {run.id}"
    assert explain(lambda: client.volumes.get("nope-vol"), 404) == "get nope-vol: no such volume"
    assert explain(lambda: client.networks.get("nope-net"), 404) == "network nope-net not found"
    assert explain(lambda: client.api.wait("nope-xyz"), 404) == "No such container: nope-xyz"
    assert explain(lambda: client.api.logs("nope-xyz"), 404) == "No such container: nope-xyz"
    assert explain(lambda: client.images.remove(BB), 409).startswith(
        'conflict: unable to remove repository reference "busybox" (must force) - container ')
    run.remove(force=True)
    stopped.remove()


def test_top_stats_pause_commit_prune(client: docker.DockerClient) -> None:
    c = client.containers.run(BB, "sleep 300", detach=True)
    top = c.top()
    assert "PID" in top["Titles"] and any("sleep 300" in " ".join(p) for p in top["Processes"])
    st = c.stats(stream=False)
    assert st["id"] == c.id and "memory_stats" in st and "cpu_stats" in st
    c.pause()
    c.reload()
    assert c.status == "paused" and c.attrs["State"]["Paused"] is True
    c.unpause()
    c.reload()
    assert c.status == "running"
    c.exec_run("sh -c 'echo committed > /marker'")
    repo = uniq("dpycommit")
    img = c.commit(repository=repo, tag="v1", changes=["ENV COMMITTED=1"])
    try:
        assert f"{repo}:v1" in img.tags
        out = client.containers.run(f"{repo}:v1", "sh -c 'cat /marker; echo $COMMITTED'", remove=True)
        assert out == b"committed\n1\n"
    finally:
        c.remove(force=True)
        client.images.remove(img.id)
    done = client.containers.create(BB, "true")
    pr = client.containers.prune()
    assert done.id in (pr["ContainersDeleted"] or [])


def test_volume_driver_opts_anonymous_volumes_from(client: docker.DockerClient) -> None:
    name = uniq("tmpvol")
    client.volumes.create(name, driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    out = client.containers.run(BB, "sh -c 'grep \" /d \" /proc/mounts'", volumes={name: {"bind": "/d"}},
                                remove=True)
    assert out.startswith(b"tmpfs /d tmpfs") and b"size=1024k" in out
    client.volumes.get(name).remove()
    # An anonymous volume (list form), shared through volumes_from, removed with the container (v=True).
    src = client.containers.run(BB, "sh -c 'echo anon > /anon/f; sleep 300'", volumes=["/anon"], detach=True)
    src.reload()
    anon = src.attrs["Mounts"][0]
    assert anon["Type"] == "volume" and anon["Destination"] == "/anon" and len(anon["Name"]) == 64
    for _ in range(600):  # until the container has written it
        if src.exec_run("cat /anon/f").output == b"anon\n":
            break
        time.sleep(0.1)
    assert client.containers.run(BB, "cat /anon/f", volumes_from=[src.id], remove=True) == b"anon\n"
    src.remove(force=True, v=True)
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(anon["Name"])


def test_read_only_rootfs_and_volume_prune_keeps_named(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.ContainerError) as ei:
        client.containers.run(BB, "touch /x", read_only=True, remove=True)
    assert b"Read-only file system" in ei.value.stderr
    assert client.containers.run(BB, "sh -c 'touch /t/x && echo ok'", read_only=True, tmpfs={"/t": ""},
                                 remove=True) == b"ok\n"
    named = uniq("keep")
    client.volumes.create(named)
    c = client.containers.create(BB, "true", volumes=["/anon2"])
    anon = c.attrs["Mounts"][0]["Name"]
    c.remove()  # without v: the anonymous volume stays, unused
    pr = client.volumes.prune()  # API >= 1.42: anonymous volumes only
    assert anon in (pr["VolumesDeleted"] or [])
    assert client.volumes.get(named).name == named
    client.volumes.get(named).remove()
