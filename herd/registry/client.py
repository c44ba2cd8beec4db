"""HTTP to one repository of an OCI distribution (v2) registry, as Ollama's client speaks it.

    GET/PUT  /v2/<namespace>/<model>/manifests/<tag>
    GET/HEAD /v2/<namespace>/<model>/blobs/sha256:<hex>
    POST     /v2/<namespace>/<model>/blobs/uploads/   then PATCH/PUT ...?digest=

`https` unless `insecure` (then always plain `http`, as Ollama does). A 401 carrying
`WWW-Authenticate: Bearer realm=...` gets an anonymous token from the realm and the request
is sent once more with it; the token is only ever sent to the registry's own origin (httpx
drops `Authorization` on a redirect to another host, e.g. a blob store).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urljoin

import httpx

from herd import __version__
from herd.registry.errors import InsecureProtocol, RegistryError
from herd.store.manifest import MEDIA_MANIFEST
from herd.store.names import ModelName

MB = 1000 * 1000
_MAX_ANSWER = 1 << 20  # manifests are a few hundred bytes
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How a transfer is cut up and retried (the defaults suit a LAN registry)."""

    parts: int = 16  # a blob is cut into this many ranged parts...
    min_part: int = 16 * MB  # ...of at least this size
    max_part: int = 1000 * MB
    connections: int = 8  # parallel ranged GETs over all the blobs of one pull
    blobs_at_once: int = 4  # blobs of one push uploaded at once
    retries: int = 5  # failed attempts in a row (without progress) before giving up
    backoff: float = 0.25  # seconds before the first retry, doubled each time, capped at 8 s
    stall_timeout: float = 30.0  # no byte for this long: the attempt failed
    checkpoint: int = 8 * MB  # download progress is made durable every this many bytes a part

    def part_size(self, total: int) -> int:
        return max(self.min_part, min(self.max_part, total // max(1, self.parts)))


@dataclasses.dataclass(frozen=True)
class Answer:
    url: str
    headers: httpx.Headers
    content: bytes

    def location(self) -> str:
        """Where an upload goes on (the spec allows a relative Location)."""
        location: str = self.headers.get("docker-upload-location") or self.headers.get("location") or ""
        if not location:
            raise RegistryError(f"{self.url}: the registry gave no Location for the upload")
        return urljoin(self.url, location)


def _content(factory: Callable[[], Any] | None) -> Any:
    return None if factory is None else factory()


class RegistryClient:
    """One repository (`host/namespace/model`); use as an async context manager."""

    def __init__(self, name: ModelName, *, insecure: bool = False, tuning: Tuning | None = None) -> None:
        if name.scheme == "http" and not insecure:
            raise InsecureProtocol()
        self.name = name
        self.tuning = tuning or Tuning()
        self.insecure = insecure
        scheme = "http" if insecure else name.scheme
        self.base = f"{scheme}://{name.host}/v2/{name.namespace}/{name.model}/"
        self._token: str | None = None
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, read=self.tuning.stall_timeout), follow_redirects=True,
            headers={"User-Agent": f"herd/{__version__}"},
            limits=httpx.Limits(max_connections=self.tuning.connections + 4),
        )

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    def url(self, path: str) -> str:
        return self.base + path

    # -- requests ----------------------------------------------------------------------------

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if self._token:
            out["Authorization"] = f"Bearer {self._token}"
        return out

    async def _send(self, method: str, url: str, headers: dict[str, str] | None,
                    content: Callable[[], Any] | None) -> httpx.Response:
        """The response (streaming, status < 400), after at most one token round; else an error."""
        for attempt in range(2):
            request = self._http.build_request(method, url, headers=self._headers(headers), content=_content(content))
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise RegistryError(f'{method} "{url}": timed out ({type(exc).__name__})', retryable=True) from exc
            except httpx.TransportError as exc:
                raise RegistryError(f'{method} "{url}": {exc or type(exc).__name__}', retryable=True) from exc
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code == 401 and attempt == 0 and challenge.lower().startswith("bearer"):
                await response.aclose()
                self._token = await self._fetch_token(challenge)
                continue
            if response.status_code < 400:
                return response
            body = (await response.aread())[:1000].decode(errors="replace").strip()
            await response.aclose()
            raise _status_error(response.status_code, body)
        raise RegistryError("unauthorized: access denied", status=401)

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                     content: Callable[[], Any] | None = None) -> AsyncIterator[httpx.Response]:
        response = await self._send(method, url, headers, content)
        try:
            yield response
        finally:
            await response.aclose()

    async def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                      content: Callable[[], Any] | None = None) -> Answer:
        """A whole answer; bodies here are small (manifests, upload answers), so they are capped."""
        async with self.stream(method, url, headers=headers, content=content) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_ANSWER:
                    raise RegistryError(f"{method} {url}: answer larger than {_MAX_ANSWER} bytes")
            return Answer(str(response.request.url), response.headers, bytes(body))

    async def _fetch_token(self, challenge: str) -> str:
        """The anonymous Bearer token dance of the distribution spec (no credentials are sent)."""
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm", "")
        if not realm.startswith("https://") and not (self.insecure and realm.startswith("http://")):
            raise RegistryError(f"unauthorized: auth realm {realm!r} is not an https URL", status=401)
        query = {key: params[key] for key in ("service", "scope") if params.get(key)}
        try:
            response = await self._http.get(realm, params=query)
        except httpx.TransportError as exc:
            raise RegistryError(f"unauthorized: token request to {realm}: {exc}", status=401) from exc
        if response.status_code >= 400:
            raise RegistryError(f"unauthorized: token request to {realm}: {response.status_code}", status=401)
        try:
            data = response.json()
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"unauthorized: no token in the answer of {realm}", status=401)
        return token

    # -- the registry's verbs ----------------------------------------------------------------

    async def get_manifest(self, tag: str) -> bytes:
        answer = await self.request("GET", self.url(f"manifests/{tag}"), headers={"Accept": MEDIA_MANIFEST})
        return answer.content

    async def put_manifest(self, tag: str, data: bytes) -> None:
        await self.request("PUT", self.url(f"manifests/{tag}"), headers={"Content-Type": MEDIA_MANIFEST},
                           content=lambda: data)

    async def has_blob(self, digest: str) -> bool:
        try:
            await self.request("HEAD", self.url(f"blobs/{digest}"))
        except RegistryError as exc:
            if exc.status == 404:
                return False
            raise
        return True



def _status_error(status: int, body: str) -> RegistryError:
    # Ollama turns a 404 into os.ErrNotExist, whose text is "file does not exist".
    if status == 404:
        return RegistryError("file does not exist", status=404)
    if status == 401:
        return RegistryError("unauthorized: access denied", status=401)
    return RegistryError(f"{status}: {body}", status=status, retryable=status >= 500 or status == 429)
