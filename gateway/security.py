"""Security headers on every public answer; same-origin only, so no CORS header ever."""

from __future__ import annotations

from typing import Any

import falcon.asgi

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Middleware: adds HEADERS to every response, errors included."""

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_headers(HEADERS)
