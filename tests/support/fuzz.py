"""Malformed and hostile HTTP requests, sent over raw sockets, for fuzzing the proxy.

:func:`corpus` builds a deterministic list of :class:`Case` (raw request bytes), :func:`send`
sends one and reads the reply, :func:`run` sends them all and counts in a :class:`Tally` what
went wrong (5xx, errors semcache wrote that are not in OpenAI format, no reply). Requests that
pass the proxy's validation use models of the fake upstream that answer quickly and never crash
it: its ordinary model (with sane ``n``, ``stream_options`` and ``dimensions``, the fields it
reads) or ``fake-error-400`` (answered before it reads the body).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import orjson

CHAT = b"/v1/chat/completions"
EMBEDDINGS = b"/v1/embeddings"
SAFE_MODEL = "fake-model"
ERROR_MODEL = "fake-error-400"
UVICORN_400 = b"Invalid HTTP request received."
"""uvicorn's own answer to HTTP it cannot parse (it then closes the connection)."""

T = TypeVar("T")
_RAW = "@RAW@"
_RAW_NUMBERS = [
    b"1e400", b"-1e400", b"1E-400", b"123456789012345678901234567890", b"18446744073709551616",
    b"-9223372036854775809", b"9007199254740993", b"-0", b"-0.0", b"0.1e1", b"1" * 400,
]  # fmt: skip
_WEIRD_STRINGS = [
    "", " ", "\t\n\r\x0b\x0c", "\r\n hello \r\n", "\u0000", "a\u0000b", "\x7f\x1b[31mred",
    "e\u0301", "\u00e9", "\ufb01", "\u202eevil\u202c", "\u200b\u200c\u200d\u2060", "\ufeffbom",
    "\uffff\ufffe", "\U0010ffff", "\U000e0041\U000e007f",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f916" * 300, "\u0345\u0345\u0345", "\u216b", "\u0661\u0662\u0663", "\U0001d7d8",
    "\u0130\u0131", "\u00df", "\u01c5", "\u03a3\u03c2", "\u2028\u2029", "\u3000\u00a0\u2003",
    "x" * 20000, "word " * 3000, "<script>alert(1)</script>", "'; DROP TABLE x;--", "%s%n%x",
    "${jndi:ldap://127.0.0.1/x}", "../../etc/passwd", "\\u0000", "{{7*7}}", "null", "[DONE]",
    "data: [DONE]\n\n", "\ud7ff\ue000", "\U0001f1eb\U0001f1f7", "What is the capital of France?",
    "what is THE capital of france", "Was ist die Hauptstadt von Frankreich?", "\u0915\u094d\u0937",
    "\u4f60\u597d\u4e16\u754c", "\uac00\ub098\ub2e4", "\u05e9\u05dc\u05d5\u05dd",
    "\u0645\u0631\u062d\u0628\u0627",
]  # fmt: skip
_CODEPOINT_RANGES = [
    (0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x17F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
    (0x590, 0x6FF), (0x900, 0x97F), (0x2000, 0x206F), (0x3000, 0x303F), (0x4E00, 0x4FFF),
    (0xAC00, 0xAC80), (0xFE00, 0xFE0F), (0xFFF0, 0xFFFF), (0x1F300, 0x1F6FF), (0xE0000, 0xE007F),
    (0xF0000, 0xF00FF), (0x10FFF0, 0x10FFFF),
]  # fmt: skip
_CHAT_FIELDS = [
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens",
    "max_completion_tokens", "stop", "seed", "logit_bias", "logprobs", "top_logprobs", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "user", "metadata", "store",
    "service_tier", "presence_penalty", "frequency_penalty", "reasoning_effort", "modalities",
    "audio", "prediction", "functions", "function_call", "x_unknown_field",
]  # fmt: skip
_MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio"]
_EMBEDDING_FIELDS = ["model", "input", "encoding_format", "dimensions", "user", "x_unknown"]
_ROUTES = [CHAT, EMBEDDINGS, b"/v1/models", b"/healthz", b"/metrics", b"/cache/stats", b"/cache"]
_METHODS = [
    b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS", b"TRACE", b"CONNECT",
    b"FOO", b"get", b"PROPFIND", b"POST ", b"M-SEARCH",
]  # fmt: skip
_ODD_PATHS = [
    b"/v1/chat/completions/../x", b"/v1/chat/completions/", b"//v1/chat/completions",
    b"/V1/chat/completions", b"/v1/chat/completions?x=1&&=&%zz", b"/v1/chat%2fcompletions",
    b"/v1/chat/completions%00", b"/v1/chat/completions;a=b", b"/v1/chat/completions#frag",
    b"/v1/./chat/completions", b"/v1/%2e%2e/x", b"/v1/../v1/models", b"/v1", b"/v1/", b"/",
    b"*", b"http://evil.example/v1/models", b"/v1/" + b"a" * 8000, b"/v1/\xff\xfe",
    b"/v1/models?" + b"q" * 5000, b"/v1/embeddings/..", b"/healthz/..", b"/cache/stats?x",
    b"/v1/%u2215x", b"/v1/chat/completions\\..\\x", b"/v1/chat\x00/completions",
    b"/v1/chat/completions/%2e%2e/%2e%2e/x",
]  # fmt: skip
_CONTENT_TYPES = [
    b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
    b"application/json; charset=utf-16", b"application/json; charset=\xff", b"", b"*/*",
    b"application/xml", b"application/json, text/plain",
]  # fmt: skip
_TTL_VALUES = [
    b"", b"0", b"-1", b"1", b"1e3", b"3.5", b"99999999999999999999", b"315360001", b"abc",
    b"\xd9\xa1\xd9\xa2", b" 5 ", b"5, 6", b"0x10", b"+5", b"\xff",
]  # fmt: skip
_THRESHOLD_VALUES = [
    b"", b"nan", b"NaN", b"inf", b"-inf", b"0", b"-0", b"1", b"1.0000001", b"1e-400", b"0x1p-2",
    b"0.5abc", b"\xc2\xbd", b"0.9", b" 0.95 ", b"1e308", b"-1", b"0.5,0.6", b"9" * 400,
]  # fmt: skip
_CACHE_CONTROL = [
    b"no-cache", b"no-store", b"no-cache, no-store", b"max-age=-1", b"max-age=",
    b"max-age=99999999999999999999999", b"max-age=0", b"max-age=abc", b",,,", b"private",
    b"max-age=1, max-age=2", b"no-cache=\"x\"",
]  # fmt: skip
_AUTH_VALUES = [
    b"Bearer ", b"Bearer", b"bearer sk-x", b"Basic dXNlcjpwYXNz", b"Bearer " + b"k" * 10000,
    b"Bearer \xe2\x82\xac\xe2\x82\xac", b"Bearer sk-1, Bearer sk-2", b"Bearer\tsk-tab", b"\xff",
]  # fmt: skip
_BOOL_WORDS = [b"1", b"true", b"on", b"0", b"off", b"maybe", b"", b"TRUE", b"\xff"]


@dataclass(frozen=True, slots=True)
class Case:
    kind: str
    data: bytes
    half_close: bool = False
    """Close the sending side after ``data`` (a truncated body)."""
    answer_expected: bool = True
    """False where the server may rightly close without answering (truncated or oversized)."""

    @property
    def is_head(self) -> bool:
        return self.data.startswith(b"HEAD ")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass
class Tally:
    """What a fuzz run saw; ``samples`` keeps the first few problems of each sort."""

    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    no_answer: int = 0
    """A request that should have been answered got no reply (closed, partial, timed out)."""
    timeouts: int = 0
    server_5xx: int = 0
    server_500: int = 0
    non_openai_errors: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, problem: str, case: Case, detail: str) -> None:
        bucket = self.samples.setdefault(problem, [])
        if len(bucket) < 5:
            bucket.append(f"[{case.kind}] {case.data[:300]!r} -> {detail[:300]}")

    def add(self, case: Case, reply: Reply | str) -> None:
        self.requests += 1
        if isinstance(reply, str):
            if reply == "timeout":
                self.timeouts += 1
                self.note("timeout", case, reply)
            if case.answer_expected:
                self.no_answer += 1
                self.note("no_answer", case, reply)
            return
        self.statuses[reply.status] = self.statuses.get(reply.status, 0) + 1
        if reply.status >= 500:
            self.server_5xx += 1
            self.note(f"status_{reply.status}", case, repr(reply.body[:300]))
        if reply.status == 500:
            self.server_500 += 1
        problem = None if case.is_head else openai_error_problem(reply)
        if problem is not None:
            self.non_openai_errors += 1
            self.note("non_openai_error", case, f"{reply.status} {problem}: {reply.body[:200]!r}")


