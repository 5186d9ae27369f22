"""Every setting's rule: the values :class:`~proxy.settings.Settings` refuses at start, each
refusal naming its ``SEMCACHE_*`` variable."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from proxy.errors import SettingsError
from proxy.redis_urls import check_url
from proxy.settings_sources import ENV_PREFIX

if TYPE_CHECKING:
    from proxy.settings import Settings

MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
"""The longest lifetime an entry may be given: ``SEMCACHE_TTL``, ``X-Cache-TTL``, an import's
``ttl_seconds``."""


def check_settings(settings: Settings) -> None:
    """Raise :class:`~proxy.errors.SettingsError` for the first setting out of bounds."""
    _check(settings.host != "", "host", "must not be empty")
    _check(0 < settings.port < 65536, "port", "must be between 1 and 65535")
    _check_http_url(settings.upstream_url, "upstream_url")
    if settings.ollama_url is not None:
        _check_http_url(settings.ollama_url, "ollama_url")
    if settings.redis_url is not None:
        scheme = _split(settings.redis_url, "redis_url").scheme
        _check(
            scheme in ("redis", "rediss", "unix", "redis+sentinel"),
            "redis_url",
            "must start with redis://, rediss://, unix:// or redis+sentinel://",
        )
        _check(
            not settings.redis_cluster or scheme in ("redis", "rediss"),
            "redis_cluster",
            "needs a redis:// or rediss:// URL of one cluster node",
        )
        # Read as the store will (its port, options, sentinels, database): a typo is one
        # line now, not a traceback when the store is built.
        check_url(settings.redis_url, cluster=settings.redis_cluster)
    # Not "unset means the default": an empty variable (a compose file's unset
    # ${PREFIX}) would make every key of the database this cache's, and a flush unlink them.
    _check(settings.redis_prefix.strip() != "", "redis_prefix", "must not be empty")
    for name in (
        "upstream_timeout_seconds",
        "upstream_connect_timeout_seconds",
        "redis_timeout_seconds",
    ):
        value = getattr(settings, name)
        _check(
            math.isfinite(value) and value > 0, _name(settings, name), "must be a positive number"
        )
    _check(
        settings.ttl_seconds <= MAX_TTL_SECONDS,
        "ttl",
        f"must be between 1 and {MAX_TTL_SECONDS} (10 years)",
    )
    for name in (
        "upstream_max_connections",
        "ttl_seconds",
        "memory_max_entries",
        "memory_max_bytes",
        "max_body_bytes",
    ):
        _check(getattr(settings, name) > 0, _name(settings, name), "must be a positive integer")
    if settings.embed_url is not None:
        _check_http_url(settings.embed_url, "embed_url")
    if settings.embed_model is not None:
        kind, _, rest = settings.embed_model.partition(":")
        _check(settings.embed_model.strip() != "", "embed_model", "must not be empty")
        _check(kind != "local" or rest != "", "embed_model", "local: needs a model name or path")
        _check(
            kind != "hash" or (rest.isdigit() and 0 < int(rest) <= 4096),
            "embed_model",
            "hash: needs a number of dimensions from 1 to 4096",
        )
    _check(0.0 < settings.similarity <= 1.0, "similarity", "must be in (0, 1]")
    _check(0.0 < settings.max_wrong_hit_rate < 1.0, "max_wrong_hit_rate", "must be in (0, 1)")
    _check(
        math.isfinite(settings.embed_timeout_seconds) and settings.embed_timeout_seconds > 0,
        "embed_timeout",
        "must be a positive number",
    )
    _check(settings.semantic_max_chars > 0, "semantic_max_chars", "must be a positive integer")
    _check(settings.max_entry_bytes > 0, "max_entry_bytes", "must be a positive integer")
    if settings.max_inflight is not None:
        _check(settings.max_inflight > 0, "max_inflight", "must be a positive integer")
    for name in ("queue_timeout_seconds", "coalesce_timeout_seconds"):
        value = getattr(settings, name)
        _check(math.isfinite(value) and value >= 0, _name(settings, name), "must be a number >= 0")
    if settings.secret is not None:
        _check(len(settings.secret) >= 16, "secret", "must be at least 16 characters")
    if settings.client_keys is not None:
        _check(bool(settings.client_key_set()), "client_keys", "must list at least one key")
    if settings.admin_token is not None:
        # As for every optional setting, an empty variable means unset; an empty flag or
        # file value (``--admin-token "$TOKEN"`` with TOKEN unset) is refused: the admin
        # API would open to a bare ``Authorization: Bearer``.
        _check(settings.admin_token.strip() != "", "admin_token", "must not be empty")
    if settings.cors_origins is not None:
        origins = settings.cors_origin_list()
        _check(bool(origins), "cors_origins", "must list at least one origin, or *")
        _check(
            all(o == "*" or urlsplit(o).scheme in ("http", "https") for o in origins),
            "cors_origins",
            "must be origins such as https://app.example.com, or *",
        )
    _check(
        settings.semantic_mode in ("on", "shadow", "off"),
        "semantic_mode",
        "must be one of on, shadow, off",
    )
    _check(0.0 <= settings.audit_rate <= 1.0, "audit_rate", "must be between 0 and 1")
    _check(settings.audit_concurrency > 0, "audit_concurrency", "must be a positive integer")
    _check(0.0 < settings.judge_similarity <= 1.0, "judge_similarity", "must be in (0, 1]")
    if settings.semantic_max_age_seconds is not None:
        _check(settings.semantic_max_age_seconds > 0, "semantic_max_age", "must be positive")
    if settings.max_temperature is not None:
        _check(settings.max_temperature >= 0, "max_temperature", "must be >= 0")
    _check(
        settings.log_level in ("debug", "info", "warning", "error"),
        "log_level",
        "must be one of debug, info, warning, error",
    )


def _name(settings: Settings, attr: str) -> str:
    return str(settings.__dataclass_fields__[attr].metadata["name"])


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()} {problem}")


def _split(url: str, name: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError:  # an unclosed [IPv6 address
        raise SettingsError(f"{ENV_PREFIX}{name.upper()} is not a valid URL") from None


def _check_http_url(url: str, name: str) -> None:
    """An http(s) URL with a host and, if any, a port from 1 to 65535: urllib reads the port
    only when asked, and a bad one (``:99999``, ``:8O80``) failed every request."""
    parts = _split(url, name)
    _check(
        parts.scheme in ("http", "https") and bool(parts.netloc),
        name,
        "must be an http:// or https:// URL",
    )
    _check(bool(parts.hostname), name, "must name a host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    _check(port is None or 0 < port < 65536, name, "has a bad port (a number from 1 to 65535)")
