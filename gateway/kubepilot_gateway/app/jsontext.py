"""JSON request bodies no handler can process safely, refused before any handler runs.

Python's JSON reader accepts two things that later break code written for ordinary text: a lone
surrogate escape (``"\\ud800"``: a str that UTF-8 cannot encode, so writing it to a file, a header,
a Secret or a log line raises halfway through an operation) and nesting deeper than a recursive
walk can follow (``RecursionError`` in a validation echo, a ``str()`` or the reader itself): a
body nested deeper than ``MAX_DEPTH`` is refused. Each route would have to guard every string it
touches; instead every profile app refuses such a body up front with the profile's own bad-input
status and error shape (``install_error_envelope`` installs this guard), so nothing is half done.

Only JSON bodies (``application/json`` or ``+json``) are read here, and only up to
``MAX_CHECKED_BYTES``: a larger one goes to its route unchecked (the routes that take large
bodies take uploads, which are not JSON). Malformed JSON is left to the route, which answers it as
its product documents.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_CHECKED_BYTES = 8 * 2**20
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 64
"""Deeper than any of the five products' documents (a ComfyUI workflow is about 4 deep), shallow
enough for every recursive walk (validation echoes, ``str()``, ``json.dumps``)."""
LONE_SURROGATE = "The request body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text"
TOO_DEEP = "The request body is nested too deeply"


def json_text_problem(raw: bytes) -> str | None:
    """Why ``raw`` cannot be processed safely, or None (also for malformed JSON: the route's to say)."""
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except RecursionError:
        return TOO_DEEP
    except ValueError:
        return None
    # Cheap exclusions first: fewer brackets than the depth limit, no escape and no UTF-8-encoded
    # surrogate in the bytes (most bodies) need no walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nested_deeper_than(value, MAX_DEPTH):
        return TOO_DEEP
    if (b"\\u" in raw or b"\xed" in raw) and has_lone_surrogate(value):
        return LONE_SURROGATE
    return None


def has_lone_surrogate(value: Any) -> bool:
    """Whether a text in ``value`` (a key or a value at any depth, walked without recursion) holds a
    lone surrogate: what JSON's reader makes of a ``"\\ud800"`` escape that has no pair."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists or objects more than ``limit`` levels (walked without recursion:
    it may be as deep as the JSON reader goes)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list | tuple):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = bytes(value).split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class JsonTextGuard:
    """ASGI middleware: answers ``respond(request, message)`` for a JSON body that cannot be text."""

    def __init__(self, app: ASGIApp, respond: Any) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        size, more = 0, True
        while more and size <= MAX_CHECKED_BYTES:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = bool(message.get("more_body", False))
        if not more and received and received[-1]["type"] == "http.request":
            problem = json_text_problem(b"".join(m.get("body", b"") for m in received))
            if problem is not None:
                response = self.respond(Request(scope), problem)
                await response(scope, receive, send)
                return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)
