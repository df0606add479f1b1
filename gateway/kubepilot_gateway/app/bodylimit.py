"""Request bodies bounded as they arrive: a route class that answers 413 past a byte limit.

Uploads (dataset zips, pictures to edit) are streamed to disk, so a body too large must be refused
before it fills the disk or the memory: at once when its Content-Length says so, else as soon as
that many bytes have arrived (a chunked upload declares no length). The 413's text is the
profile's own, as its product words it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message


def size_limited_route(limit: int, too_large: Callable[[int], HTTPException]) -> type[APIRoute]:
    """A route class refusing a body over ``limit`` bytes with ``too_large(limit)`` (a 413)."""

    class SizeLimitedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def limited(request: Request) -> Response:
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise too_large(limit)
                receive = request.receive
                received = 0

                async def counted() -> Message:
                    nonlocal received
                    message = await receive()
                    if message["type"] == "http.request":
                        received += len(message.get("body", b""))
                        if received > limit:
                            raise too_large(limit)
                    return message

                return await handler(Request(request.scope, counted))

            return limited

    return SizeLimitedRoute
