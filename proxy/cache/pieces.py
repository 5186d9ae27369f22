"""A stored answer's text replayed in pieces: which of its token logprobs go with each piece."""

from __future__ import annotations

from typing import Any


def share_logprobs(logprobs: list[Any], pieces: list[str]) -> list[list[Any]]:
    """``logprobs`` handed to the lines whose text their tokens spell, in order: a token goes
    with the line its text ends in; whatever is left over goes with the last line."""

    def length(entry: Any) -> int:
        token = entry.get("token") if isinstance(entry, dict) else None
        return len(token) if isinstance(token, str) else 0

    shares: list[list[Any]] = [[] for _ in pieces]
    spelled, end, i = 0, 0, 0
    for n, piece in enumerate(pieces):
        end += len(piece)
        while i < len(logprobs) and spelled + length(logprobs[i]) <= end:
            spelled += length(logprobs[i])
            shares[n].append(logprobs[i])
            i += 1
    if shares:
        shares[-1] += logprobs[i:]
    return shares