def openai_error_problem(reply: Reply) -> str | None:
    """Why a 4xx that semcache wrote itself is not ``{"error": {message, type, param, code}}``;
    None when it is, or when the reply is not semcache's (relayed from the upstream, which marks
    its answers ``x-upstream``, or uvicorn's own answer to unparsable HTTP)."""
    if not 400 <= reply.status < 500 or reply.header(b"x-upstream") is not None:
        return None
    if reply.body == UVICORN_400:
        return None
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return "not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(error, dict):
        return "not an {'error': {...}} object"
    if set(error) != {"message", "type", "param", "code"}:
        return f"error keys {sorted(error)}"
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        return "message or type is not a string"
    return None


# -- sending ----------------------------------------------------------------------------------


async def send(host: str, port: int, case: Case, *, reply_seconds: float = 5.0) -> Reply | str:
    """Send ``case`` on a new connection; the reply, or why there is none: ``refused``,
    ``closed`` (nothing came back), ``partial`` (an incomplete reply) or ``timeout``."""
    buffer = b""
    try:
        with anyio.fail_after(reply_seconds):
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                return "refused"
            async with stream:
                try:
                    await stream.send(case.data)
                    if case.half_close:
                        await stream.send_eof()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass  # the server may answer and close before taking everything
                while (reply := parse_reply(buffer, head=case.is_head)) is None:
                    try:
                        buffer += await stream.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        break
                else:
                    return reply
    except TimeoutError:
        return "timeout"
    reply = parse_reply(buffer, head=case.is_head, eof=True)
    if reply is not None:
        return reply
    return "closed" if not buffer else "partial"


