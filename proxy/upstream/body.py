"""A non-streamed upstream body read whole, decoded as it arrives (gzip, deflate), and read
only up to a limit: an answer larger than that is handed back still open, the part already
read first, to be relayed as it arrives instead of held (a 100 MB answer is not buffered to be
found too large to store).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING

from proxy.errors import UpstreamUnreachableError
from proxy.upstream.failures import ErrorMap

if TYPE_CHECKING:
    from proxy.upstream.client import Headers, UpstreamResponse

PIECE_BYTES = 256 * 1024
"""The most one step of decoding gives at once: a small compressed chunk can hold far more."""


async def read_body(
    response: UpstreamResponse, errors: ErrorMap, max_bytes: int | None = None
) -> bytes | Unread:
    """The whole body, decoded when it came compressed; or, once more than ``max_bytes`` of it
    (decoded) arrived, or its ``Content-Length`` says that many will, ``response`` still open as
    an :class:`Unread` one: what was read, then the rest as it arrives. Whoever gets that closes
    it; otherwise ``response`` is closed here."""
    encoding = _header(response.headers, b"content-encoding")
    try:
        decoder = None if encoding is None else Decoder.of(encoding)
    except ValueError as exc:
        await response.aclose()
        raise errors.failed(UpstreamUnreachableError, "undecodable", exc) from exc
    read: list[bytes] = []
    handed_over = False
    try:
        with errors:
            chunks = response.aiter_raw()
            if max_bytes is not None and decoder is None and _length(response) > max_bytes:
                handed_over = True
                return Unread(response, read, iter(()), chunks, None, errors)
            size = 0
            async for chunk in chunks:
                pieces = iter((chunk,)) if decoder is None else decoder.feed(chunk)
                for piece in pieces:
                    read.append(piece)
                    size += len(piece)
                    if max_bytes is not None and size > max_bytes:
                        handed_over = True
                        return Unread(response, read, pieces, chunks, decoder, errors)
            if decoder is not None:
                read.extend(decoder.finish())
    except zlib.error as exc:
        raise errors.failed(UpstreamUnreachableError, "undecodable", exc) from exc
    finally:
        if not handed_over:
            await response.aclose()
    return b"".join(read)


class Unread:
    """An upstream answer of which a first part was read: that part, then the rest as it
    arrives, decoded as the first was (its ``Content-Encoding`` and ``Content-Length`` then
    no longer said)."""

    def __init__(
        self,
        response: UpstreamResponse,
        read: list[bytes],
        pending: Iterator[bytes],
        chunks: AsyncIterator[bytes],
        decoder: Decoder | None,
        errors: ErrorMap,
    ) -> None:
        self._response = response
        self._read = deque(read)
        self._pending = pending
        self._chunks = chunks
        self._decoder = decoder
        self._errors = errors
        self.status_code = response.status_code
        self.headers: Headers = (
            response.headers
            if decoder is None
            else [(k, v) for k, v in response.headers if k not in _DECODED_AWAY]
        )

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        read = self._read
        while read:
            yield read.popleft()  # each let go of once handed on
        decoder = self._decoder
        try:
            for piece in self._pending:
                yield piece
            async for chunk in self._chunks:
                if decoder is None:
                    yield chunk
                    continue
                for piece in decoder.feed(chunk):
                    yield piece
            if decoder is not None:
                for piece in decoder.finish():
                    yield piece
        except zlib.error as exc:
            raise self._errors.failed(UpstreamUnreachableError, "undecodable", exc) from exc

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_raw()])

    async def aclose(self) -> None:
        await self._response.aclose()


class Decoder:
    """Undoes ``Content-Encoding`` chunk by chunk (gzip, deflate; several are applied in
    order), each chunk's output in pieces of at most ``PIECE_BYTES``."""

    def __init__(self, stages: list[_Inflater]) -> None:
        self._stages = stages

    @classmethod
    def of(cls, encoding: bytes) -> Decoder | None:
        """The decoder for ``encoding``, None when it names only ``identity``; ValueError for
        a coding semcache does not decode."""
        stages = []
        for coding in reversed([c.strip().lower() for c in encoding.split(b",")]):
            if coding in (b"identity", b""):
                continue
            if coding in (b"gzip", b"x-gzip"):
                stages.append(_Inflater(zlib.MAX_WBITS | 16))
            elif coding == b"deflate":
                stages.append(_Inflater(zlib.MAX_WBITS, raw_fallback=True))
            else:
                raise ValueError(f"unsupported content-encoding {coding.decode('latin-1')!r}")
        return cls(stages) if stages else None

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((chunk,))
        for stage in self._stages:
            pieces = stage.feed(pieces)
        return pieces

    def finish(self) -> Iterator[bytes]:
        """The last pieces; zlib.error if the body ended before its encoding did."""
        pieces: Iterator[bytes] = iter(())
        for stage in self._stages:
            pieces = stage.finish(pieces)
        return pieces


class _Inflater:
    """One coding undone. Deflate comes with the zlib wrapper (RFC 9110 §8.4.1.2) or, commonly,
    without: a body whose first bytes are no zlib header is read as raw deflate."""

    def __init__(self, wbits: int, *, raw_fallback: bool = False) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._seen: bytearray | None = bytearray() if raw_fallback else None
        """What was fed before the first output, while raw deflate may still be the coding."""

    def feed(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for data in pieces:
            yield from self._feed(data)

    def finish(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        yield from self.feed(pieces)
        if tail := self._inflate.flush():
            yield tail
        if not self._inflate.eof:
            raise zlib.error("incomplete or truncated stream")

    def _feed(self, data: bytes) -> Iterator[bytes]:
        if self._seen is not None:
            self._seen += data
            try:
                out = self._inflate.decompress(data, PIECE_BYTES)
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                data, self._seen = bytes(self._seen), None
                out = self._inflate.decompress(data, PIECE_BYTES)
            else:
                if out or self._inflate.eof or len(self._seen) > 2:
                    self._seen = None  # the zlib header was taken: no turning back
            if out:
                yield out
            data = self._inflate.unconsumed_tail
        while data:
            out = self._inflate.decompress(data, PIECE_BYTES)
            data = self._inflate.unconsumed_tail
            if out:
                yield out


_DECODED_AWAY = frozenset({b"content-encoding", b"content-length"})


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _length(response: UpstreamResponse) -> int:
    """The body's ``Content-Length``, or -1 when it says none."""
    length = _header(response.headers, b"content-length")
    return int(length) if length is not None and length.isdigit() else -1
