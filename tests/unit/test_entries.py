"""Packed entries: what a store keeps, and entries written before completion tokens were."""

from __future__ import annotations

import struct

import pytest

from proxy.errors import StoreError
from proxy.stores.base import Entry, pack_entry, unpack_entry


def test_an_entry_comes_back_whole() -> None:
    entry = Entry("0123456789abcdef", b'{"x": 1}', 1_700_000_000.5, 140, b"[3]", 121, b'{"m":1}')
    assert unpack_entry(pack_entry(entry, lead=b"lead"), 4) == entry
    assert unpack_entry(pack_entry(entry)) == entry


def test_an_entry_written_in_the_first_format_is_read_with_no_completion_tokens() -> None:
    body, replay = b'{"id": "old"}', b"[1,2]"
    old = struct.pack("<3sdQ8sI", b"SC1", 1_600_000_000.0, 42, bytes.fromhex("00" * 8), len(replay))
    entry = unpack_entry(old + body + replay)
    assert (entry.body, entry.replay, entry.tokens, entry.completion_tokens) == (
        body,
        replay,
        42,
        0,
    )


@pytest.mark.parametrize("data", [b"", b"SC2", b"XX1" + b"\0" * 40, b"SC2" + b"\0" * 8])
def test_anything_else_is_a_store_error(data: bytes) -> None:
    with pytest.raises(StoreError):
        unpack_entry(data)