def parse_reply(data: bytes, *, head: bool = False, eof: bool = False) -> Reply | None:
    """The first final response in ``data`` once it is complete (1xx responses skipped)."""
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = data[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return Reply(0, [], data) if eof else None
        status = int(parts[1])
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines[1:])
        ]
        rest = data[end + 4 :]
        if 100 <= status < 200:
            data = rest
            continue
        break
    if head or status in (204, 304):
        return Reply(status, headers, b"")
    values = dict(headers)
    if b"chunked" in values.get(b"transfer-encoding", b"").lower():
        body = _dechunk(rest)
        if body is None:
            return Reply(status, headers, rest) if eof else None
        return Reply(status, headers, body)
    length = values.get(b"content-length")
    if length is not None and length.isdigit():
        if len(rest) >= int(length):
            return Reply(status, headers, rest[: int(length)])
        return Reply(status, headers, rest) if eof else None
    return Reply(status, headers, rest) if eof else None


def _dechunk(data: bytes) -> bytes | None:
    """The body of a complete chunked encoding, or None while it is incomplete."""
    out = bytearray()
    while True:
        line_end = data.find(b"\r\n")
        if line_end < 0:
            return None
        size_text = data[:line_end].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return bytes(out)
        if size == 0:
            return bytes(out)
        if len(data) < line_end + 2 + size + 2:
            return None
        out += data[line_end + 2 : line_end + 2 + size]
        data = data[line_end + 2 + size + 2 :]


async def run(
    host: str,
    port: int,
    cases: list[Case],
    *,
    concurrency: int = 16,
    reply_seconds: float = 5.0,
    alive: Callable[[], bool] | None = None,
) -> Tally:
    """Send every case, ``concurrency`` at a time; stops early when ``alive()`` turns False."""
    tally = Tally()
    queue = iter(cases)

    async def worker() -> None:
        for case in queue:
            if alive is not None and tally.requests % 200 == 0 and not alive():
                return
            tally.add(case, await send(host, port, case, reply_seconds=reply_seconds))

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return tally


# -- building requests ------------------------------------------------------------------------


def request(
    method: bytes = b"POST",
    target: bytes = CHAT,
    body: bytes = b"",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes | None = b"application/json",
    length: bool = True,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    lines = [method + b" " + target + b" " + version, b"Host: 127.0.0.1", b"Connection: close"]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type)
    if length and (body or method not in (b"GET", b"HEAD")):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines += [name + b": " + value for name, value in headers or []]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def dumps(value: Any, rng: random.Random | None = None) -> bytes:
    """JSON with each ``@RAW@`` string replaced by a number orjson would not write."""
    data = orjson.dumps(value)
    while rng is not None and b'"' + _RAW.encode() + b'"' in data:
        data = data.replace(b'"' + _RAW.encode() + b'"', rng.choice(_RAW_NUMBERS), 1)
    return data


