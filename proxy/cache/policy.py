"""Pure cache policy: what a request may do with the cache, and what a hit saves and shows.

No I/O here: the pipeline asks, this module decides. Which answers are whole enough to store is
:func:`proxy.upstream.completion_is_storable`, a reading of the upstream's answer that the
semantic audit shares.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from proxy.errors import BadRequestError
from proxy.requests import CacheControl
from proxy.settings_checks import MAX_TTL_SECONDS

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
# The OpenAI API's default sampling temperature, assumed when a request sends none.
DEFAULT_TEMPERATURE = 1.0


def cache_control(
    headers: Mapping[str, str],
    *,
    default_ttl_seconds: int,
    temperature: float | None = None,
    max_temperature: float | None = None,
) -> CacheControl:
    """Read ``X-Cache-Bypass``, ``Cache-Control`` and ``X-Cache-TTL`` (RFC 9111 §5.2.1 for the
    request directives ``no-cache``, ``no-store`` and ``max-age``)."""
    if max_temperature is None and not any(name in headers for name in _CONTROL_FIELDS):
        return _plain(default_ttl_seconds)  # most requests steer nothing
    ttl = default_ttl_seconds
    raw_ttl = headers.get("x-cache-ttl")
    if raw_ttl is not None:
        ttl = _positive_int(raw_ttl, "X-Cache-TTL")
    if headers.get("x-cache-bypass", "").strip().lower() in TRUE_WORDS:
        return CacheControl(lookup=False, store=False, ttl_seconds=ttl, reason="header")
    if max_temperature is not None:
        effective = DEFAULT_TEMPERATURE if temperature is None else temperature
        if effective > max_temperature:
            return CacheControl(lookup=False, store=False, ttl_seconds=ttl, reason="temperature")
    semantic = headers.get("x-cache-semantic", "on").strip().lower() not in FALSE_WORDS
    min_similarity = None
    raw_threshold = headers.get("x-cache-threshold")
    if raw_threshold is not None:
        min_similarity = _similarity(raw_threshold)
    lookup, store, max_age = True, True, None
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.strip().lower().partition("=")
        if name == "no-cache":
            lookup = False
        elif name == "no-store":
            store = False
        elif name == "max-age" and _is_digits(value.strip()):
            max_age = int(value.strip())
    if not lookup and not store:
        return CacheControl(lookup=False, store=False, ttl_seconds=ttl, reason="cache-control")
    return CacheControl(
        lookup=lookup,
        store=store,
        ttl_seconds=ttl,
        max_age_seconds=max_age,
        semantic=semantic,
        min_similarity=min_similarity,
    )


_CONTROL_FIELDS = ("x-cache-ttl", "x-cache-bypass", "x-cache-semantic", "x-cache-threshold",
                   "cache-control")  # fmt: skip


@functools.lru_cache(maxsize=8)
def _plain(ttl_seconds: int) -> CacheControl:
    return CacheControl(lookup=True, store=True, ttl_seconds=ttl_seconds)


def completion_tokens_saved(completion: Mapping[str, Any]) -> tuple[int, int]:
    """The answer's ``usage``: total tokens, and of them the completion's (0 when absent)."""
    return usage_tokens(completion, answer_field="completion_tokens")


def usage_tokens(answer: Mapping[str, Any], *, answer_field: str) -> tuple[int, int]:
    """``usage.total_tokens``, and of them the answer's own (``answer_field``: the Chat and
    Completions APIs say ``completion_tokens``, the Responses API ``output_tokens``)."""
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    total, own = usage.get("total_tokens"), usage.get(answer_field)
    total = total if type(total) is int and total >= 0 else 0
    own = own if type(own) is int and 0 <= own <= total else 0
    return total, own


AUTO_TIERS = frozenset({"default", "scale"})
"""What a request asking ``auto`` (or no ``service_tier``) is served with: the project's tier,
``default`` unless the project is set otherwise, ``scale`` for one with Scale Tier credits
(OpenAI API reference, ``service_tier``)."""
TIER_SHOWN_AS = {"fast": "priority"}
"""Tiers a response names otherwise than the request did ("The response will show
``service_tier=priority`` regardless of if you specify ``service_tier=fast`` or ``priority``")."""


def chat_semantic_body(body: dict[str, Any]) -> dict[str, Any] | None:
    """A chat request as semantic lookup reads it, or None when it is matched exactly only:
    with ``"store": true`` its answer's id is a stored completion the client may fetch
    (``GET /chat/completions/{id}``), whose messages are those of the request that made it, so
    a reworded request is not served it (as on the Responses API, ``stored-response``)."""
    return None if body.get("store") is True else body


def served_tier(stored: Any, asked: Any) -> Any:
    """The ``service_tier`` a hit shows: the tier the upstream would have served this request
    on, not the one the stored answer was made on (a ``flex`` answer is no ``priority`` one).

    A tier asked by name is the one shown (as the upstream shows it when it serves that tier).
    ``auto`` or none is the project's tier, which semcache sees only in answers: the stored
    tier when it is one ``auto`` gives (an answer made on the project's tier), else
    ``default``. An upstream that names no tier (absent, ``null``: vLLM, Ollama) is left so."""
    if not isinstance(stored, str):
        return stored
    if isinstance(asked, str) and asked != "auto":
        return TIER_SHOWN_AS.get(asked, asked)
    return stored if stored in AUTO_TIERS else "default"


def with_served_tier(answer: dict[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """``answer`` (a chat completion, a Response) with the tier :func:`served_tier` gives."""
    if "service_tier" not in answer:
        return answer
    tier = served_tier(answer["service_tier"], request.get("service_tier"))
    return answer if tier == answer["service_tier"] else {**answer, "service_tier": tier}


def _positive_int(raw: str, header: str) -> int:
    text = raw.strip()
    if not _is_digits(text) or not 0 < int(text) <= MAX_TTL_SECONDS:
        raise BadRequestError(
            f"{header} must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}, got {raw!r}"
        )
    return int(text)


def _similarity(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 1.0:
        raise BadRequestError(f"X-Cache-Threshold must be a number in (0, 1], got {raw!r}")
    return value


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 12
