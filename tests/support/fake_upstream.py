"""A small OpenAI-compatible upstream served over real HTTP (uvicorn in a background thread).

Behaviour is chosen by the request's ``model`` so it also works behind a proxy subprocess:

* chat content is ``f"answer {n}: {last_user_text}"`` where ``n`` counts chat calls since the
  last ``reset()``, so a wrong cache hit is visible;
* ``fake-error-500`` / ``fake-error-400`` / ``fake-429`` (``Retry-After: 7``) answer with an
  OpenAI error body (chat and embeddings);
* ``fake-length``, ``fake-empty``, ``fake-tools`` change the completion;
* ``fake-slow`` sleeps ``slow_seconds`` first; ``fake-hold`` sends the first stream chunk and
  then waits for ``release`` (a ``threading.Event``) to be set by the test (on completions,
  responses and Ollama's chat and generate it waits before answering at all);
* ``fake-cut`` drops the connection mid-body; ``fake-midstream-error`` streams a chunk and then
  an SSE ``error`` event.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
RESPONSES_PATH = "/v1/responses"
EMBEDDINGS_PATH = "/v1/embeddings"
SYSTEM_FINGERPRINT = "fp_fake"
TOOL_ARGUMENTS = '{"city": "Paris"}'
HOLD_TIMEOUT = 30.0
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_ERRORS: dict[str, tuple[int, str, str]] = {
    "fake-error-500": (500, "server_error", "The fake upstream failed."),
    "fake-error-400": (400, "invalid_request_error", "The fake upstream rejected the request."),
    "fake-429": (429, "rate_limit_error", "Rate limit reached (fake)."),
}

Json = dict[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    raw_path: bytes
    """The path as it came on the request line, percent-escapes and all (``path`` is decoded)."""
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON


def embedding_vector(item: str | list[int], dimensions: int = 8) -> npt.NDArray[np.float32]:
    """The fake's deterministic, L2-normalised embedding of one input item.

    Strings that differ only in case, punctuation or spacing get nearby vectors (cosine
    about 0.99), anything else is unrelated, so semantic-cache tests can produce near hits.
    """

    def unit(key: str) -> npt.NDArray[np.float64]:
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        vec = np.random.default_rng(seed).standard_normal(dimensions)
        return vec / np.linalg.norm(vec)

    if isinstance(item, str):
        loose = " ".join(re.sub(r"[^\w\s]", " ", item.lower()).split())
        vec = unit("text:" + loose) + 0.1 * unit("exact:" + item)
    else:
        vec = unit("tokens:" + ",".join(map(str, item)))
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers, media_type="application/json")


def _error(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return _json(body, status, headers)


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _words(text: str) -> list[str]:
    """Split into pieces that concatenate back to ``text``."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class _CutResponse(Response):
    """Sends ``parts`` and returns without finishing the body: uvicorn then drops the socket."""

    def __init__(self, parts: list[bytes], media_type: str, content_length: int | None = None):
        self.status_code = 200
        self.background = None
        self.parts = parts
        self.raw_headers = [(b"content-type", media_type.encode())]
        if content_length is not None:
            self.raw_headers.append((b"content-length", str(content_length).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        for part in self.parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})


