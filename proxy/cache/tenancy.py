"""Who is asking: the caller's API key, its namespace, and whether it may use the proxy.

A namespace is an HMAC-SHA256 of the API key under a server secret, so namespaces cannot be
derived from a key without the secret, and the key itself is never stored or logged. Without
``SEMCACHE_SECRET`` the secret is generated; on Redis it is kept there (``SET NX``) so that
every replica and restart derives the same namespaces.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from functools import lru_cache

import anyio

from proxy.cache.keys import ACCOUNT_HEADERS, IDENTITY_HEADERS, bearer, identity_from, scope_of
from proxy.errors import UnauthorizedError
from proxy.stores import Cache

log = logging.getLogger("semcache.tenancy")

SHARED_NAMESPACE = "shared"
SECRET_SYNC_SECONDS = 2.0


class Tenancy:
    def __init__(
        self,
        *,
        secret: str | None,
        shared: bool,
        allowed_keys: frozenset[str],
        identity_headers: frozenset[bytes] = frozenset(),
    ) -> None:
        self._secret = None if secret is None else secret.encode()
        self._identity_headers = IDENTITY_HEADERS | identity_headers
        self._shared = shared
        self._allowed = frozenset(_digest(k) for k in allowed_keys)
        self._generated = False

    async def start(self, cache: Cache) -> None:
        if self._secret is not None:
            return
        self._generated = True
        candidate = secrets.token_bytes(32)
        kept = await cache.shared_secret(candidate)
        if kept is None:
            log.warning(
                "could not read the namespace secret from the store; using a process-local one "
                "until it is reachable (set SEMCACHE_SECRET for namespaces that never change)"
            )
            kept = candidate
        self._secret = kept

    async def keep_in_sync(self, cache: Cache) -> None:
        """With a generated secret, re-read the stored one now and then: if the store lost it
        (a Redis restart without persistence), the first replica to notice stores its own and
        the others adopt it, so every replica converges on one secret within seconds."""
        if not self._generated:
            return
        while True:
            await anyio.sleep(SECRET_SYNC_SECONDS)
            assert self._secret is not None
            kept = await cache.shared_secret(self._secret)
            if kept is not None and kept != self._secret:
                log.warning("the stored namespace secret changed; adopting it")
                self._secret = kept

    def identity(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """What a request's namespace derives from (:func:`proxy.cache.keys.identity_from`),
        with the operator's own identity headers (``SEMCACHE_IDENTITY_HEADERS``)."""
        return identity_from(headers, self._identity_headers)

    def credentials(self, headers: Iterable[tuple[bytes, bytes]]) -> frozenset[str]:
        """The namespace of each credential a request carries on its own (each key header's
        value, the account headers aside): whom a report is charged to. A namespace is derived
        from all of them together, so a junk header beside a real key makes a new namespace;
        the key in it is still the same caller's."""
        accounts = {name.encode() for name in ACCOUNT_HEADERS}
        found = set()
        for name, value in headers:
            name = name.lower()
            if name in self._identity_headers and name not in accounts:
                text = value.decode("latin-1")
                key = bearer(text).strip() if name == b"authorization" else text.strip()
                if key:
                    found.add(self.namespace(key))
        return frozenset(found)

    def request_namespace(self, headers: list[tuple[bytes, bytes]], query: bytes) -> str:
        """Where a request's entries live: its caller's namespace (:meth:`identity`), scoped by
        its query string, routing headers and ``X-Cache-Namespace``
        (:func:`proxy.cache.keys.scope_of`): ``<namespace>~<HMAC of the scope>``, keyed with the
        secret as the namespace is, so a query's ``?key=`` is never stored as a bare hash."""
        namespace = self.namespace(self.identity(headers))
        scope = scope_of(query, headers)
        if scope is None:
            return namespace
        assert self._secret is not None, "Tenancy.start() runs in the app's lifespan"
        return f"{namespace}~{_scope_hash(self._secret, scope)}"

    def namespace(self, api_key: str | None) -> str:
        if self._shared or not api_key:
            return SHARED_NAMESPACE
        assert self._secret is not None, "Tenancy.start() runs in the app's lifespan"
        return _keyed_hash(self._secret, api_key)

    def authorize(self, api_key: str | None) -> None:
        """Raise when client keys are configured and this request's key is not one of them."""
        if not self._allowed:
            return
        if api_key is None:
            raise UnauthorizedError("an API key is required (Authorization: Bearer <key>)")
        digest = _digest(api_key)
        if not any(hmac.compare_digest(digest, allowed) for allowed in self._allowed):
            raise UnauthorizedError("this API key may not use the proxy")


@lru_cache(maxsize=4096)
def _keyed_hash(secret: bytes, api_key: str) -> str:
    """Memoised: a handful of keys make most requests, and the HMAC is per request."""
    return hmac.new(secret, api_key.encode(), hashlib.sha256).hexdigest()[:32]


@lru_cache(maxsize=4096)
def _scope_hash(secret: bytes, scope: bytes) -> str:
    """Memoised as :func:`_keyed_hash` (an Azure ``?api-version=`` scopes every request); the
    ``scope`` prefix keeps it apart from any key's."""
    return hmac.new(secret, b"scope\n" + scope, hashlib.sha256).hexdigest()[:16]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
