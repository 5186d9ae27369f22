"""What the verifier keeps of a prompt: the local model's reading of it, small enough to store
beside the prompt's vector.

A :class:`Sketch` holds, for the prompt's first :data:`MAX_TOKENS` word pieces, each piece's id
and its contextual vector from all-MiniLM-L6-v2's last layer, centred and projected onto the
verifier's 64 principal directions (fitted on training prompts, shipped in the model file),
int8-quantized; plus the model's sentence vector, int8-quantized. A prompt of 20 pieces packs to
about 1.7 KB. Vectors are renormalised when read, so the quantization scale does not matter.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MAX_TOKENS = 128
"""Word pieces a sketch keeps; a longer prompt is marked truncated and never verified as a
match (a difference past the cut would be invisible)."""

_HEADER = struct.Struct("<BBHH")  # version, flags, tokens, token dims
_VERSION = 1
_TRUNCATED = 1
_ENGLISH = 2

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Projection:
    """Centre and principal directions for token vectors (from the model file)."""

    mean: Floats
    basis: Floats
    """(model dims, sketch dims)"""


@dataclass(frozen=True, slots=True, eq=False)
class Sketch:
    ids: npt.NDArray[np.uint16]
    tokens: Floats
    """(pieces, sketch dims), unit rows."""
    sentence: Floats
    """The model's sentence vector, unit length."""
    english: bool
    truncated: bool

    def pack(self) -> bytes:
        flags = (_TRUNCATED if self.truncated else 0) | (_ENGLISH if self.english else 0)
        n, dims = self.tokens.shape
        return b"".join(
            (
                _HEADER.pack(_VERSION, flags, n, dims),
                self.ids.astype("<u2").tobytes(),
                _quantize(self.tokens).tobytes(),
                _quantize(self.sentence[None, :]).tobytes(),
            )
        )


def max_packed_bytes(token_dims: int, sentence_dims: int = 384) -> int:
    """The most a packed sketch takes (a prompt of :data:`MAX_TOKENS` pieces or more)."""
    return _HEADER.size + MAX_TOKENS * (2 + token_dims) + sentence_dims


def unpack(data: bytes, sentence_dims: int = 384) -> Sketch | None:
    """The sketch packed in ``data``; None when it is empty or not one (a missed hit, never an
    error)."""
    if len(data) < _HEADER.size:
        return None
    version, flags, n, dims = _HEADER.unpack_from(data)
    ids_end = _HEADER.size + 2 * n
    tokens_end = ids_end + n * dims
    if version != _VERSION or len(data) != tokens_end + sentence_dims:
        return None
    ids = np.frombuffer(data, dtype="<u2", count=n, offset=_HEADER.size)
    tokens = np.frombuffer(data, dtype=np.int8, count=n * dims, offset=ids_end).reshape(n, dims)
    sentence = np.frombuffer(data, dtype=np.int8, count=sentence_dims, offset=tokens_end)
    return Sketch(
        ids=ids.astype(np.uint16),
        tokens=_unit_rows(tokens.astype(np.float32)),
        sentence=_unit_rows(sentence.astype(np.float32)[None, :])[0],
        english=bool(flags & _ENGLISH),
        truncated=bool(flags & _TRUNCATED),
    )


def make_sketch(
    ids: npt.ArrayLike,
    token_vectors: npt.ArrayLike,
    sentence: npt.ArrayLike,
    projection: Projection,
    *,
    english: bool,
) -> Sketch:
    """A sketch from the model's output for one prompt: ``ids`` and ``token_vectors`` include
    the ``[CLS]`` and ``[SEP]`` pieces, which are dropped. The sketch is what :func:`unpack`
    returns after a round trip (quantized), so a fresh query and a stored candidate are read
    alike."""
    pieces = np.asarray(ids)[1:-1]
    vectors = np.asarray(token_vectors, dtype=np.float32)[1:-1]
    truncated = pieces.shape[0] > MAX_TOKENS
    pieces, vectors = pieces[:MAX_TOKENS], vectors[:MAX_TOKENS]
    projected = ((_unit_rows(vectors) - projection.mean) @ projection.basis).astype(np.float32)
    sketch = Sketch(
        ids=pieces.astype(np.uint16),
        tokens=_unit_rows(projected),
        sentence=_unit_rows(np.asarray(sentence, dtype=np.float32)[None, :])[0],
        english=english,
        truncated=truncated,
    )
    read = unpack(sketch.pack(), sketch.sentence.shape[0])
    assert read is not None
    return read


def _quantize(rows: Floats) -> npt.NDArray[np.int8]:
    scale = np.maximum(np.abs(rows).max(axis=1, keepdims=True), 1e-12)
    out: npt.NDArray[np.int8] = np.round(rows / scale * 127).astype(np.int8)
    return out


def _unit_rows(rows: Floats) -> Floats:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: Floats = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return out
