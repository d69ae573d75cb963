"""APIClient: one method per Engine API endpoint that the CLI and compose use."""

from __future__ import annotations

import json

from dockyard.client.base import BaseClient, Hijacked, PendingStream, Stream, q

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    JSON = dict[str, Any]


def _filters(filters: dict[str, list[str]] | None) -> str | None:
    return json.dumps(filters) if filters else None


def auth_header(auth: JSON | None) -> dict[str, str]:
    """X-Registry-Auth: base64url JSON of {username, password, serveraddress} or {identitytoken}."""
    if not auth:
        return {}
    import base64  # here: few commands send credentials, every command pays a top-level import

    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()}


class APIClient(BaseClient):
    # -- system ----------------------------------------------------------------
    def version(self) -> JSON:
        result: JSON = self.get("/version")
        return result

    def info(self) -> JSON:
        result: JSON = self.get("/info")
        return result

    def df(self) -> JSON:
        result: JSON = self.get("/system/df")
        return result

    def events(
        self, since: str | None = None, until: str | None = None, filters: dict[str, list[str]] | None = None
    ) -> Iterator[JSON]:
        with self.stream("GET", "/events", {"since": since, "until": until, "filters": _filters(filters)}) as s:
            yield from s.json()

    def login(self, auth: JSON) -> JSON:
        result: JSON = self.post("/auth", json_body=auth)
        return result

    # -- containers ------------------------------------------------------------
    def containers(
        self, all: bool = False, limit: int | None = None, size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[JSON]:
        params = {"all": all or None, "limit": limit, "size": size or None, "filters": _filters(filters)}
        result: list[JSON] = self.get("/containers/json", params)
        return result

    def create_container(self, config: JSON | bytes, name: str | None = None, platform: str | None = None,
                         pod: str | None = None) -> JSON:
        """config: a create body, or one encoded already (cli.opts.encode of cli.opts.build_create_body's)."""
        result: JSON = self.post("/containers/create", {"name": name, "platform": platform, "pod": pod}, config)
        return result

    # Pods, on podman's libpod paths (Dockyard's daemon and podman's service answer them)
    def create_pod(self, spec: JSON) -> JSON:
        result: JSON = self.post("/libpod/pods/create", None, spec)
        return result

    def pods(self, filters: dict[str, list[str]] | None = None) -> list[JSON]:
        result: list[JSON] = self.get("/libpod/pods/json", {"filters": _filters(filters)})
        return result

    def inspect_pod(self, name: str) -> JSON:
        result: JSON = self.get(f"/libpod/pods/{q(name)}/json")
        return result

    def start_pod(self, name: str) -> JSON:
        result: JSON = self.post(f"/libpod/pods/{q(name)}/start")
        return result

    def stop_pod(self, name: str, timeout: int | None = None) -> JSON:
        result: JSON = self.post(f"/libpod/pods/{q(name)}/stop", {"t": timeout})
        return result

    def remove_pod(self, name: str, force: bool = False) -> JSON:
        result: JSON = self.delete(f"/libpod/pods/{q(name)}", {"force": force or None})
        return result

    def inspect_container(self, cid: str, size: bool = False) -> JSON:
        result: JSON = self.get(f"/containers/{q(cid)}/json", {"size": size or None})
        return result

    def start(self, cid: str, detach_keys: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/start", {"detachKeys": detach_keys})

    def stop(self, cid: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/stop", {"t": timeout, "signal": signal})

    def restart(self, cid: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/restart", {"t": timeout, "signal": signal})

    def kill(self, cid: str, signal: str | None = None) -> None:
        self.post(f"/containers/{q(cid)}/kill", {"signal": signal})

    def remove_container(self, cid: str, force: bool = False, v: bool = False, link: bool = False) -> None:
        self.delete(f"/containers/{q(cid)}", {"force": force or None, "v": v or None, "link": link or None})

    def rename(self, cid: str, name: str) -> None:
        self.post(f"/containers/{q(cid)}/rename", {"name": name})

    def pause(self, cid: str) -> None:
        self.post(f"/containers/{q(cid)}/pause")

    def unpause(self, cid: str) -> None:
        self.post(f"/containers/{q(cid)}/unpause")

    def update(self, cid: str, config: JSON | bytes) -> JSON:
        result: JSON = self.post(f"/containers/{q(cid)}/update", json_body=config)
        return result

    def wait(self, cid: str, condition: str | None = None) -> JSON:
        """Blocks until the condition ("not-running", "next-exit", "removed"); {"StatusCode": n}."""
        with self.stream("POST", f"/containers/{q(cid)}/wait", {"condition": condition}) as s:
            raw = b"".join(s.chunks())
        result: JSON = json.loads(raw)
        return result

    def wait_stream(self, cid: str, condition: str | None = None) -> Stream:
        """The wait request sent now (before start, as docker's CLI does); read it later."""
        return self.stream("POST", f"/containers/{q(cid)}/wait", {"condition": condition})

    def wait_sent(self, cid: str, condition: str | None = None) -> PendingStream:
        """The wait request sent now, its answer read later: `run` sends it beside the attach and reads
        its answer (the daemon watches from then on) before the start, as docker's CLI does."""
        return self.stream_sent("POST", f"/containers/{q(cid)}/wait", {"condition": condition})

    def logs(
        self, cid: str, stdout: bool = True, stderr: bool = True, follow: bool = False,
        timestamps: bool = False, tail: str | None = None, since: str | None = None, until: str | None = None,
    ) -> Stream:
        params = {"stdout": stdout, "stderr": stderr, "follow": follow or None,
                  "timestamps": timestamps or None, "tail": tail, "since": since, "until": until}
        return self.stream("GET", f"/containers/{q(cid)}/logs", params)

    def attach(
        self, cid: str, stdin: bool = False, stdout: bool = True, stderr: bool = True,
        logs: bool = False, detach_keys: str | None = None,
    ) -> Hijacked:
        params = {"stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr,
                  "logs": logs or None, "detachKeys": detach_keys}
        return self.hijack("POST", f"/containers/{q(cid)}/attach", params)

    def resize(self, cid: str, height: int, width: int) -> None:
        self.post(f"/containers/{q(cid)}/resize", {"h": height, "w": width})

    def top(self, cid: str, ps_args: str | None = None) -> JSON:
        result: JSON = self.get(f"/containers/{q(cid)}/top", {"ps_args": ps_args})
        return result

    def changes(self, cid: str) -> list[JSON]:
        result: list[JSON] = self.get(f"/containers/{q(cid)}/changes") or []
        return result

    def export(self, cid: str) -> Stream:
        return self.stream("GET", f"/containers/{q(cid)}/export")

    def stats(self, cid: str, stream: bool = True, one_shot: bool = False) -> Stream:
        return self.stream("GET", f"/containers/{q(cid)}/stats",
                           {"stream": stream, "one-shot": one_shot or None})

    def get_archive(self, cid: str, path: str) -> Stream:
        return self.stream("GET", f"/containers/{q(cid)}/archive", {"path": path})

    def stat_path(self, cid: str, path: str) -> JSON:
        hdrs = self.head(f"/containers/{q(cid)}/archive", {"path": path})
        raw = hdrs.get("x-docker-container-path-stat", "")
        import base64

        result: JSON = json.loads(base64.b64decode(raw)) if raw else {}
        return result

    def put_archive(self, cid: str, path: str, data: bytes | Iterable[bytes], copy_uid_gid: bool = False) -> None:
        self.put(f"/containers/{q(cid)}/archive", {"path": path, "copyUIDGID": copy_uid_gid or None},
                 data=data, headers={"Content-Type": "application/x-tar"})

    def commit(
        self, cid: str, repo: str | None = None, tag: str | None = None, message: str | None = None,
        author: str | None = None, changes: list[str] | None = None, pause: bool = True,
        config: JSON | None = None,
    ) -> JSON:
        params = {"container": cid, "repo": repo, "tag": tag, "comment": message, "author": author,
                  "changes": changes, "pause": pause}
        result: JSON = self.post("/commit", params, config)
        return result

    def prune_containers(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.post("/containers/prune", {"filters": _filters(filters)})
        return result

    # -- exec ------------------------------------------------------------------
    def exec_create(self, cid: str, config: JSON) -> JSON:
        result: JSON = self.post(f"/containers/{q(cid)}/exec", json_body=config)
        return result

    def exec_start(self, exec_id: str, detach: bool = False, tty: bool = False) -> Hijacked | None:
        body = {"Detach": detach, "Tty": tty}
        if detach:
            self.post(f"/exec/{exec_id}/start", json_body=body)
            return None
        return self.hijack("POST", f"/exec/{exec_id}/start", None, body)

    def exec_inspect(self, exec_id: str) -> JSON:
        result: JSON = self.get(f"/exec/{exec_id}/json")
        return result

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.post(f"/exec/{exec_id}/resize", {"h": height, "w": width})

    # -- images ----------------------------------------------------------------
    def images(
        self, all: bool = False, filters: dict[str, list[str]] | None = None, digests: bool = False
    ) -> list[JSON]:
        result: list[JSON] = self.get("/images/json", {"all": all or None, "filters": _filters(filters),
                                                       "digests": digests or None})
        return result

    def inspect_image(self, ref: str) -> JSON:
        result: JSON = self.get(f"/images/{q(ref)}/json")
        return result

    def history(self, ref: str) -> list[JSON]:
        result: list[JSON] = self.get(f"/images/{q(ref)}/history")
        return result

    def pull(self, image: str, tag: str | None = None, platform: str | None = None,
             auth: JSON | None = None) -> Iterator[JSON]:
        params = {"fromImage": image, "tag": tag, "platform": platform}
        with self.stream("POST", "/images/create", params, headers=auth_header(auth)) as s:
            yield from s.json()

    def import_image(self, data: bytes | Iterable[bytes], repo: str | None = None, tag: str | None = None,
                     changes: list[str] | None = None, message: str | None = None) -> Iterator[JSON]:
        params = {"fromSrc": "-", "repo": repo, "tag": tag, "changes": changes, "message": message}
        with self.stream("POST", "/images/create", params, data=data,
                         headers={"Content-Type": "application/x-tar"}) as s:
            yield from s.json()

    def push(self, image: str, tag: str | None = None, auth: JSON | None = None,
             with_referrers: bool = False) -> Iterator[JSON]:
        hdrs = auth_header(auth) or {"X-Registry-Auth": "e30="}  # dockerd wants the header: "{}"
        params = {"tag": tag, "referrers": "1" if with_referrers else None}
        with self.stream("POST", f"/images/{q(image)}/push", params, headers=hdrs) as s:
            yield from s.json()

    def referrers(self, image: str, artifact_type: str | None = None, auth: JSON | None = None) -> JSON:
        result: JSON = self.request("GET", f"/distribution/{q(image)}/referrers", {"artifactType": artifact_type},
                                    headers=auth_header(auth) or None)
        return result

    def signatures(self, image: str, auth: JSON | None = None) -> JSON:
        result: JSON = self.request("GET", f"/distribution/{q(image)}/signatures", headers=auth_header(auth) or None)
        return result

    def add_signature(self, image: str, payload: bytes, signature: str, auth: JSON | None = None) -> JSON:
        import base64

        result: JSON = self.request("POST", f"/distribution/{q(image)}/signatures",
                                    json_body={"Payload": base64.b64encode(payload).decode(), "Signature": signature},
                                    headers=auth_header(auth) or None)
        return result

    def tag(self, ref: str, repo: str, tag: str | None = None) -> None:
        self.post(f"/images/{q(ref)}/tag", {"repo": repo, "tag": tag})

    def remove_image(self, ref: str, force: bool = False, noprune: bool = False) -> list[JSON]:
        result: list[JSON] = self.delete(f"/images/{q(ref)}", {"force": force or None,
                                                               "noprune": noprune or None})
        return result

    def prune_images(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.post("/images/prune", {"filters": _filters(filters)})
        return result

    def save(self, names: list[str]) -> Stream:
        return self.stream("GET", "/images/get", {"names": names})

    def load(self, data: bytes | Iterable[bytes], quiet: bool = False) -> Stream:
        return self.stream("POST", "/images/load", {"quiet": quiet or None}, data=data,
                           headers={"Content-Type": "application/x-tar"})

    # -- networks --------------------------------------------------------------
    def networks(self, filters: dict[str, list[str]] | None = None) -> list[JSON]:
        result: list[JSON] = self.get("/networks", {"filters": _filters(filters)})
        return result

    def create_network(self, config: JSON) -> JSON:
        result: JSON = self.post("/networks/create", json_body=config)
        return result

    def inspect_network(self, nid: str, verbose: bool = False) -> JSON:
        result: JSON = self.get(f"/networks/{q(nid)}", {"verbose": verbose or None})
        return result

    def remove_network(self, nid: str) -> None:
        self.delete(f"/networks/{q(nid)}")

    def connect_network(self, nid: str, container: str, endpoint: JSON | None = None) -> None:
        self.post(f"/networks/{q(nid)}/connect", json_body={"Container": container,
                                                            "EndpointConfig": endpoint or {}})

    def disconnect_network(self, nid: str, container: str, force: bool = False) -> None:
        self.post(f"/networks/{q(nid)}/disconnect", json_body={"Container": container, "Force": force})

    def prune_networks(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.post("/networks/prune", {"filters": _filters(filters)})
        return result

    # -- volumes ---------------------------------------------------------------
    def volumes(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.get("/volumes", {"filters": _filters(filters)})
        return result

    def create_volume(self, config: JSON) -> JSON:
        result: JSON = self.post("/volumes/create", json_body=config)
        return result

    def inspect_volume(self, name: str) -> JSON:
        result: JSON = self.get(f"/volumes/{q(name)}")
        return result

    def remove_volume(self, name: str, force: bool = False) -> None:
        self.delete(f"/volumes/{q(name)}", {"force": force or None})

    def prune_volumes(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.post("/volumes/prune", {"filters": _filters(filters)})
        return result