def weird_text(rng: random.Random, length: int | None = None) -> str:
    """Random text over scripts, combining marks, controls, specials and astral planes."""
    if rng.random() < 0.3:
        return rng.choice(_WEIRD_STRINGS)
    size = rng.randint(0, 60) if length is None else length
    chars = []
    for _ in range(size):
        low, high = rng.choice(_CODEPOINT_RANGES)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def nested(rng: random.Random, depth: int) -> Any:
    """``depth`` levels of arrays and objects around a leaf (at most 250 for orjson)."""
    value: Any = rng.choice([None, 1, "x", [], {}])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def pick(rng: random.Random, makers: Sequence[Callable[[], T]]) -> T:
    """The value of one of ``makers``, picked at random (only that one runs)."""
    return rng.choice(makers)()


def hostile(rng: random.Random) -> Any:
    """A JSON value of any type, often an unreasonable one."""
    return pick(
        rng,
        [
            lambda: None,
            lambda: rng.choice([True, False]),
            lambda: rng.choice([0, -1, 1, 2**63 - 1, -(2**63), 2**64 - 1, 3, 7]),
            lambda: rng.choice([1e308, -1e308, 5e-324, 0.5, -0.0, 1.5, 2.0]),
            lambda: _RAW,
            lambda: weird_text(rng),
            lambda: [],
            lambda: {},
            lambda: [hostile_leaf(rng) for _ in range(rng.randint(1, 4))],
            lambda: {weird_text(rng, 3): hostile_leaf(rng) for _ in range(rng.randint(1, 4))},
            lambda: nested(rng, rng.choice([5, 50, 200])),
            lambda: list(range(rng.choice([100, 2000]))),
        ],
    )


def hostile_leaf(rng: random.Random) -> Any:
    return rng.choice([None, True, 0, -1, 1.5, "", "x", weird_text(rng, 5), [], {}])


def chat_template(rng: random.Random, model: str = SAFE_MODEL) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": weird_text(rng)})
    if rng.random() < 0.2:
        messages += [
            {"role": "user", "content": weird_text(rng)},
            {"role": "assistant", "content": weird_text(rng)},
        ]
    messages.append({"role": "user", "content": weird_text(rng)})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if rng.random() < 0.3:
        body["stream"] = rng.choice([True, False, None])
    if rng.random() < 0.2:
        body["stream_options"] = {"include_usage": rng.choice([True, False, None, "yes"])}
    if rng.random() < 0.2:
        body["temperature"] = rng.choice([0, 0.0, 0.7, 1, 2.0, 1e-9])
    if rng.random() < 0.1:
        body["n"] = rng.choice([1, 2, 3])
    return body


def _mutate(rng: random.Random, body: dict[str, Any], fields: list[str]) -> set[str]:
    """Give 1-3 fields (or a first message's field) a hostile value; the names changed."""
    changed: set[str] = set()
    for _ in range(rng.randint(1, 3)):
        if "messages" in body and rng.random() < 0.3 and isinstance(body["messages"], list):
            message = body["messages"][-1] if body["messages"] else None
            if isinstance(message, dict):
                name = rng.choice(_MESSAGE_FIELDS)
                message[name] = hostile(rng)
                changed.add("messages." + name)
                continue
        name = rng.choice(fields)
        value = hostile(rng)
        if rng.random() < 0.05:
            body.pop(name, None)
        else:
            body[name] = value
        changed.add(name)
    return changed


# -- case generators --------------------------------------------------------------------------


