"""The errors semcache raises, and their OpenAI-format bodies.

    SemcacheError
    ├── SettingsError               bad configuration: startup stops with one line
    ├── BadRequestError             a malformed request (400, 413): never sent upstream
    ├── UnauthorizedError           401: the API key may not use the proxy (SEMCACHE_CLIENT_KEYS)
    ├── ForbiddenError              403: an admin route without the admin token
    ├── OverloadedError             503: no upstream slot free in time (SEMCACHE_MAX_INFLIGHT)
    ├── StoreUnavailableError       503: an admin operation needs the store, which is down
    ├── UpstreamError               the upstream could not answer
    │   ├── UpstreamUnreachableError    502: connect failed, connection reset, protocol error
    │   └── UpstreamTimeoutError        504
    └── StoreError                  a store operation failed: the request carries on uncached

Error bodies follow the OpenAI API reference ("Error codes"):
``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``.
"""

from __future__ import annotations

import orjson


class SemcacheError(Exception):
    """Base of every error semcache raises on purpose."""


class SettingsError(SemcacheError):
    """A setting is missing or invalid; the message names the variable."""


class HTTPError(SemcacheError):
    """An error that becomes an HTTP response in OpenAI format."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or []
        if code is not None:
            self.code = code

    def body(self) -> bytes:
        return error_body(self.message, self.error_type, param=self.param, code=self.code)


class BadRequestError(HTTPError):
    status_code = 400
    error_type = "invalid_request_error"


class PayloadTooLargeError(BadRequestError):
    status_code = 413
    code = "request_too_large"


class NotFoundError(HTTPError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class UnauthorizedError(HTTPError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "unauthorized"


class ForbiddenError(HTTPError):
    status_code = 403
    error_type = "invalid_request_error"
    code = "forbidden"


class NotImplementedByProxyError(HTTPError):
    status_code = 501
    error_type = "invalid_request_error"
    code = "not_supported_by_proxy"


class OverloadedError(HTTPError):
    status_code = 503
    error_type = "server_error"
    code = "overloaded"


class StoreUnavailableError(HTTPError):
    status_code = 503
    error_type = "server_error"
    code = "store_unavailable"


class UpstreamError(HTTPError):
    status_code = 502
    error_type = "upstream_error"


class UpstreamUnreachableError(UpstreamError):
    code = "upstream_unreachable"


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class StoreError(SemcacheError):
    """A store could not be read or written (down, timeout, bad data)."""


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


MAX_UPSTREAM_ERROR_CHARS = 1000


def openai_error_from_upstream(status_code: int, body: bytes) -> bytes | None:
    """An upstream error whose body is not JSON (a proxy's HTML page, a framework's plain
    "405 method not allowed") as an OpenAI-format body, so that every error a client gets
    parses the same way; None when the body is JSON already (it is relayed as it is)."""
    try:
        orjson.loads(body)
        return None
    except orjson.JSONDecodeError:
        pass
    text = " ".join(body.decode("utf-8", "replace").split())[:MAX_UPSTREAM_ERROR_CHARS]
    message = f"the upstream answered {status_code}" + (f": {text}" if text else "")
    error_type = "invalid_request_error" if status_code < 500 else "server_error"
    return error_body(message, error_type, code=f"upstream_{status_code}")
