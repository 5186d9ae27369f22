"""What a transport error means to the client: the one place where httpx's and aiohttp's
errors become the UpstreamError tree (502, or 504 when the upstream was reached and did not
answer in time), each counted and its message's URLs masked.
"""

from __future__ import annotations

import aiohttp
import httpx

from proxy.errors import UpstreamError, UpstreamTimeoutError, UpstreamUnreachableError
from proxy.metrics import Metrics
from proxy.settings import mask_urls


class ErrorMap:
    """A context manager object rather than a @contextmanager generator: it is entered two or
    three times per request, and a generator costs several times more each time."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, httpx.HTTPError | aiohttp.ClientError):
            raise self.failed(*_classify(exc), exc) from exc

    def failed(self, kind: type[UpstreamError], label: str, exc: Exception) -> UpstreamError:
        self._metrics.upstream_errors[label] += 1
        # A library's message may name the request URL, with a key in its query.
        detail = mask_urls(str(exc)) or type(exc).__name__
        return kind(f"upstream {label}: {detail}")


def _classify(exc: httpx.HTTPError | aiohttp.ClientError) -> tuple[type[UpstreamError], str]:
    """What a transport error means for the client: 504 when the upstream was reached and did
    not answer in time, else 502. The transport raises httpx's errors from aiohttp's, whose
    cause decides (a dropped connection is a ``ReadError`` whenever it happens); the few aiohttp
    errors httpx has no name for (a malformed response) stay aiohttp's own."""
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    if isinstance(cause, aiohttp.ConnectionTimeoutError | httpx.ConnectTimeout):
        return UpstreamUnreachableError, "connect timeout"
    if isinstance(cause, aiohttp.ServerTimeoutError | httpx.TimeoutException):
        return UpstreamTimeoutError, "timeout"
    return UpstreamUnreachableError, "unreachable"
