"""``semcache stats`` as text: the wrong-hit figures of each model group, from the same report
``/cache/stats`` gives (real :class:`Adaptive` groups with evidence, synced through a store)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from proxy.admin.client import AdminClient, AdminError
from proxy.admin.display import summary
from proxy.metrics import Metrics
from proxy.semantic.adaptive import Adaptive, bin_of, edge
from proxy.semantic.adaptive_report import report
from proxy.stores.guard import Cache
from proxy.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

FIGURES: dict[str, Any] = {
    "hits": 3,
    "misses": 1,
    "hit_rate": 0.75,
    "hits_by_lookup": {"exact": 2, "semantic": 1},
    "tokens_saved": 30,
    "store_kind": "memory",
    "store": {"entries": 1, "bytes": 100},
    "semantic_mode": "on",
    "embedder": "local:all-MiniLM-L6-v2",
    "verifier": "learned:x",
}


async def groups(adaptive: Adaptive) -> list[dict[str, object]]:
    await adaptive.sync()
    return report(adaptive)


async def test_each_group_shows_its_line_estimate_and_interval() -> None:
    adaptive = Adaptive(Cache(MemoryStore(max_entries=100, max_bytes=1 << 20), Metrics()), 0.005)
    for _ in range(1000):  # clean comparisons below the calibrated line: it moves down there
        adaptive.looked_up("gpt-4o-mini", -0.05)
        adaptive.observed("gpt-4o-mini", -0.05, wrong=False)
    adaptive.looked_up("llama3.2", 0.1)  # one lookup: no estimate yet
    report = await groups(adaptive)
    figures = {**FIGURES, "groups": report, "audits": {"semantic same": 4}}
    rate = report[0]["wrong_hit_rate"]
    assert isinstance(rate, dict)
    assert rate["high95"] < 0.005

    lines = summary(figures)

    assert "audits: semantic same 4" in lines
    assert "wrong hits per model (from audits, comparisons and reports):" in lines
    [mini] = [line for line in lines if line.startswith("  gpt-4o-mini:")]
    offset = edge(bin_of(-0.05))
    assert f"line calibrated {offset:+.2f};" in mini
    assert "1000 lookups, 1000 compared, 0 different" in mini
    assert mini.endswith(
        f"wrong-hit rate {rate['estimate']:.2%} (95 %: {rate['low95']:.2%}-{rate['high95']:.2%})"
    )
    [llama] = [line for line in lines if line.startswith("  llama3.2:")]
    assert "line calibrated;" in llama
    assert llama.endswith("wrong-hit rate too little evidence yet")
    assert not any("shadow" in line for line in lines)  # shadow saw nothing: no line for it


async def test_shadow_mode_shows_the_hits_it_would_add() -> None:
    adaptive = Adaptive(Cache(MemoryStore(max_entries=100, max_bytes=1 << 20), Metrics()), 0.005)
    for _ in range(200):
        adaptive.looked_up("gpt-4o-mini", 0.1)
    adaptive.count("gpt-4o-mini", "shadow_hits", 20)
    adaptive.count("gpt-4o-mini", "shadow_same", 19)  # every would-be hit judged
    adaptive.count("gpt-4o-mini", "shadow_different", 1)

    lines = summary({**FIGURES, "groups": await groups(adaptive)})

    [shadow] = [line for line in lines if line.startswith("    shadow:")]
    assert shadow.startswith("    shadow: would add 20 hits (10.0% of lookups), judged wrong 1: ")
    assert "0.50% (95 %: " in shadow


def test_without_groups_or_audits_there_is_no_such_line() -> None:
    lines = summary({**FIGURES, "groups": [], "audits": {}})
    assert not any(line.startswith(("audits", "wrong hits")) for line in lines)


def test_semantic_matching_that_is_off_says_so() -> None:
    """No embedder: the mode setting alone ("on") would say the opposite of /readyz."""
    lines = summary({**FIGURES, "semantic_enabled": False, "embedder": None})
    assert any(line.startswith("semantic: off") for line in lines)
    on = summary({**FIGURES, "semantic_enabled": True, "embedder": "hash:64"})
    assert any(line.startswith("semantic: on, embedder hash:64") for line in on)


def test_a_store_that_cannot_tell_its_bytes_shows_a_question_mark() -> None:
    """A Redis user whose ACL denies INFO: the store's bytes are null, not "None bytes"."""
    lines = summary({**FIGURES, "store_kind": "redis", "store": {"entries": 4, "bytes": None}})
    assert "store (redis): 4 entries, ? bytes" in lines


@pytest.mark.parametrize(
    ("status", "message", "hint"),
    [
        (401, "this route needs the admin token", True),
        (403, "admin routes are off on this server: start semcache serve with ...", False),
    ],
)
def test_a_token_hint_only_where_a_token_can_help(status: int, message: str, hint: bool) -> None:
    """A 403 means the server has no admin token: no client flag helps, so none is suggested."""
    body = {"error": {"message": message, "type": "x", "param": None, "code": None}}
    client = AdminClient("http://proxy.test", None)
    with pytest.raises(AdminError) as raised:
        client._raise_for(httpx.Response(status, json=body), "GET", "/cache/stats")
    assert message in str(raised.value)
    assert ("--token" in str(raised.value)) is hint
