"""The admin API over HTTP, for the CLI: every failure is an :class:`AdminError` whose message is
one line a person can act on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from tqdm import tqdm

from proxy.errors import SemcacheError

UPLOAD_CHUNK = 256 * 1024
Params = dict[str, str] | None
Headers = dict[str, str] | None


class AdminError(SemcacheError):
    """The proxy could not be reached, refused, or answered an error."""


class AdminClient:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        self.base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout)
        # trust_env off: an HTTP proxy from the environment must not see the admin token.
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def get(self, path: str, *, params: Params = None, headers: Headers = None) -> Any:
        return self._call("GET", path, params=params, extra_headers=headers)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, content=orjson.dumps(body))

    def delete(self, path: str, *, params: Params = None, headers: Headers = None) -> Any:
        return self._call("DELETE", path, params=params, extra_headers=headers)

    def download(
        self, path: str, dest: IO[bytes], *, params: Params, headers: Headers, progress: bool
    ) -> int:
        """Stream a JSON Lines answer into ``dest``; the number of lines, with a progress bar."""
        lines = 0
        try:
            with (
                self._client.stream(
                    "GET", path, params=params, headers=headers, timeout=httpx.Timeout(None)
                ) as response,
                tqdm(unit=" entries", disable=not progress) as bar,
            ):
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response, "GET", path)
                for chunk in response.iter_bytes():
                    dest.write(chunk)
                    n = chunk.count(b"\n")
                    lines += n
                    bar.update(n)
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc
        return lines

    def upload(self, path: str, source: Path, *, progress: bool) -> Any:
        """POST a file as it is read (never whole in memory), with a progress bar by bytes."""
        total = source.stat().st_size

        def chunks() -> Iterator[bytes]:
            with (
                source.open("rb") as f,
                tqdm(total=total, unit="B", unit_scale=True, disable=not progress) as bar,
            ):
                while chunk := f.read(UPLOAD_CHUNK):
                    bar.update(len(chunk))
                    yield chunk

        return self._call("POST", path, content=chunks(), unlimited=True)

    def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | Iterator[bytes] | None = None,
        unlimited: bool = False,
        params: Params = None,
        extra_headers: Headers = None,
    ) -> Any:
        headers = dict(extra_headers or {})
        if content is not None:
            headers["content-type"] = "application/json"
        try:
            response = self._client.request(
                method,
                path,
                content=content,
                params=params,
                headers=headers,
                timeout=httpx.Timeout(None) if unlimited else self._timeout,
            )
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc
        self._raise_for(response, method, path)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise AdminError(f"{method} {path}: the answer is not JSON (is it semcache?)") from exc

    def _raise_for(self, response: httpx.Response, method: str, path: str) -> None:
        if response.status_code == 401:
            raise AdminError(
                f"{method} {path}: {_message(response)} "
                "(give the admin token with --token or SEMCACHE_ADMIN_TOKEN)"
            )
        if response.status_code == 403:  # the server has no token: no client flag helps
            raise AdminError(f"{method} {path}: {_message(response)}")
        if response.status_code >= 400:
            raise AdminError(
                f"{method} {path} answered {response.status_code}: {_message(response)}"
            )


def _message(response: httpx.Response) -> str:
    try:
        error = orjson.loads(response.content)["error"]
        return str(error["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
