"""One typed settings object, built once at the edge.

Sources, highest first: command-line flags, ``SEMCACHE_*`` environment variables, an optional
TOML file (``--config`` or ``SEMCACHE_CONFIG``), then the defaults below. Every setting has one
name: ``SEMCACHE_<NAME>`` in the environment, ``<name>`` in the TOML file, ``--<name>`` on the
command line (underscores become dashes). ``config/semcache.example.toml`` documents them all.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from proxy.errors import SettingsError
from proxy.settings_checks import check_settings
from proxy.settings_sources import ENV_PREFIX, parse_variable, read_toml, refuse_unknown_variables

DEFAULT_SIMILARITY = 0.75
"""The retrieval floor the shipped verifier was trained above (all-MiniLM-L6-v2 cosine)."""
DEFAULT_JUDGE_SIMILARITY = 0.75
"""Answers' cosine (all-MiniLM-L6-v2) to call them the same: bench/audit.py measures its error."""
MiB = 1024 * 1024


def _setting(name: str, default: Any, help: str) -> Any:
    return field(default=default, metadata={"name": name, "help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = _setting("host", "127.0.0.1", "Address to listen on.")
    port: int = _setting("port", 8080, "Port to listen on.")
    upstream_url: str = _setting(
        "upstream_url",
        "http://127.0.0.1:11434/v1",
        "OpenAI-compatible base URL that requests are forwarded to (Ollama by default).",
    )
    upstream_api_key: str | None = _setting(
        "upstream_api_key", None, "Key sent upstream as a Bearer token when the client sends none."
    )
    ollama_url: str | None = _setting(
        "ollama_url",
        None,
        "Ollama's native API base for /api/* (unset: the upstream URL without /v1, if it ends so).",
    )
    upstream_timeout_seconds: float = _setting(
        "upstream_timeout", 600.0, "Seconds to wait for upstream bytes (read, write, pool)."
    )
    upstream_connect_timeout_seconds: float = _setting(
        "upstream_connect_timeout", 10.0, "Seconds to wait for a connection to the upstream."
    )
    upstream_max_connections: int = _setting(
        "upstream_max_connections", 512, "Size of the pooled connections to the upstream."
    )
    redis_url: str | None = _setting(
        "redis_url",
        None,
        "Redis URL for the shared store (redis://, rediss://, unix:// or "
        "redis+sentinel://host:port,.../service); unset = in-process memory store.",
    )
    redis_cluster: bool = _setting(
        "redis_cluster",
        False,
        "The Redis URL is one node of a Redis Cluster: commands go to their slot's master.",
    )
    redis_prefix: str = _setting("redis_prefix", "semcache:", "Prefix of every Redis key.")
    redis_timeout_seconds: float = _setting(
        "redis_timeout", 0.5, "Seconds a Redis command may take before it counts as a miss."
    )
    ttl_seconds: int = _setting("ttl", 7 * 24 * 3600, "Default lifetime of a cache entry.")
    memory_max_entries: int = _setting(
        "memory_max_entries", 100_000, "Memory store: most entries kept (LRU eviction)."
    )
    memory_max_bytes: int = _setting(
        "memory_max_bytes", 512 * MiB, "Memory store: most bytes of entries kept (LRU eviction)."
    )
    max_body_bytes: int = _setting(
        "max_body_bytes", 16 * MiB, "Largest request body accepted on cached routes (413 above)."
    )
    max_temperature: float | None = _setting(
        "max_temperature", None, "Skip the cache for requests with a higher temperature."
    )
    embed_model: str | None = _setting(
        "embed_model",
        None,
        "Embedding model for semantic lookup: an upstream model name (nomic-embed-text, "
        "text-embedding-3-small), local:<name or path>, or hash:<dims>; unset = exact only.",
    )
    embed_url: str | None = _setting(
        "embed_url", None, "OpenAI-compatible base URL for embeddings; unset = the upstream URL."
    )
    embed_api_key: str | None = _setting(
        "embed_api_key",
        None,
        "Key for the embeddings API; unset = the upstream key, else the client's key.",
    )
    embed_best_effort: bool = _setting(
        "embed_best_effort",
        False,
        "When a local embedder cannot load, serve exact-only with a warning instead of "
        "refusing to start.",
    )
    embed_timeout_seconds: float = _setting(
        "embed_timeout", 5.0, "Seconds an embedding may take before the request goes exact-only."
    )
    similarity: float = _setting(
        "similarity",
        DEFAULT_SIMILARITY,
        "Retrieval floor: least cosine a neighbour needs to be judged by the verifier at all.",
    )
    max_wrong_hit_rate: float = _setting(
        "max_wrong_hit_rate",
        0.005,
        "Semantic hits: the wrong-hit rate to stay under; the verifier's calibration table maps "
        "it to its thresholds.",
    )
    calibration: str | None = _setting(
        "calibration",
        None,
        "Calibration file of the embedder's cosine thresholds (bench/calibrate.py --write), "
        "used when the learned verifier cannot run (no local extra).",
    )
    semantic_mode: str = _setting(
        "semantic_mode",
        "on",
        "on: serve semantic hits; shadow: find and judge them, never serve them (each "
        "would-be hit is compared with the fresh answer); off: exact caching only.",
    )
    audit_rate: float = _setting(
        "audit_rate",
        0.01,
        "Share of semantic hits also asked upstream in the background and compared (and of "
        "exact hits at temperature 0); 0 = no audits.",
    )
    audit_concurrency: int = _setting(
        "audit_concurrency", 2, "Comparisons and audit requests running at once."
    )
    adaptive: bool = _setting(
        "adaptive",
        True,
        "Move each model's semantic threshold from audited evidence so the wrong-hit rate's "
        "upper 95 % bound stays under SEMCACHE_MAX_WRONG_HIT_RATE.",
    )
    judge_similarity: float = _setting(
        "judge_similarity",
        DEFAULT_JUDGE_SIMILARITY,
        "Audits: least cosine between a cached and a fresh answer's embeddings to call them "
        "the same (after the checks on tool calls, numbers, yes/no and code).",
    )
    semantic_max_age_seconds: int | None = _setting(
        "semantic_max_age", None, "Semantic hits only for entries younger than this; unset = any."
    )
    semantic_max_chars: int = _setting(
        "semantic_max_chars", 1000, "Longer prompts are matched exactly only."
    )
    max_entry_bytes: int = _setting(
        "max_entry_bytes",
        4 * MiB,
        "Larger answers are served but not stored (relayed as they arrive, never held whole).",
    )
    max_inflight: int | None = _setting(
        "max_inflight", None, "Most concurrent upstream requests; more wait, then get a 503."
    )
    queue_timeout_seconds: float = _setting(
        "queue_timeout", 10.0, "Seconds a request waits for an upstream slot before its 503."
    )
    coalesce_timeout_seconds: float = _setting(
        "coalesce_timeout",
        120.0,
        "Seconds an identical concurrent request waits for the one in flight before its own.",
    )
    secret: str | None = _setting(
        "secret",
        None,
        "Key of the HMAC that turns API keys into namespaces; unset = generated (and kept in "
        "Redis, shared by replicas).",
    )
    shared_cache: bool = _setting(
        "shared_cache", False, "One namespace for every API key: tenants share entries."
    )
    identity_headers: str | None = _setting(
        "identity_headers",
        None,
        "Comma-separated request headers that also carry a caller's credential or account "
        "(a gateway's own key header): requests differing in any never share entries.",
    )
    client_keys: str | None = _setting(
        "client_keys", None, "Comma-separated API keys allowed to use the proxy; unset = any."
    )
    admin_token: str | None = _setting(
        "admin_token",
        None,
        "Bearer token for the admin routes, /cache/stats and /metrics; unset = admin routes off.",
    )
    cors_origins: str | None = _setting(
        "cors_origins",
        None,
        "Comma-separated origins browsers may call from (CORS), or *; unset = no CORS.",
    )
    address_file: str | None = _setting(
        "address_file",
        None,
        "File `serve` writes its URL to, for `semcache probe` (health checks).",
    )
    log_level: str = _setting(
        "log_level", "info", "debug (one line per request), info, warning or error."
    )

    def __post_init__(self) -> None:
        check_settings(self)
        object.__setattr__(self, "upstream_url", self.upstream_url.rstrip("/"))
        if self.ollama_url is not None:
            object.__setattr__(self, "ollama_url", self.ollama_url.rstrip("/"))

    @classmethod
    def load(
        cls,
        *,
        flags: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
        config_path: str | Path | None = None,
    ) -> Settings:
        """Merge flags over ``SEMCACHE_*`` variables over the TOML file over the defaults.

        ``flags`` maps setting names (``upstream_url``) to typed values; ``None`` means unset.
        """
        environ = {} if environ is None else environ
        refuse_unknown_variables(
            environ, dataclasses.fields(Settings), ENV_PREFIX, also=(ENV_PREFIX + "CONFIG",)
        )
        if config_path is None:
            config_path = environ.get(ENV_PREFIX + "CONFIG") or None
        values: dict[str, object] = {}
        if config_path is not None:
            values.update(read_toml(Path(config_path), _field))
        for f in dataclasses.fields(cls):
            var = ENV_PREFIX + f.metadata["name"].upper()
            if var in environ:
                values[f.name] = parse_variable(f, environ[var], var)
        for name, value in (flags or {}).items():
            if value is not None:
                values[_field(name).name] = value
        return cls(**values)  # type: ignore[arg-type]

    def cors_origin_list(self) -> list[str]:
        if self.cors_origins is None:
            return []
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def identity_header_set(self) -> frozenset[bytes]:
        """Lower-case names of :attr:`identity_headers`."""
        if self.identity_headers is None:
            return frozenset()
        names = self.identity_headers.split(",")
        return frozenset(n.strip().lower().encode("latin-1") for n in names if n.strip())

    def client_key_set(self) -> frozenset[str]:
        if self.client_keys is None:
            return frozenset()
        return frozenset(k.strip() for k in self.client_keys.split(",") if k.strip())

    def ollama_base(self) -> str | None:
        """Where ``/api/*`` goes: ``SEMCACHE_OLLAMA_URL``, else the upstream URL without its
        ``/v1`` (Ollama serves both APIs), else nowhere (404)."""
        if self.ollama_url is not None:
            return self.ollama_url
        base, _, query = self.upstream_url.partition("?")
        return base.removesuffix("/v1") if base.endswith("/v1") and not query else None

    def public(self) -> dict[str, object]:
        """The settings with secrets masked, for logs and ``/cache/stats``."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRETS and value is not None:
                value = "***"
            elif f.name in _URLS and value is not None:
                value = mask_url(value)
            out[f.metadata["name"]] = value
        return out


_SECRETS = frozenset({"upstream_api_key", "embed_api_key", "secret", "client_keys", "admin_token"})


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Settings)


def _field(name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(Settings):
        if name in (f.name, f.metadata["name"]):
            return f
    raise SettingsError(f"unknown setting {name!r}")


_URLS = frozenset({"redis_url", "upstream_url", "ollama_url", "embed_url"})
_SHOWN_QUERY = frozenset({"api-version"})
"""Query parameters shown as they are; any other's value may be a key (``?key=``, a SAS
``sig``)."""


def mask_url(url: str) -> str:
    """``url`` for a log line or a stats page: its password and query values (but
    ``api-version``) as ``***``; a user name without a password (``https://sk-...@host``, a key
    sent as Basic auth) is the credential itself and is masked too."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = "&".join(
        item if name in _SHOWN_QUERY or not sep else f"{name}=***"
        for item in parts.query.split("&")
        if item
        for name, sep, _ in [item.partition("=")]
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_URL_IN_TEXT = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def mask_urls(text: str) -> str:
    """``text`` (an error message a library wrote) with every URL in it masked as by
    :func:`mask_url`: aiohttp names the whole request URL, ``?key=`` included."""
    return _URL_IN_TEXT.sub(lambda m: _masked_or_hidden(m.group()), text)


def _masked_or_hidden(url: str) -> str:
    try:
        return mask_url(url)
    except ValueError:  # not a URL urllib can split (a bad port...): hide all but the scheme
        return url.split("://", 1)[0] + "://***"