def _bad_json(rng: random.Random) -> Case:
    valid = dumps(chat_template(rng))
    body = pick(
        rng,
        [
            lambda: rng.randbytes(rng.randint(1, 200)),
            lambda: valid[: rng.randint(0, len(valid) - 1)],
            lambda: valid + b"}garbage",
            lambda: b"\xef\xbb\xbf" + valid,
            lambda: valid.decode().encode("utf-16"),
            lambda: valid.replace(b'"content":"', b'"content":"\xff\xfe\xc0\xaf', 1),
            lambda: valid.replace(b'"content":"', b'"content":"\\ud800', 1),
            lambda: valid.replace(b'"content":"', b'"content":"\\udc00\\ud800', 1),
            lambda: valid.replace(b'"content":"', b'"content":"\x00\x01', 1),
            lambda: valid.replace(b'"model"', b'"model":1,"model"', 1),
            lambda: rng.choice([b"null", b"1", b'"x"', b"[]", b"[{}]", b"true", b"{}", b" "]),
            lambda: rng.choice([b"NaN", b"Infinity", b"-Infinity", b"{'model': 1}", b"{,}"]),
            lambda: (
                b'{"model":"fake-model","messages":[{"role":"user","content":"x"}],'
                b'"temperature":' + rng.choice(_RAW_NUMBERS) + b"}"
            ),
            lambda: b'{"model":"m" /* c */}',
            lambda: b"{" * 100000,
        ],
    )
    target = rng.choice([CHAT, CHAT, EMBEDDINGS])
    return Case("bad_json", request(b"POST", target, body))


def _defuse(body: dict[str, Any]) -> None:
    """Keep the fields the fake upstream reads sane when the request may reach its ordinary
    path (a huge ``n`` or ``dimensions`` would make it build a huge answer)."""
    if body.get("model") == ERROR_MODEL:
        return
    if body.get("n") not in (None, 1, 2, 3):
        body.pop("n")
    if not isinstance(body.get("stream_options", {}), dict):
        body.pop("stream_options")
    dims = body.get("dimensions")
    if dims is not None and not (type(dims) is int and 1 <= dims <= 64):
        body.pop("dimensions")


def _wrong_types_chat(rng: random.Random) -> Case:
    body = chat_template(rng)
    changed = _mutate(rng, body, _CHAT_FIELDS)
    if "model" not in changed and rng.random() < 0.5:
        body["model"] = ERROR_MODEL
    _defuse(body)
    return Case("wrong_types_chat", request(b"POST", CHAT, dumps(body, rng)))


def _wrong_types_embeddings(rng: random.Random) -> Case:
    body: dict[str, Any] = {"model": SAFE_MODEL, "input": rng.choice(["hi", ["a", "b"], [1, 2]])}
    changed = _mutate(rng, body, _EMBEDDING_FIELDS)
    if "model" not in changed and rng.random() < 0.5:
        body["model"] = ERROR_MODEL
    _defuse(body)
    return Case("wrong_types_embeddings", request(b"POST", EMBEDDINGS, dumps(body, rng)))


def nested_json(rng: random.Random, depth: int) -> bytes:
    """``depth`` levels of arrays and objects, as JSON text (orjson writes at most 255)."""
    opens: list[bytes] = []
    closes: list[bytes] = []
    for _ in range(depth):
        array = rng.random() < 0.5
        opens.append(b"[" if array else b'{"k":')
        closes.append(b"]" if array else b"}")
    return b"".join(opens) + b"1" + b"".join(reversed(closes))


def _deep(rng: random.Random) -> Case:
    depth = rng.choice([10, 100, 254, 255, 256, 300, 900, 1023, 1024, 1025, 5000])
    body = chat_template(rng, model=rng.choice([SAFE_MODEL, ERROR_MODEL]))
    where = rng.choice(["content", "field", "tools", "message"])
    if where == "content":
        body["messages"][-1]["content"] = "@DEEP@"
    elif where == "field":
        body["x_deep"] = "@DEEP@"
    elif where == "tools":
        body["tools"] = [{"type": "function", "function": {"parameters": "@DEEP@"}}]
    else:
        body["messages"].append("@DEEP@")
    data = dumps(body).replace(b'"@DEEP@"', nested_json(rng, depth))
    return Case("deep_nesting", request(b"POST", rng.choice([CHAT, EMBEDDINGS]), data))


def _unicode_chat(rng: random.Random) -> Case:
    body = chat_template(rng)
    if rng.random() < 0.3:
        body["messages"][-1]["content"] = [
            rng.choice(
                [
                    {"type": "text", "text": weird_text(rng)},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": hostile(rng)},
                    {"type": weird_text(rng, 4)},
                    hostile_leaf(rng),
                ]
            )
            for _ in range(rng.randint(0, 4))
        ]
    if rng.random() < 0.2:
        body["messages"][-1]["name"] = weird_text(rng, 8)
    if rng.random() < 0.2:
        body[weird_text(rng, 6)] = hostile_leaf(rng)
    return Case("unicode_chat", request(b"POST", CHAT, dumps(body)))


