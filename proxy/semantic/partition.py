"""What a semantic lookup compares (the last user message's text) and among which entries (the
partition: everything else about the request).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.canonical import canonical_chat, canonical_numbers, digest, normalize_text


def semantic_text(body: Mapping[str, Any], *, max_chars: int) -> str | None:
    """The text a semantic lookup compares: the last message, when it is the user's and plain
    text (a string, or text parts only, joined with line breaks) of at most ``max_chars``
    characters, leading whitespace stripped; else None. What this leaves out (the parts the
    text came in, the first line's indentation) is in the partition (:func:`_shape`).

    Longer texts are left to the exact cache: an embedder reads only the first few hundred
    tokens, so two prompts differing further on would look identical to it.
    """
    joined = _joined(body)
    if joined is None:
        return None
    text = joined.lstrip()  # what it means: indentation aside (the partition keeps it)
    return text if 0 < len(text) <= max_chars else None


def _joined(body: Mapping[str, Any]) -> str | None:
    """The last message's text, normalized, when it is the user's and plain text; else None."""
    last = body["messages"][-1]
    if not isinstance(last, dict) or last.get("role") != "user" or last.get("images"):
        return None  # not the user's, or not text alone (Ollama puts images beside the text)
    content = last.get("content")
    if isinstance(content, list):
        if not content or not all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        ):
            return None
        content = "\n".join(p["text"] for p in content)
    if not isinstance(content, str):
        return None
    return normalize_text(content)


def _shape(body: Mapping[str, Any]) -> dict[str, Any]:
    """What of the last message's content the compared text leaves out: whether it came as a
    string or as parts (each part but its text: an upstream that joins parts without the line
    break the compared text puts between them reads ``["in", "to"]`` as ``into``, and Ollama
    refuses a list), and the indentation of its first line (code the model reads: Python
    refuses a snippet whose first line is indented)."""
    last = body["messages"][-1]
    content = last.get("content") if isinstance(last, dict) else None
    parts = None
    if isinstance(content, list):
        parts = [{k: v for k, v in p.items() if k != "text"} if isinstance(p, dict) else p
                 for p in content]  # fmt: skip
    joined = _joined(body) or ""
    lead = joined[: len(joined) - len(joined.lstrip())]
    return {"parts": canonical_numbers(parts), "indent": lead.rpartition("\n")[2]}


def semantic_partition(
    namespace: str, body: Mapping[str, Any], embedder: str, *, api: str | None = None
) -> str:
    """Entries compared semantically share everything but the last user message's content:
    tenant, embedder, API (``api``: None for chat completions), model, every answer-changing
    parameter, tools, system prompt, earlier turns, the last message's other fields, and what
    of its content the compared text leaves out (:func:`_shape`).

    The API and embedder are hashed beside the body, never written into it: a name semcache
    set in the body (or took out of it) would be one a client can send too, and a body carrying
    it, which the upstream refuses as an unknown field, would share the partition of one that
    does not."""
    canonical = canonical_chat(body)
    messages = canonical["messages"]
    messages[-1] = {k: v for k, v in messages[-1].items() if k != "content"}
    scope = {"api": api, "embedder": embedder, "body": canonical, "shape": _shape(body)}
    return f"sem:{namespace}:{digest(scope)}"
