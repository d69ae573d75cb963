"""Registry credentials and the challenge/response flow (Basic, and Bearer tokens as on Docker Hub)."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from pathlib import Path

import httpx

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # OAuth refresh token from `docker login` with a token server
    registry_token: str = ""  # a bearer token to use as-is

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token or self.registry_token)


def decode_registry_auth(header: str | None) -> Credentials:
    """X-Registry-Auth: base64url(JSON {username, password, serveraddress, identitytoken, registrytoken})."""
    if not header:
        return Credentials()
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        obj = json.loads(raw)
    except (ValueError, binascii.Error):
        return Credentials()  # docker ignores a malformed header the same way
    if not isinstance(obj, dict):
        return Credentials()
    return Credentials(obj.get("username") or "", obj.get("password") or "",
                       obj.get("identitytoken") or "", obj.get("registrytoken") or "")


def config_key(domain: str) -> str:
    return DOCKER_HUB_AUTH_KEY if domain == "docker.io" else domain


def load_docker_config(domain: str, path: str | os.PathLike[str] | None = None) -> Credentials:
    """Credentials for a registry from ~/.docker/config.json (`auths` entries; no credential helpers)."""
    if path is None:
        base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
        path = os.path.join(base, "config.json")
    try:
        auths = json.loads(Path(path).read_text()).get("auths") or {}
    except (OSError, ValueError):
        return Credentials()
    want = config_key(domain)
    for key, entry in auths.items():
        host = re.sub(r"^https?://", "", key).split("/", 1)[0]
        if key == want or (domain != "docker.io" and host == domain):
            if entry.get("identitytoken"):
                return Credentials(identity_token=entry["identitytoken"])
            if entry.get("auth"):
                try:
                    user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, binascii.Error, UnicodeDecodeError):
                    continue
                return Credentials(user, pw)
            if entry.get("username"):
                return Credentials(entry["username"], entry.get("password", ""))
    return Credentials()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth",service="registry",scope="repository:x:pull"` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="?([^",]*)"?', rest)}
    return scheme.lower(), params


class RegistryAuth(httpx.Auth):
    """Answers 401 challenges: Basic with the credentials, or fetches a Bearer token for `scope`.

    Tokens are cached on the instance, so one RegistryAuth per (registry, repository, access) lets
    later requests go out authorised on the first try (which matters for non-replayable bodies).
    """

    def __init__(self, creds: Credentials, scope: str) -> None:
        self.creds = creds
        self.scope = scope
        self._header: str | None = None
        self._token_requests: set[int] = set()
        if creds.registry_token:
            self._header = f"Bearer {creds.registry_token}"

    def _basic(self) -> str:
        raw = f"{self.creds.username}:{self.creds.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._header:
            request.headers["authorization"] = self._header
        response = yield request
        if response.status_code != 401 or "www-authenticate" not in response.headers:
            return
        scheme, params = parse_challenge(response.headers["www-authenticate"])
        if scheme == "basic":
            if not self.creds.username:
                return
            self._header = self._basic()
        elif scheme == "bearer" and params.get("realm"):
            query = {"service": params.get("service", "")}
            scope = params.get("scope") or self.scope
            if scope:
                query["scope"] = scope
            if self.creds.identity_token:  # OAuth2 refresh-token grant, as docker does
                token_req = httpx.Request("POST", params["realm"], data={
                    "grant_type": "refresh_token", "refresh_token": self.creds.identity_token,
                    "service": query["service"], "scope": query.get("scope", ""), "client_id": "dockyard"})
            else:
                token_req = httpx.Request("GET", params["realm"], params=query)
                if self.creds.username:
                    token_req.headers["authorization"] = self._basic()
            self._token_requests.add(id(token_req))
            token_resp = yield token_req
            self._token_requests.discard(id(token_req))
            if token_resp.status_code != 200:
                return
            body = token_resp.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                return
            self._header = f"Bearer {token}"
        else:
            return
        request.headers["authorization"] = self._header
        yield request

    # Only token responses and 401s are read here: blob responses must stay streamable.
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        req = next(flow)
        while True:
            resp = yield req
            if id(req) in self._token_requests or resp.status_code == 401:
                resp.read()
            try:
                req = flow.send(resp)
            except StopIteration:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        req = next(flow)
        while True:
            resp = yield req
            if id(req) in self._token_requests or resp.status_code == 401:
                await resp.aread()
            try:
                req = flow.send(resp)
            except StopIteration:
                return