def _content_type(rng: random.Random) -> Case:
    body = dumps(chat_template(rng))
    if rng.random() < 0.2:
        body = body.decode().encode("utf-16-le")
    content_type = rng.choice([*_CONTENT_TYPES, None])
    return Case("content_type", request(b"POST", CHAT, body, content_type=content_type))


def _cache_headers(rng: random.Random) -> Case:
    choices = [
        (b"X-Cache-TTL", _TTL_VALUES),
        (b"X-Cache-Threshold", _THRESHOLD_VALUES),
        (b"Cache-Control", _CACHE_CONTROL),
        (b"X-Cache-Bypass", _BOOL_WORDS),
        (b"X-Cache-Semantic", _BOOL_WORDS),
        (b"Authorization", _AUTH_VALUES),
        (b"api-key", _AUTH_VALUES),
        (b"Accept-Encoding", [b"br, zstd", b"gzip;q=0", b"\xff", b"identity;q=0, *;q=0"]),
    ]
    headers = []
    for _ in range(rng.randint(1, 3)):
        name, values = rng.choice(choices)
        headers.append((name, rng.choice(values)))
    if rng.random() < 0.3:
        embedding = {"model": SAFE_MODEL, "input": rng.choice(["a b", ["x", weird_text(rng, 5)]])}
        return Case(
            "cache_headers", request(b"POST", EMBEDDINGS, dumps(embedding), headers=headers)
        )
    body = dumps(chat_template(rng))
    return Case("cache_headers", request(b"POST", CHAT, body, headers=headers))


def _bad_headers(rng: random.Random) -> Case:
    body = dumps(chat_template(rng))
    size = str(len(body)).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    extra = rng.choice(
        [
            b"Content-Length: " + size + b"\r\nContent-Length: " + size + b"\r\n",
            b"Content-Length: " + size + b"\r\nContent-Length: 3\r\n",
            b"Content-Length: " + size + b"\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length: -1\r\n",
            b"Content-Length: abc\r\n",
            b"Content-Length: 99999999999999999999999\r\n",
            b"Content-Length: " + size + b"\r\nX-Folded: a\r\n  folded\r\n",
            b"Content-Length: " + size + b"\r\nX-Nul: a\x00b\r\n",
            b"Content-Length: "
            + size
            + b"\r\nX-Big: "
            + b"a" * rng.choice([9000, 70000])
            + b"\r\n",
            b"Content-Length: " + size + b"\r\n" + b"X-Many: 1\r\n" * rng.choice([100, 2000]),
            b"Content-Length: " + size + b"\r\nBad Name: x\r\n",
            b"Content-Length: " + size + b"\r\n: empty-name\r\n",
            b"Content-Length: " + size + b"\r\nX-Space : x\r\n",
            b"Content-Length: " + size + b"\r\nNo-Colon\r\n",
            b"Content-Length: " + size + b"\r\nX-Utf8: \xe2\x82\xac\xff\r\n",
            b"Content-Length: "
            + size
            + b"\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n",
            b"Content-Length: " + size + b"\r\nX-Cache-TTL: 5\r\nX-Cache-TTL: abc\r\n",
            b"Content-Length: " + size + b"\r\nHost: other\r\n",
            b"Content-Length: " + size + b"\r\nExpect: 100-continue\r\n",
            b"Content-Length: " + size + b"\r\nTransfer-Encoding: gzip\r\n",
            b"Content-Length: " + size + b"\r\nContent-Encoding: gzip\r\n",
            b"Content-Length: " + size + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
            b"Content-Length: " + size + b"\r\nX-Lf-Only: x\n",
            b"Content-Length:" + size + b"\r\n",
            b"Content-Length: 0" + size + b"\r\n",
        ]
    )
    return Case("bad_headers", head + extra + b"\r\n" + body)


def _bad_http(rng: random.Random) -> Case:
    valid = request(b"POST", CHAT, dumps(chat_template(rng)))
    data = pick(
        rng,
        [
            lambda: b"GARBAGE\r\n\r\n",
            lambda: b"GET /healthz\r\n\r\n",
            lambda: b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
            lambda: b"GET /healthz HTTP/1.0\r\n\r\n",
            lambda: b"GET /healthz HTTP/1.1\r\n\r\n",
            lambda: b"GET /healthz HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
            lambda: b"GET  /healthz  HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            lambda: b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n",
            lambda: b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            lambda: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(64),
            lambda: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            lambda: rng.randbytes(rng.randint(1, 500)) + b"\r\n\r\n",
            lambda: b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" * 3,
            lambda: _pipelined(valid),
            lambda: _flip(rng, valid),
            lambda: _flip(rng, valid),
            lambda: _flip(rng, valid),
        ],
    )
    return Case("bad_http", data, answer_expected=False)


