"""Forwarding one request to a replica of a function, within the function's deadline.

All requests share one aiohttp session (a pool of keep-alive connections).
Only the headers a function needs go in, only the useful ones come back:
hop-by-hop and any other header stays behind. A replica that refuses or drops
the connection is marked unhealthy at once; the request is tried once more on
another replica when nothing reached the first or the method is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from urllib.parse import unquote

import aiohttp
import falcon
import falcon.asgi
from yarl import URL

from gateway.balancer import Balancer
from gateway.registry import Registry, Replica
from runner.app import TIMEOUT_HEADER

log = logging.getLogger("tombola.gateway")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
IDEMPOTENT = frozenset({"GET", "HEAD"})
REQUEST_HEADERS = ("Content-Type", "If-None-Match", "If-Modified-Since")
RESPONSE_HEADERS = ("Content-Type", "ETag", "Cache-Control", "Last-Modified", "Retry-After")
ATTEMPTS = 2


class ReplicaConnectionError(Exception):
    """The connection to a replica failed; ``delivered`` tells whether the request may have reached it."""

    def __init__(self, replica: Replica, error: Exception, delivered: bool) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.replica = replica
        self.delivered = delivered


def split_path(req: falcon.asgi.Request, skip: int = 0) -> tuple[str, str]:
    """The first path segment after ``skip`` segments (decoded) and the rest of the path (as sent).

    ``/srvi/user/42`` gives ``("srvi", "/user/42")``; ``/fn/w/play/7`` with
    ``skip=1`` gives ``("w", "/play/7")``. The rest keeps its percent-encoding.
    """
    raw = req.scope.get("raw_path") or req.path.encode()
    try:
        segments = raw.decode("ascii").split("/", skip + 2)[1:]
    except UnicodeDecodeError:
        raise falcon.HTTPBadRequest(title="Invalid path", description="The path must be percent-encoded ASCII.") from None
    if len(segments) <= skip:
        return "", "/"
    rest = "/" + segments[skip + 1] if len(segments) > skip + 1 else "/"
    return unquote(segments[skip]), rest


class Proxy:
    """Sends requests to the replicas of the registry's functions."""

    def __init__(self, registry: Registry, balancer: Balancer, session: aiohttp.ClientSession, max_body: int) -> None:
        self.registry = registry
        self.balancer = balancer
        self.session = session
        self.max_body = max_body

    async def forward(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, function: str, path: str) -> None:
        """Answer ``req`` with what a replica of ``function`` answers for ``path``."""
        manifest = self.registry.function(function)
        if manifest is None:
            raise falcon.HTTPNotFound(title="Unknown function", description=f"No function is named {function!r}.")
        if req.method not in METHODS:
            raise falcon.HTTPMethodNotAllowed(sorted(METHODS))
        budget = self._budget(req, manifest.limits.timeout)
        deadline = asyncio.get_running_loop().time() + budget
        body = await self._body(req)
        headers = {name: value for name in REQUEST_HEADERS if (value := req.get_header(name))}
        target = path + (f"?{req.query_string}" if req.query_string else "")
        tried: list[Replica] = []
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    replica = self.balancer.choose(self.registry.replicas(function), exclude=tried)
                    if replica is None:
                        raise falcon.HTTPServiceUnavailable(
                            title="No replica available",
                            description=f"Function {function} has no healthy replica right now; retry shortly.",
                            retry_after=1,
                        )
                    tried.append(replica)
                    try:
                        status, answer_headers, data = await self._send(replica, req.method, target, headers, body, deadline)
                        break
                    except ReplicaConnectionError as failure:
                        self.registry.set_health(replica, False, str(failure))
                        log.warning("replica failed", extra={"function": function, "replica": replica.id, "error": str(failure)})
                        if len(tried) >= ATTEMPTS or (failure.delivered and req.method not in IDEMPOTENT):
                            raise falcon.HTTPBadGateway(
                                title="Replica failed",
                                description=f"A replica of {function} dropped the connection before answering.",
                            ) from None
        except TimeoutError:
            raise falcon.HTTPGatewayTimeout(
                title="Function timed out",
                description=f"Function {function} did not answer within {budget:.1f} s.",
            ) from None
        resp.status = status
        resp.data = data
        for name in RESPONSE_HEADERS:
            if name in answer_headers:
                resp.set_header(name, answer_headers[name])

    async def _send(
        self, replica: Replica, method: str, target: str, headers: dict[str, str], body: bytes, deadline: float
    ) -> tuple[int, Mapping[str, str], bytes]:
        remaining = deadline - asyncio.get_running_loop().time()
        replica.in_flight += 1
        try:
            async with self.session.request(
                method,
                URL(replica.url + target, encoded=True),
                headers={**headers, TIMEOUT_HEADER: f"{remaining:.3f}"},
                data=body or None,
                allow_redirects=False,
            ) as answer:
                return answer.status, answer.headers, await answer.read()
        except aiohttp.ClientConnectorError as error:
            raise ReplicaConnectionError(replica, error, delivered=False) from error
        except aiohttp.ClientError as error:  # dropped, reset or answered with something that is not HTTP
            raise ReplicaConnectionError(replica, error, delivered=True) from error
        finally:
            replica.in_flight -= 1

    def _budget(self, req: falcon.asgi.Request, timeout: float) -> float:
        """The function's timeout, or the smaller one the client asked for."""
        raw = req.get_header(TIMEOUT_HEADER)
        if raw is None:
            return timeout
        try:
            asked = float(raw)
        except ValueError:
            asked = math.nan
        if not math.isfinite(asked) or asked <= 0:
            raise falcon.HTTPInvalidHeader("It must be a positive number of seconds.", TIMEOUT_HEADER)
        return min(asked, timeout)

    async def _body(self, req: falcon.asgi.Request) -> bytes:
        """The request body, refused when larger than the limit."""
        too_large = falcon.HTTPContentTooLarge(
            title="Body too large",
            description=f"Request bodies are limited to {self.max_body} bytes.",
        )
        if req.content_length is not None and req.content_length > self.max_body:
            raise too_large
        body = await req.stream.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise too_large
        return body
