"""Nearest neighbours by cosine over unit float32 rows, for the memory store. Pure numpy.

Small indexes are scanned exactly (one matrix-vector product). From ``PREFILTER_ROWS`` rows on, a
256-bit sign code per row (random hyperplanes, so the share of differing bits estimates the
angle) first keeps the rows whose Hamming distance could still reach the threshold, with a wide
safety margin; only those are scored exactly. A row the prefilter drops could at worst be a
missed hit, never a wrong one: every returned score is an exact cosine.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

PREFILTER_ROWS = 8192
CODE_BITS = 256
MAX_PREFILTER_CANDIDATES = 512
# Standard deviations of margin on the Hamming bound: a true neighbour is dropped with
# probability below 1e-9 per row.
_MARGIN_SIGMAS = 6.0
_INITIAL_CAPACITY = 1
DOUBLING_ROWS = 1024
"""The arrays double while they hold fewer rows, then grow by an eighth: a full index at most
an eighth larger than its rows (amortized O(1) either way). They halve when a quarter full."""
INDEX_OVERHEAD_BYTES = 1024
"""What an index costs beside its arrays and rows (the arrays' and maps' own objects): charged
once per partition by the memory store, which may hold one index per tenant and context."""


@dataclass(frozen=True, slots=True)
class Neighbor:
    id: str
    similarity: float
    text: str
    sketch: bytes = b""
    """The verifier's packed sketch of ``text`` (:mod:`proxy.semantic.sketch`), if any."""


class VectorIndex:
    """Rows of one partition: id, unit vector, the text it embeds and its sketch. Swap-remove
    keeps it dense."""

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self._vectors = np.empty((_INITIAL_CAPACITY, dims), dtype=np.float32)
        self._codes = np.empty((CODE_BITS // 64, _INITIAL_CAPACITY), dtype=np.uint64)
        self._ids: list[str] = []
        self._texts: list[tuple[str, bytes]] = []
        self._rows: dict[str, int] = {}
        self._planes = _planes(dims)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id: str) -> bool:
        return id in self._rows

    def add(self, id: str, vector: Vector, text: str, sketch: bytes = b"") -> None:
        if vector.shape != (self.dims,):
            raise ValueError(f"vector has shape {vector.shape}, index has {self.dims} dims")
        row = self._rows.get(id)
        if row is None:
            row = len(self._ids)
            if row == self._vectors.shape[0]:
                self._grow()
            self._ids.append(id)
            self._texts.append((text, sketch))
            self._rows[id] = row
        else:
            self._texts[row] = (text, sketch)
        self._vectors[row] = vector
        self._codes[:, row] = self._code(vector)

    def remove(self, id: str) -> None:
        row = self._rows.pop(id, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._ids[row], self._texts[row] = moved, self._texts[last]
            self._vectors[row] = self._vectors[last]
            self._codes[:, row] = self._codes[:, last]
            self._rows[moved] = row
        self._ids.pop()
        self._texts.pop()
        capacity = self._vectors.shape[0]
        if capacity > _INITIAL_CAPACITY and len(self._ids) <= capacity // 4:
            self._resize(max(_INITIAL_CAPACITY, capacity // 2))

    def candidate_rows(self, query: Vector, min_similarity: float) -> npt.NDArray[np.intp]:
        """Rows that may reach ``min_similarity``; safe to run in a worker thread (it only
        reads), as :meth:`score` re-checks every row on the caller's side."""
        n = len(self._ids)
        if n < PREFILTER_ROWS:
            return np.arange(n)
        distance = self._hamming(query, n)
        bound = hamming_bound(min_similarity)
        rows = np.flatnonzero(distance <= bound)
        if rows.size > MAX_PREFILTER_CANDIDATES:
            nearest = np.argpartition(distance[rows], MAX_PREFILTER_CANDIDATES)
            rows = rows[nearest[:MAX_PREFILTER_CANDIDATES]]
        return rows

    def score(
        self, query: Vector, rows: npt.NDArray[np.intp], *, k: int, min_similarity: float
    ) -> list[Neighbor]:
        """Exact cosine of ``rows`` (those still present) against ``query``: the best ``k`` at or
        above ``min_similarity``, best first."""
        rows = rows[rows < len(self._ids)]
        if rows.size == 0:
            return []
        sims = self._vectors[rows] @ query
        keep = np.flatnonzero(sims >= min_similarity)
        if keep.size > k:
            keep = keep[np.argpartition(-sims[keep], k - 1)[:k]]
        order = keep[np.argsort(-sims[keep], kind="stable")]
        return [
            Neighbor(self._ids[int(rows[i])], float(sims[i]), *self._texts[int(rows[i])])
            for i in order
        ]

    def search(self, query: Vector, *, k: int, min_similarity: float) -> list[Neighbor]:
        return self.score(
            query, self.candidate_rows(query, min_similarity), k=k, min_similarity=min_similarity
        )

    def growth_bytes(self) -> int:
        """What the arrays would add were a row added now: 0 while they have room."""
        capacity = self._vectors.shape[0]
        if len(self._ids) < capacity:
            return 0
        return (_grown(capacity) - capacity) * (self.dims * 4 + CODE_BITS // 8)

    def nbytes(self) -> int:
        """What the vector and code arrays hold, at their allocated size (not only the rows in
        use): what the memory store charges against its byte bound."""
        return self._vectors.nbytes + self._codes.nbytes

    def _code(self, vector: Vector) -> npt.NDArray[np.uint64]:
        bits = np.packbits(self._planes @ vector > 0)
        return bits.view(np.uint64)

    def _hamming(self, query: Vector, n: int) -> npt.NDArray[np.uint16]:
        code = self._code(query)
        codes = self._codes  # one array throughout: a remove meanwhile may shrink them
        n = min(n, codes.shape[1])
        total = np.zeros(n, dtype=np.uint16)
        word = np.empty(n, dtype=np.uint64)
        for j in range(codes.shape[0]):
            np.bitwise_xor(codes[j, :n], code[j], out=word)
            total += np.bitwise_count(word)
        return total

    def _grow(self) -> None:
        self._resize(_grown(self._vectors.shape[0]))

    def _resize(self, capacity: int) -> None:
        n = len(self._ids)
        vectors = np.empty((capacity, self.dims), dtype=np.float32)
        vectors[:n] = self._vectors[:n]
        codes = np.empty((self._codes.shape[0], capacity), dtype=np.uint64)
        codes[:, :n] = self._codes[:, :n]
        self._vectors, self._codes = vectors, codes


def _grown(capacity: int) -> int:
    return capacity * 2 if capacity < DOUBLING_ROWS else capacity + capacity // 8


@functools.lru_cache(maxsize=8)
def _planes(dims: int) -> npt.NDArray[np.float32]:
    """The hyperplanes of the sign codes: seeded by ``dims``, so one read-only set serves every
    index of that width (it is 393 KB at 384 dims; one per partition made a thousand one-row
    partitions cost 400 MB)."""
    planes = np.random.default_rng(dims).standard_normal((CODE_BITS, dims)).astype(np.float32)
    planes.flags.writeable = False
    return planes


def hamming_bound(min_similarity: float) -> float:
    """Largest Hamming distance a row at ``min_similarity`` reaches, with a wide margin.

    For random hyperplanes a bit differs with probability angle/pi (Charikar, 2002).
    """
    angle = math.acos(max(-1.0, min(1.0, min_similarity)))
    p = angle / math.pi
    return CODE_BITS * p + _MARGIN_SIGMAS * math.sqrt(CODE_BITS * p * (1 - p)) + 2
