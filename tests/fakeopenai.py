"""A scripted OpenAI-compatible server on 127.0.0.1 for tests.

Each POST to ``/v1/chat/completions`` takes the next scripted reply; the
requests are recorded so tests can assert what the client sent.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import LoopbackServer


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False  # drop the connection (TCP RST) instead of answering
    truncate: bool = False  # announce the whole body, send half of it, then close


def completion(
    content: str | None,
    finish_reason: str = "stop",
    prompt_tokens: int = 100,
    completion_tokens: int = 50,
    refusal: str | None = None,
) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def answer(data: dict[str, Any], **kwargs: Any) -> Reply:
    return completion(json.dumps(data), **kwargs)


def error(status: int, message: str = "scripted error", headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": "scripted"}}, headers=headers or {})


class FakeOpenAI(LoopbackServer):
    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default: Reply | None = None  # answered when the script is empty
        self.responder: Callable[[dict[str, Any]], Reply] | None = None  # chooses a reply per request
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.request_times: list[float] = []
        self.in_flight = 0  # requests received and not yet answered
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                with server.lock:
                    server.in_flight += 1
                try:
                    self.reply(raw)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def reply(self, raw: bytes) -> None:
                with server.lock:
                    server.requests.append(json.loads(raw or b"{}"))
                    server.request_times.append(time.monotonic())
                    if server.script:
                        reply = server.script.popleft()
                    elif server.responder is not None:
                        reply = server.responder(server.requests[-1])
                    else:
                        reply = server.default or error(500, "script exhausted")
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                body = reply.body if isinstance(reply.body, (bytes, str)) else json.dumps(reply.body)
                data = body.encode() if isinstance(body, str) else body
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2] if reply.truncate else data)
                    if reply.truncate:
                        self.wfile.flush()
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.serve(Handler)

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)


FAULT_KINDS = (
    "429-retry-after",
    "429",
    "500",
    "502",
    "503",
    "reset",
    "slow",
    "truncated",
    "length",
    "refusal",
    "invalid-json",
    "schema-invalid",
    "empty-choices",
)


def empty_choices() -> Reply:
    reply = completion("{}")
    reply.body["choices"] = []
    return reply


def fault_reply(kind: str, slow_seconds: float) -> Reply:
    """The reply that injects one kind of fault."""
    replies: dict[str, Callable[[], Reply]] = {
        "429-retry-after": lambda: error(429, "rate limited", {"retry-after": "1"}),
        "429": lambda: error(429, "rate limited"),
        "500": lambda: error(500, "internal error"),
        "502": lambda: error(502, "bad gateway"),
        "503": lambda: error(503, "overloaded"),
        "reset": lambda: Reply(reset=True),
        "slow": lambda: Reply(body=completion("{}").body, delay=slow_seconds),
        "truncated": lambda: Reply(body=completion('{"claims": []}').body, truncate=True),
        "length": lambda: completion('{"key_facts": ["cut', finish_reason="length"),
        "refusal": lambda: completion(None, refusal="I can't help with that."),
        "invalid-json": lambda: completion("{'claims': [oops"),
        "schema-invalid": lambda: answer({"claims": "not a list", "key_facts": 7}),
        "empty-choices": empty_choices,
    }
    return replies[kind]()


class FaultInjector:
    """A responder that answers well, except at ``rate``, when it injects a fault.

    Faults take the ``kinds`` in turn, reshuffled each round, so every kind shows up in a short run.
    """

    def __init__(
        self,
        good: Callable[[dict[str, Any]], Reply],
        rate: float,
        kinds: tuple[str, ...] = FAULT_KINDS,
        seed: int = 0,
        slow_seconds: float = 2.0,
    ) -> None:
        self.good = good
        self.rate = rate
        self.kinds = kinds
        self.random = random.Random(seed)
        self.slow_seconds = slow_seconds
        self.injected: dict[str, int] = {}
        self.answered = 0
        self.round: list[str] = []

    def __call__(self, request: dict[str, Any]) -> Reply:
        if self.random.random() < self.rate:
            if not self.round:
                self.round = self.random.sample(self.kinds, len(self.kinds))
            kind = self.round.pop()
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return fault_reply(kind, self.slow_seconds)
        self.answered += 1
        return self.good(request)