def _pipelined(valid: bytes) -> bytes:
    """A short body followed by a second request on the same connection."""
    head = valid[: valid.index(b"\r\n\r\n") + 4]
    head = head.replace(b"Content-Length: ", b"Content-Length: 2\r\nX-Was-Length: ", 1)
    return head + b"{}" + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    head_end = data.index(b"\r\n\r\n")
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(head_end)] = rng.randrange(256)
    return bytes(out)


def _truncated(rng: random.Random) -> Case:
    body = dumps(chat_template(rng))
    cut = body[: rng.randint(0, len(body) - 1)]
    if rng.random() < 0.5:
        data = request(b"POST", rng.choice([CHAT, EMBEDDINGS, b"/v1/files"]), b"")
        data = data.replace(b"Content-Length: 0", b"Content-Length: " + str(len(body)).encode())
        return Case("truncated", data + cut, half_close=True, answer_expected=False)
    chunked = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        + hex(len(body)).encode()[2:]
        + b"\r\n"
        + cut
    )
    return Case("truncated", chunked, half_close=True, answer_expected=False)


def _chunked(rng: random.Random) -> Case:
    body = dumps(chat_template(rng))
    pieces = []
    i = 0
    while i < len(body):
        n = rng.randint(1, 40)
        pieces.append(hex(len(body[i : i + n])).encode()[2:] + b"\r\n" + body[i : i + n] + b"\r\n")
        i += n
    trailer = rng.choice(
        [b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", b"zz\r\n\r\n", b"0;ext=1\r\n\r\n"]
    )
    data = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        + b"".join(pieces)
        + trailer
    )
    return Case("chunked", data, answer_expected=trailer != b"zz\r\n\r\n")


def _methods(rng: random.Random) -> Case:
    method = rng.choice(_METHODS)
    target = rng.choice(_ROUTES)
    body = dumps(chat_template(rng)) if rng.random() < 0.5 else b""
    # An unparsable method is uvicorn's to refuse.
    parsable = method.isupper() and method.isalpha()
    return Case("methods", request(method, target, body), answer_expected=parsable)


def _paths(rng: random.Random) -> Case:
    method = rng.choice([b"GET", b"POST", b"DELETE", b"HEAD"])
    body = dumps(chat_template(rng)) if method == b"POST" else b""
    return Case("paths", request(method, rng.choice(_ODD_PATHS), body))


def _oversized(rng: random.Random, max_body_bytes: int) -> Case:
    body = dumps(chat_template(rng))
    padding = b" " * (max_body_bytes + 1 - len(body) + rng.randint(0, 1000))
    body = body[:-1] + padding + b"}"
    target = rng.choice([CHAT, EMBEDDINGS])
    if rng.random() < 0.5:
        return Case("oversized", request(b"POST", target, body), answer_expected=False)
    data = (
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        + hex(len(body)).encode()[2:]
        + b"\r\n"
        + body
        + b"\r\n0\r\n\r\n"
    )
    return Case("oversized", data, answer_expected=False)


def corpus(n: int, *, seed: int = 0, max_body_bytes: int = 64 * 1024) -> list[Case]:
    """``n`` cases, the same for the same arguments. ``max_body_bytes`` is the proxy's
    ``SEMCACHE_MAX_BODY_BYTES``: oversized cases go just past it."""
    rng = random.Random(seed)
    generators: list[tuple[Callable[[random.Random], Case], int]] = [
        (_bad_json, 14),
        (_wrong_types_chat, 20),
        (_wrong_types_embeddings, 8),
        (_deep, 4),
        (_unicode_chat, 14),
        (_content_type, 3),
        (_cache_headers, 10),
        (_bad_headers, 6),
        (_bad_http, 5),
        (_truncated, 3),
        (_chunked, 3),
        (_methods, 5),
        (_paths, 4),
        (lambda r: _oversized(r, max_body_bytes), 1),
    ]
    functions = [g for g, _ in generators]
    weights = [w for _, w in generators]
    return [rng.choices(functions, weights)[0](rng) for _ in range(n)]