class FakeUpstream:
    def __init__(
        self,
        *,
        slow_seconds: float = 2.0,
        latency_seconds: float = 0.0,
        tls_certfile: str | None = None,
    ) -> None:
        """``tls_certfile``: serve HTTPS with this PEM (key and certificate chain)."""
        self.tls_certfile = tls_certfile
        self.latency_seconds = latency_seconds
        """Added before every chat and embeddings answer (a stream: before its first event)."""
        self.default_slow_seconds = slow_seconds
        self.slow_seconds = slow_seconds
        self.release = threading.Event()
        self.stream_cancelled = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._embedding_items: list[int] = []
        self._chat_count = 0
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._port = 0
        self.app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=_METHODS)], lifespan=self._lifespan
        )

    # -- test-side API -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        scheme = "http" if self.tls_certfile is None else "https"
        return f"{scheme}://127.0.0.1:{self._port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def embedding_items(self) -> list[int]:
        """How many input items each embeddings call carried."""
        with self._lock:
            return list(self._embedding_items)

    def calls(self, path: str = CHAT_PATH) -> int:
        with self._lock:
            return sum(1 for r in self._requests if r.path == path)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._embedding_items.clear()
            self._chat_count = 0
        self.release.clear()
        self.stream_cancelled.clear()
        self.slow_seconds = self.default_slow_seconds

    def start(self, port: int = 0) -> FakeUpstream:
        if self._thread is not None:
            return self
        # Bind and listen here so the port is known and connections queue from this moment on.
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket says so, and Nagle + delayed ACK would add 40 ms to each response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        self._sock, self._port = sock, int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            http="h11",
            loop="asyncio",
            ws="none",
            lifespan="on",
            log_config=None,  # leave the test process's logging configuration alone
            timeout_graceful_shutdown=2,
            ssl_certfile=self.tls_certfile,
        )
        self._server = uvicorn.Server(config)
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-upstream", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            self.stop()
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        self.release.set()  # let held streams finish
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- server side (runs in the uvicorn thread) ----------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._ready.set()
        yield

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            raw_path=request.scope["raw_path"],
            query=request.url.query,
            headers=dict(request.headers),
            body=body,
            json=parsed,
        )
        with self._lock:
            self._requests.append(record)
            seq = len(self._requests)
            is_chat = record.method == "POST" and record.path == CHAT_PATH
            if is_chat:
                self._chat_count += 1
            chat_n = self._chat_count
        response = await self._route(record, chat_n)
        response.headers["x-upstream"] = "fake"
        response.headers["x-request-id"] = f"req-{seq}"
        return response

    async def _route(self, rec: RecordedRequest, chat_n: int) -> Response:
        method, path = rec.method, rec.path
        held = (COMPLETIONS_PATH, RESPONSES_PATH, "/api/chat", "/api/generate")
        if path in held and isinstance(rec.json, dict) and rec.json.get("model") == "fake-hold":
            await self._hold()  # (chat holds after its first chunk: below)
        if path.startswith("/api/"):
            with self._lock:
                n = sum(1 for r in self._requests if r.path == path)
            return self._ollama(method, path, rec.json, n)
        if method == "POST" and path == RESPONSES_PATH and isinstance(rec.json, dict):
            with self._lock:
                n = sum(1 for r in self._requests if r.path == RESPONSES_PATH)
            return self._response(rec.json, n)
        if method == "POST" and path == COMPLETIONS_PATH and isinstance(rec.json, dict):
            with self._lock:
                n = sum(1 for r in self._requests if r.path == COMPLETIONS_PATH)
            return self._completion(rec.json, n)
        if method == "POST" and path in (CHAT_PATH, EMBEDDINGS_PATH):
            if not isinstance(rec.json, dict):
                return _error(400, "invalid_request_error", "Body must be a JSON object.")
            model = str(rec.json.get("model", ""))
            if self.latency_seconds:
                await anyio.sleep(self.latency_seconds)
            if model == "fake-slow":
                await anyio.sleep(self.slow_seconds)
            if model in _ERRORS:
                status, type_, message = _ERRORS[model]
                headers = {"retry-after": "7"} if status == 429 else None
                return _error(status, type_, message, headers)
            if path == CHAT_PATH:
                return await self._chat(rec.json, model, chat_n)
            return self._embeddings(rec.json, model)
        if method == "GET" and path == "/v1/models":
            models = ["fake-model", *_ERRORS, "fake-length", "fake-empty", "fake-tools"]
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in models]
            return _json({"object": "list", "data": data})
        if method == "GET" and path == "/v1/echo-stream":
            events = [b'data: {"i": %d}\n\n' % i for i in range(3)]
            return StreamingResponse(iter(events), media_type="text/event-stream")
        if path.startswith("/v1/"):
            body = rec.body.decode("utf-8", "replace")
            return _json({"method": method, "path": path, "query": rec.query, "body": body})
        return _error(404, "invalid_request_error", f"Unknown path {path}")

    def _completion(self, body: Json, n: int) -> Response:
        """Legacy text completions (OpenAI API reference, "Completions"): the text names the
        call and echoes the prompt; streamed in three chunks when asked."""
        prompt = body.get("prompt")
        shown = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
        text = f" completion {n}: {shown}"
        head = {"id": f"cmpl-fake-{n}", "object": "text_completion", "created": 1_700_000_000,
                "model": str(body.get("model", ""))}  # fmt: skip
        usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        if not body.get("stream"):
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
            return _json({**head, "choices": [choice], "usage": usage})
        third = max(1, len(text) // 3)
        pieces = [text[:third], text[third : 2 * third], text[2 * third :]]
        events = []
        for i, piece in enumerate(pieces):
            finish = "stop" if i == len(pieces) - 1 else None
            choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
            events.append(_sse({**head, "choices": [choice]}))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            events.append(_sse({**head, "choices": [], "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        return StreamingResponse(iter(events), media_type="text/event-stream")

    def _response(self, body: Json, n: int) -> Response:
        """The Responses API (OpenAI API reference, "Create a model response" and "Streaming
        events"): a message whose text names the call and echoes the input, or a function call
        when a function tool is offered; ``fake-incomplete`` ends ``incomplete``."""
        given = body.get("input")
        asked = given if isinstance(given, str) else orjson.dumps(given).decode()
        model = str(body.get("model", ""))
        tools = [
            t
            for t in body.get("tools") or []
            if isinstance(t, dict) and t.get("type") == "function"
        ]
        if tools:
            item: Json = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                          "name": tools[0].get("name", "f"), "arguments": TOOL_ARGUMENTS,
                          "status": "completed"}  # fmt: skip
        else:
            text = f"response {n}: {asked}"
            content = [{"type": "output_text", "text": text, "annotations": []}]
            item = {"type": "message", "id": f"msg_{n}", "status": "completed",
                    "role": "assistant", "content": content}  # fmt: skip
        incomplete = model == "fake-incomplete"
        response: Json = {
            "id": f"resp_fake_{n}", "object": "response", "created_at": 1_700_000_000,
            "status": "incomplete" if incomplete else "completed", "model": model,
            "output": [item], "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": body.get("instructions"), "tools": body.get("tools") or [],
            "parallel_tool_calls": True, "text": {"format": {"type": "text"}},
            "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        }  # fmt: skip
        if not body.get("stream"):
            return _json(response)
        events: list[bytes] = []

        def send(kind: str, **fields: Any) -> None:
            payload = {"type": kind, "sequence_number": len(events), **fields}
            events.append(f"event: {kind}\n".encode() + _sse(payload))

        started = {**response, "status": "in_progress", "output": [], "usage": None}
        send("response.created", response=started)
        send("response.in_progress", response=started)
        if item["type"] == "message":
            send(
                "response.output_item.added",
                output_index=0,
                item={**item, "content": [], "status": "in_progress"},
            )
            part = {"type": "output_text", "text": "", "annotations": []}
            where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
            send("response.content_part.added", **where, part=part)
            full = item["content"][0]["text"]
            half = len(full) // 2
            for piece in (full[:half], full[half:]):
                send("response.output_text.delta", **where, delta=piece, logprobs=[])
            send("response.output_text.done", **where, text=full, logprobs=[])
            send("response.content_part.done", **where, part=item["content"][0])
        else:
            send(
                "response.output_item.added",
                output_index=0,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            send(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=0,
                delta=TOOL_ARGUMENTS,
            )
            send(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=0,
                arguments=TOOL_ARGUMENTS,
            )
        send("response.output_item.done", output_index=0, item=item)
        send("response.incomplete" if incomplete else "response.completed", response=response)
        return StreamingResponse(iter(events), media_type="text/event-stream")

    def _ollama(self, method: str, path: str, body: Any, n: int) -> Response:
        """Ollama's native API (Ollama API docs, docs/api.md): chat, generate (NDJSON streams by
        default), embed, embeddings, and tags; errors as ``{"error": "..."}``."""
        if method in ("GET", "HEAD") and path == "/api/tags":  # Ollama answers HEAD there too
            return _json({"models": [{"name": "fake-model:latest", "model": "fake-model:latest"}]})
        if method != "POST" or not isinstance(body, dict):
            return _json({"error": f"unsupported {method} {path}"}, 404)
        model = str(body.get("model", ""))
        if model == "fake-error-500":
            return _json({"error": "the fake Ollama failed"}, 500)
        stats = {
            "total_duration": 5_000_000, "load_duration": 1_000_000, "prompt_eval_count": 5,
            "prompt_eval_duration": 1_000_000, "eval_count": 7, "eval_duration": 2_000_000,
        }  # fmt: skip
        head = {"model": model, "created_at": "2026-12-06T12:00:00.000000Z"}
        if path == "/api/embed":
            items = body.get("input")
            items = items if isinstance(items, list) else [items]
            vectors = [embedding_vector(str(item)).tolist() for item in items]
            return _json({"model": model, "embeddings": vectors, "total_duration": 1,
                          "load_duration": 1, "prompt_eval_count": len(items)})  # fmt: skip
        if path == "/api/embeddings":
            return _json({"embedding": embedding_vector(str(body.get("prompt"))).tolist()})
        if path not in ("/api/chat", "/api/generate"):
            return _json({"error": f"unknown path {path}"}, 404)
        chat = path == "/api/chat"
        if chat:
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            asked = _text_of(messages[-1].get("content")) if messages else ""
        else:
            asked = str(body.get("prompt", ""))
        text = f"ollama {'chat' if chat else 'generate'} {n}: {asked}"
        reason = "length" if model == "fake-length" else "stop"
        final = {**head, "done": True, "done_reason": reason, **stats}
        if not chat:
            final["context"] = [1, 2, 3]
        if body.get("stream", True) is False:
            if chat:
                return _json({**final, "message": {"role": "assistant", "content": text}})
            return _json({**final, "response": text})
        words = text.split(" ")
        pieces = [" ".join(words[:2]) + " ", " ".join(words[2:])]
        lines = []
        for piece in pieces:
            part = (
                {"message": {"role": "assistant", "content": piece}}
                if chat
                else {"response": piece}
            )
            lines.append(orjson.dumps({**head, **part, "done": False}) + b"\n")
        last = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        lines.append(orjson.dumps({**final, **last}) + b"\n")
        return StreamingResponse(iter(lines), media_type="application/x-ndjson")

    async def _hold(self) -> None:
        await anyio.to_thread.run_sync(self.release.wait, HOLD_TIMEOUT, abandon_on_cancel=True)

    async def _chat(self, body: Json, model: str, n: int) -> Response:
        messages = body.get("messages") or []
        user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        text = _text_of(user[-1].get("content")) if user else ""
        content = "" if model == "fake-empty" else f"answer {n}: {text}"
        finish = "length" if model == "fake-length" else "stop"
        tools = model == "fake-tools"
        n_choices = int(body.get("n") or 1)
        contents = [
            content if i == 0 or not content else f"{content} ({i})" for i in range(n_choices)
        ]
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
        completion_tokens = sum(len(c.split()) for c in contents) if not tools else 9 * n_choices
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        base = {"id": f"chatcmpl-fake-{n}", "created": int(time.time()), "model": body.get("model")}
        tool_call = {
            "id": f"call_fake_{n}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
        }

        if not body.get("stream"):
            if model == "fake-hold":
                await self._hold()
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": None, "tool_calls": [tool_call]}
                    if tools
                    else {"role": "assistant", "content": c},
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tools else finish,
                }
                for i, c in enumerate(contents)
            ]
            payload = {
                **base,
                "object": "chat.completion",
                "choices": choices,
                "usage": usage,
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            if model == "fake-cut":
                raw = orjson.dumps(payload)
                return _CutResponse([raw[: len(raw) // 2]], "application/json", len(raw))
            return _json(payload)

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[Json], usage_value: Json | None = None) -> bytes:
            obj: Json = {
                **base,
                "object": "chat.completion.chunk",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = usage_value
            return _sse(obj)

        def choice(i: int, delta: Json, finish_reason: str | None = None) -> Json:
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        events: list[bytes] = []
        for i, c in enumerate(contents):
            if tools:
                head = {
                    **tool_call,
                    "index": 0,
                    "function": {"name": "get_weather", "arguments": ""},
                }
                delta = {"role": "assistant", "content": None, "tool_calls": [head]}
                events.append(chunk([choice(i, delta)]))
                for k in range(0, len(TOOL_ARGUMENTS), 6):
                    piece = {"index": 0, "function": {"arguments": TOOL_ARGUMENTS[k : k + 6]}}
                    events.append(chunk([choice(i, {"tool_calls": [piece]})]))
                events.append(chunk([choice(i, {}, "tool_calls")]))
            else:
                events.append(chunk([choice(i, {"role": "assistant", "content": ""})]))
                events.extend(chunk([choice(i, {"content": w})]) for w in _words(c))
                events.append(chunk([choice(i, {}, finish)]))
        if include_usage:
            events.append(chunk([], usage))
        events.append(b"data: [DONE]\n\n")

        if model == "fake-cut":
            return _CutResponse(events[:3], "text/event-stream")
        if model == "fake-midstream-error":
            error = {"message": "The fake upstream failed mid-stream.", "type": "server_error",
                     "param": None, "code": None}  # fmt: skip
            events = [*events[:2], _sse({"error": error})]

        async def body_iter() -> AsyncIterator[bytes]:
            try:
                for index, event in enumerate(events):
                    if index == 1 and model == "fake-hold":
                        await self._hold()
                    yield event
            except anyio.get_cancelled_exc_class():
                self.stream_cancelled.set()  # the client (the proxy) went away mid-stream
                raise

        return StreamingResponse(
            body_iter(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    def _embeddings(self, body: Json, model: str) -> Response:
        raw = body.get("input")

        def is_tokens(x: Any) -> bool:
            return isinstance(x, list) and bool(x) and all(type(t) is int for t in x)

        if isinstance(raw, str) or is_tokens(raw):
            raw = [raw]
        if not (
            isinstance(raw, list)
            and raw
            and (all(isinstance(x, str) for x in raw) or all(is_tokens(x) for x in raw))
        ):
            return _error(400, "invalid_request_error", "Invalid 'input'.")
        items: list[str | list[int]] = raw
        dims = body.get("dimensions") or 8
        fmt = body.get("encoding_format") or "float"
        if type(dims) is not int or dims < 1 or fmt not in ("float", "base64"):
            return _error(400, "invalid_request_error", "Bad 'dimensions' or 'encoding_format'.")
        with self._lock:
            self._embedding_items.append(len(items))
        data = []
        for index, item in enumerate(items):
            vec = embedding_vector(item, dims)
            encoded: Any = (
                base64.b64encode(vec.astype("<f4").tobytes()).decode()
                if fmt == "base64"
                else vec.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(max(1, len(i.split())) if isinstance(i, str) else len(i) for i in items)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"object": "list", "data": data, "model": body.get("model"), "usage": usage})


def iter_sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data:`` payloads of an SSE line stream (e.g. ``httpx.Response.iter_lines()``)."""
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


def main() -> None:
    """``python -m tests.support.fake_upstream --port P [--latency-ms L]``: serve until killed;
    prints the base URL on the first line of stdout once ready (for benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible upstream")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    upstream = FakeUpstream(latency_seconds=args.latency_ms / 1000).start(args.port)
    try:
        print(upstream.url, flush=True)
        threading.Event().wait()
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
