"""The wire format of semantic partitions in Redis 8 vector sets: how a row is added, how a
search is asked, and how its reply becomes exactly rescored neighbours."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import orjson

from proxy.stores.base import Vector
from proxy.stores.similarity import Neighbor

# The graph of a vector set holds each vector projected to a third of its dimensions (VADD
# REDUCE, from 192 dims on) and int8-quantized (Q8): at 100k random 384-dim vectors a search
# took 28-50 % less server time than NOQUANT. Its scores are approximate, so each element's
# attributes also keep its float32 vector and nearest() rescores every candidate exactly: the
# threshold and the order see the exact cosine.
#
# A search costs the graph nodes it visits, about a cache miss each at 100k. With 32 links per
# node (VADD M 32; Redis's default is 16) a narrow search (EF 20; Redis's default is 100) finds
# as many true neighbours in about half the server time. Server time per search (p50, threaded,
# each query once, the formats interleaved, 500 queries each) and neighbours found:
#
#                             M 16, EF 100       M 32, EF 20                 M 32, EF 15
#   100k random 384-dim       2.21 ms, 99.6 %    1.25-1.29 ms, 99.0-99.4 %   1.03 ms, 98.2 %
#   100k MiniLM embeddings    98.0 %             98.4 %                      97.6 %
#
# (MiniLM: 3,000 qqp-dev questions among 97k docstring sentences; found = the exact best
# neighbour above 0.89 of 909 paraphrase queries.) A projection to 64 dims (M 24, EF 20) searched
# in 0.90 ms, but its distances are up to 2.7x the exact ones: EPSILON would admit ~14
# candidates per MiniLM query instead of 1.5.
VECTOR_SET = "vset-rq8m32:"
"""Key infix of a partition's vector set (reduced, Q8, M 32: VADD refuses to mix formats)."""
VECTOR_SET_FORMATS = ("vset:", "vset-q8:", "vset-rq8:", VECTOR_SET)
"""Key infixes of the vector sets this version and earlier ones wrote: a flush removes them all."""
MIN_REDUCE_DIMS = 192
GRAPH_LINKS = 32
"""VADD M: links per node and layer (twice as many on the bottom layer)."""
SEARCH_EF = 20
"""VSIM EF: candidates the graph search keeps while it explores (at least COUNT)."""
DISTANCE_FACTOR = 3.0
"""EPSILON admits graph distances (1 - approximate cosine) up to this multiple of the largest
exact distance the threshold allows, so that no candidate whose exact cosine reaches the
threshold is cut by its approximate score. The projection scales distances rather than shifting
them, so a fixed cosine margin does not fit every threshold: in 580k random pairs at cosines
0-0.99 the graph's distance was at most 1.87x the exact one, and it put pairs up to 0.30 below
their exact cosine (0.08 at 0.89, 0.26 at 0.5, where the former 0.2 margin cut them); in 2M
pairs of MiniLM embeddings of qqp-dev at most 1.48x."""
QUANTIZATION_SLACK = 0.01
"""Distance added on top: Q8 alone puts an identical vector up to 0.005 away."""
SEARCH_CONNECTIONS = 4
"""Connections for VSIM: as many searches run at once (in Redis threads) before one waits."""
EXTRA_CANDIDATES = 10
"""Candidates beyond k, so that rescoring can reorder near ties of the approximate ranking
(EPSILON keeps the reply short when few candidates are near the threshold)."""


def vector_add_command(
    vset: str, key: str, vector: Vector, text: str, sketch: bytes = b""
) -> tuple[Any, ...]:
    """VADD of one element. CAS finds its graph neighbours in a Redis thread: without it each
    add held Redis's event loop for ~14 ms at 100k (every other command waited). The
    attributes keep the text, the float32 vector and the verifier's sketch."""
    unit = unit_query(vector)
    blob = unit.astype("<f4").tobytes()
    fields = {"t": text, "v": base64.b64encode(blob).decode("ascii")}
    if sketch:
        fields["s"] = base64.b64encode(sketch).decode("ascii")
    attributes = orjson.dumps(fields)
    dims = unit.shape[0]
    reduce = ("REDUCE", dims // 3) if dims >= MIN_REDUCE_DIMS else ()
    return (
        "VADD", vset, *reduce, "FP32", blob, key, "Q8", "M", GRAPH_LINKS, "CAS",
        "SETATTR", attributes,
    )  # fmt: skip


def vector_search_command(
    vset: str, query: Vector, *, k: int, min_similarity: float
) -> tuple[bytes, ...]:
    """VSIM for ``query`` (a unit vector); EPSILON bounds 1 - score, and VSIM scores are
    (1 + cosine) / 2, so EPSILON is half the graph distance admitted. The search runs in a Redis
    thread (no NOTHREAD): on Redis's event loop it would hold every other command for its whole
    ~1 ms."""
    distance = DISTANCE_FACTOR * (1.0 - min_similarity) + QUANTIZATION_SLACK
    epsilon = min(1.0, distance / 2)
    return (
        b"VSIM", vset.encode(), b"FP32", query.astype("<f4").tobytes(), b"WITHATTRIBS",
        b"COUNT", b"%d" % (k + EXTRA_CANDIDATES), b"EF", b"%d" % SEARCH_EF,
        b"EPSILON", repr(epsilon).encode(),
    )  # fmt: skip


def unit_query(vector: Vector) -> Vector:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return (v / np.float32(norm)).astype(np.float32) if norm > 0 else v


def neighbors_from_reply(
    reply: Any, query: Vector, *, k: int, min_similarity: float
) -> list[Neighbor]:
    """The best ``k`` candidates by exact cosine, at or above ``min_similarity``, from VSIM's
    RESP2 reply (element, attributes, element, attributes...), or the dict redis-py makes of
    it. A candidate without a readable float32 vector of the query's size is dropped: a missed
    hit, never a wrong one."""
    if isinstance(reply, dict):  # redis-py's VSIM reply callback (cluster, sentinel)
        items = list(reply.items())
    elif isinstance(reply, list):
        items = [(reply[i], reply[i + 1]) for i in range(0, len(reply) - 1, 2)]
    else:
        return []
    out: list[Neighbor] = []
    for name, attributes in items:
        try:
            fields = orjson.loads(attributes)
            text, encoded = fields["t"], fields["v"]
            vector = np.frombuffer(binascii.a2b_base64(encoded, strict_mode=True), dtype="<f4")
            sketch = binascii.a2b_base64(fields.get("s", ""), strict_mode=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error):
            continue
        if not isinstance(text, str) or vector.shape != query.shape:
            continue
        similarity = float(vector @ query)
        if similarity >= min_similarity:
            key = name.decode() if isinstance(name, bytes) else str(name)
            out.append(Neighbor(key, similarity, text, sketch))
    out.sort(key=lambda n: -n.similarity)
    return out[:k]
