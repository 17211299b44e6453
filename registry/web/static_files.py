"""The pages' stylesheet and script, served from the package (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"


class StaticAssets(StaticFiles):
    """Static files with ``nosniff`` and an hour of browser caching."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the file, adding the headers to its answer."""

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"cache-control", b"public, max-age=3600"))
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, with_headers)
