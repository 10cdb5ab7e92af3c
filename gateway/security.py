"""What the public listener does for browsers: security headers, same origin only.

No answer ever carries a CORS header (``Access-Control-Allow-*``): the page
and the functions share one origin, which needs none, so another site's
script can neither read an answer nor get a preflight through. A form or a
script on another site may still *send* a simple POST (no preflight), so a
write whose ``Origin`` is not the gateway's own is refused with 403: another
site cannot play for its visitors. Programs send no Origin and are not
concerned.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import falcon
import falcon.asgi

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SecurityHeaders:
    """Middleware: adds HEADERS to every response, errors included."""

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_headers(HEADERS)


def same_origin(origin: str, host: str | None) -> bool:
    """True when the ``Origin`` header names the site at ``host`` (the request's Host header)."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == (host or "").lower()


class SameOrigin:
    """Middleware: a write sent from a page of another origin (or an opaque ``null`` one) gets 403."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        origin = req.get_header("Origin")
        if req.method in SAFE_METHODS or origin is None or same_origin(origin, req.get_header("Host")):
            return
        raise falcon.HTTPForbidden(
            title="Cross-origin request",
            description="This gateway takes writes from its own pages only.",
        )
