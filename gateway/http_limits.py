"""Bounds on the request head, in the HTTP/1.1 protocol of both listeners.

uvicorn's httptools protocol buffers a request line and header fields of any
size. This one answers a JSON 414 when the request target is longer than
MAX_TARGET and a JSON 431 when the head (request line and fields) is larger
than MAX_HEAD, then closes the connection: a client cannot make the gateway
hold megabytes of headers. A complete head is measured exactly; one still
arriving by the bytes received since its request began (a chunk that also
ends a pipelined request counts whole: browsers do not pipeline), so an
endless head is refused without waiting for its end. A request that is not
HTTP gets a JSON 400 instead of uvicorn's plain-text one.

Its writes go out once per turn of the event loop (gateway.coalescing).
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.coalescing import CoalescingTransport

MAX_TARGET = 8 * 1024
MAX_HEAD = 32 * 1024
FIELD_OVERHEAD = 4  # ": " and CRLF around each header field
TOO_LONG = (414, "URI too long", f"The request target is limited to {MAX_TARGET} bytes.")
TOO_LARGE = (431, "Headers too large", f"The request line and headers are limited to {MAX_HEAD} bytes.")
INVALID = (400, "Invalid HTTP request", "The request is not valid HTTP/1.1.")


class HeadRefused(Exception):
    """The request head is past a bound; raised in a parser callback to stop parsing."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head."""

    _refusal: tuple[int, str, str] | None = None
    _in_head = False
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(name) + len(value) + FIELD_OVERHEAD for name, value in self.headers)
        self._refusal = TOO_LONG if len(self.url) > MAX_TARGET else TOO_LARGE if size > MAX_HEAD else None
        if self._refusal is not None:
            raise HeadRefused(self._refusal[1])  # uvicorn turns a callback's error into send_400_response
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._refusal = TOO_LARGE
                self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        """Answer the refusal as JSON, or a JSON 400 for a request that is not HTTP; then close."""
        status, title, description = self._refusal or INVALID
        body = json.dumps({"title": title, "description": description}).encode()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ])
        self.transport.write(b"".join(content))
        self.transport.close()
