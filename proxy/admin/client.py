"""The admin API over HTTP, for the CLI: every failure is an :class:`AdminError` whose message is
one line a person can act on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from tqdm import tqdm

from proxy.errors import SemcacheError

UPLOAD_CHUNK = 256 * 1024


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

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, content=orjson.dumps(body))

    def delete(self, path: str) -> Any:
        return self._call("DELETE", path)

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
    ) -> Any:
        headers = None if content is None else {"content-type": "application/json"}
        try:
            response = self._client.request(
                method,
                path,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(None) if unlimited else self._timeout,
            )
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc
        if response.status_code in (401, 403):
            raise AdminError(
                f"{method} {path}: {_message(response)} "
                "(give the admin token with --token or SEMCACHE_ADMIN_TOKEN)"
            )
        if response.status_code >= 400:
            raise AdminError(
                f"{method} {path} answered {response.status_code}: {_message(response)}"
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise AdminError(
                f"{method} {path}: the answer is not JSON (is this semcache?)"
            ) from exc


def _message(response: httpx.Response) -> str:
    try:
        error = orjson.loads(response.content)["error"]
        return str(error["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
