"""Forwarding one request to a replica of a function, within the function's deadline.

All requests share one aiohttp session (a pool of keep-alive connections).
Only the headers a function needs go in, only the useful ones come back:
hop-by-hop and any other header stays behind. A replica that refuses or drops
the connection is marked unhealthy at once; the request is tried once more on
another replica when nothing reached the first or the method is idempotent.

Every request carries an ``X-Request-Id`` to the replica and back (the
client's own when it is sane, else a new one) and is measured (see
gateway.metrics). A function with no replica left (scaled to zero) is woken
up: the request waits, within its deadline, for a replica to start.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import unquote

import aiohttp
import falcon
import falcon.asgi
from yarl import URL

from gateway.balancer import Balancer
from gateway.metrics import FunctionMetrics, Metrics
from gateway.registry import Registry, Replica
from runner.app import REQUEST_ID, REQUEST_ID_HEADER, TIMEOUT_HEADER
from runner.manifest import Manifest

log = logging.getLogger("tombola.gateway")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
IDEMPOTENT = frozenset({"GET", "HEAD"})
REQUEST_HEADERS = ("Content-Type", "If-None-Match", "If-Modified-Since")
RESPONSE_HEADERS = ("Content-Type", "ETag", "Cache-Control", "Last-Modified", "Retry-After", "Allow")
ATTEMPTS = 2


class ReplicaStarter(Protocol):
    """What wakes a function up (the control plane)."""

    async def ensure_replica(self, name: str, timeout: float) -> bool:
        """Start a replica of ``name`` unless one is starting; True once one is available within ``timeout``."""
        ...


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


def request_id(req: falcon.asgi.Request) -> str:
    """The client's ``X-Request-Id`` when the replicas accept it (``runner.app.REQUEST_ID``); else a new uuid4 in hex."""
    sent = req.get_header(REQUEST_ID_HEADER)
    if sent is not None and REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


class Proxy:
    """Sends requests to the replicas of the registry's functions, and measures them."""

    def __init__(
        self,
        registry: Registry,
        balancer: Balancer,
        session: aiohttp.ClientSession,
        max_body: int,
        metrics: Metrics | None = None,
        starter: ReplicaStarter | None = None,
    ) -> None:
        self.registry = registry
        self.balancer = balancer
        self.session = session
        self.max_body = max_body
        self.metrics = metrics or Metrics(registry)
        self.starter = starter
        self._waking: dict[str, int] = {}  # requests waiting for a cold start, per function

    async def forward(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, function: str, path: str) -> None:
        """Answer ``req`` with what a replica of ``function`` answers for ``path``."""
        manifest = self.registry.function(function)
        if manifest is None:
            raise falcon.HTTPNotFound(title="Unknown function", description=f"No function is named {function!r}.")
        identifier = request_id(req)
        resp.set_header(REQUEST_ID_HEADER, identifier)
        measures = self.metrics.function(function)
        started = measures.started()
        version, code = "", 500
        try:
            version, code = await self._forward(req, resp, manifest, path, identifier, measures)
        except falcon.HTTPError as error:
            code = error.status_code
            raise
        finally:
            measures.finished(started, version, code)

    async def _forward(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        manifest: Manifest,
        path: str,
        identifier: str,
        measures: FunctionMetrics,
    ) -> tuple[str, int]:
        """Forward ``req``; return the version of the replica that answered and its status."""
        if req.method not in METHODS:
            raise falcon.HTTPMethodNotAllowed(sorted(METHODS))
        function = manifest.name
        budget = self._budget(req, manifest.limits.timeout)
        deadline = asyncio.get_running_loop().time() + budget
        body = await self._body(req)
        headers = {name: value for name in REQUEST_HEADERS if (value := req.get_header(name))}
        headers[REQUEST_ID_HEADER] = identifier
        target = path + (f"?{req.query_string}" if req.query_string else "")
        waiting = time.monotonic()
        replica = await self._first_replica(function, measures, deadline)
        measures.queue_wait.observe(time.monotonic() - waiting)
        tried = [replica]
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    try:
                        status, answer_headers, data = await self._send(replica, req.method, target, headers, body, deadline)
                        break
                    except ReplicaConnectionError as failure:
                        self.registry.set_health(replica, False, str(failure))
                        log.warning("replica failed", extra={"function": function, "replica": replica.id, "error": str(failure)})
                        if len(tried) >= ATTEMPTS or (failure.delivered and req.method not in IDEMPOTENT):
                            measures.errors["connect"].inc()
                            raise falcon.HTTPBadGateway(
                                title="Replica failed",
                                description=f"A replica of {function} dropped the connection before answering.",
                            ) from None
                    next_replica = self.balancer.choose(self.registry.replicas(function), exclude=tried)
                    if next_replica is None:
                        raise self._unavailable(function, measures, "has no other healthy replica right now")
                    replica = next_replica
                    tried.append(replica)
        except TimeoutError:
            measures.errors["timeout"].inc()
            raise falcon.HTTPGatewayTimeout(
                title="Function timed out",
                description=f"Function {function} did not answer within {budget:.1f} s.",
            ) from None
        if status >= 500:
            measures.errors["replica_5xx"].inc()
        resp.status = status
        resp.data = data
        for name in RESPONSE_HEADERS:
            if name in answer_headers:
                resp.set_header(name, answer_headers[name])
        return str(replica.version), status

    async def _first_replica(self, function: str, measures: FunctionMetrics, deadline: float) -> Replica:
        """A replica for a new request; when the function has none left, wait for one to start."""
        replicas = self.registry.replicas(function)
        replica = self.balancer.choose(replicas)
        if replica is not None:
            return replica
        if self.starter is None or not all(other.draining for other in replicas):
            raise self._unavailable(function, measures, "has no healthy replica right now")  # they may recover
        waiting = self._waking.get(function, 0)
        if waiting == 0:
            measures.cold_starts.inc()
        self._waking[function] = waiting + 1
        timeout = deadline - asyncio.get_running_loop().time()
        try:
            started = await self.starter.ensure_replica(function, timeout)
        finally:
            self._waking[function] -= 1
        replica = self.balancer.choose(self.registry.replicas(function)) if started else None
        if replica is None:
            raise self._unavailable(function, measures, f"has no replica and none could start within {timeout:.1f} s")
        return replica

    @staticmethod
    def _unavailable(function: str, measures: FunctionMetrics, reason: str) -> falcon.HTTPServiceUnavailable:
        """Count a request that no replica may take; the 503 to raise."""
        measures.errors["no_replica"].inc()
        return falcon.HTTPServiceUnavailable(
            title="No replica available",
            description=f"Function {function} {reason}; retry shortly.",
            retry_after=1,
        )

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
