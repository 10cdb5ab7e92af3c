"""The gateway's two ASGI apps, sharing one registry and one proxy.

- public: the page (``/``, ``/static/{name}``), the public functions by their
  prefix (``/srvi/user/42`` → i ``/user/42``; writes rate-limited per client,
  gateway.ratelimit), ``/healthz`` and ``/openapi.json`` (gateway.public_openapi);
  private functions are not reachable from it. Browsers get security headers
  and same-origin writes only (gateway.security).
- internal: ``/fn/{function}/...`` → any function (how B reaches W) and
  ``/healthz``.

The control plane (``/v1``, gateway.control_api) is on the internal app, and
on the public one too when ``GatewayConfig.control_public`` is set: the
gateway passes it to both factories, or to the internal one only. Prometheus'
``/metrics`` goes with it. The health page (``/status``, ``/status.json``,
gateway.status) is on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import falcon
import falcon.asgi

from gateway import errors
from gateway.assets import StaticFiles
from gateway.metrics import MetricsResource
from gateway.proxy import Proxy, split_path
from gateway.public_openapi import PublicOpenApiDocument
from gateway.ratelimit import PlayLimit
from gateway.registry import Registry
from gateway.security import SAFE_METHODS, SameOrigin, SecurityHeaders
from gateway.status import StatusJson, StatusPage, StatusReport

if TYPE_CHECKING:
    from gateway.control_api import ControlApi


class GatewayHealth:
    """``GET /healthz``: ok when every function has at least one healthy replica, or is scaled to zero."""

    def __init__(self, registry: Registry, status: StatusReport | None = None) -> None:
        self.registry = registry
        self.status = status

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        functions = self.registry.status()
        healthy = all(
            counts["healthy"] >= 1 or (self.status is not None and self.status.asleep(name))
            for name, counts in functions.items()
        )
        resp.cache_control = ["no-store"]
        resp.media = {"status": "ok" if healthy else "degraded", "functions": functions}


def _http_only(resp: falcon.asgi.Response | None) -> falcon.asgi.Response:
    """The response of an HTTP request; sinks get none for a WebSocket, which the gateway refuses."""
    if not isinstance(resp, falcon.asgi.Response):
        raise falcon.HTTPBadRequest(title="HTTP only", description="The gateway forwards HTTP requests only.")
    return resp


class PublicFunctions:
    """Sink of the public app: ``/srv<x>/...`` → the function published at ``/srv<x>``; writes within ``limit``."""

    def __init__(self, registry: Registry, proxy: Proxy, limit: PlayLimit | None = None) -> None:
        self.registry = registry
        self.proxy = proxy
        self.limit = limit

    async def __call__(self, req: falcon.asgi.Request, resp: falcon.asgi.Response | None, **params: Any) -> None:
        segment, path = split_path(req)
        manifest = self.registry.published(f"/{segment}")
        if manifest is None:
            raise falcon.HTTPNotFound(title="Not found", description="Nothing is published at this path.")
        if self.limit is not None and req.method not in SAFE_METHODS:
            self.limit.check(req)
        await self.proxy.forward(req, _http_only(resp), manifest.name, path)


class InternalFunctions:
    """Sink of the internal app: ``/fn/{function}/...`` → any function, private ones included."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def __call__(self, req: falcon.asgi.Request, resp: falcon.asgi.Response | None, **params: Any) -> None:
        function, path = split_path(req, skip=1)
        await self.proxy.forward(req, _http_only(resp), function, path)


def create_public_app(
    registry: Registry,
    proxy: Proxy,
    control: ControlApi | None = None,
    status: StatusReport | None = None,
    limit: PlayLimit | None = None,
) -> falcon.asgi.App:
    """The app of the public listener (with ``/v1`` and ``/metrics`` when ``control`` is given)."""
    app = falcon.asgi.App(middleware=[SecurityHeaders(), SameOrigin()], cors_enable=False)
    errors.install(app)
    if control is not None:
        control.install(app)
        app.add_route("/metrics", MetricsResource(proxy.metrics))
    if status is not None:
        app.add_route("/status", StatusPage(status, internal=False))
        app.add_route("/status.json", StatusJson(status, internal=False))
    static = StaticFiles()
    app.add_route("/", static, suffix="index")
    app.add_route("/static/{name}", static)
    app.add_route("/healthz", GatewayHealth(registry, status))
    app.add_route("/openapi.json", PublicOpenApiDocument())
    app.add_sink(PublicFunctions(registry, proxy, limit), prefix="/")
    return app


def create_internal_app(
    registry: Registry, proxy: Proxy, control: ControlApi | None = None, status: StatusReport | None = None
) -> falcon.asgi.App:
    """The app of the internal listener (loopback or private network only), with ``/v1`` when ``control`` is given."""
    app = falcon.asgi.App(cors_enable=False)
    errors.install(app)
    if control is not None:
        control.install(app)
    app.add_route("/metrics", MetricsResource(proxy.metrics))
    if status is not None:
        app.add_route("/status", StatusPage(status, internal=True))
        app.add_route("/status.json", StatusJson(status, internal=True))
    app.add_route("/healthz", GatewayHealth(registry, status))
    app.add_sink(InternalFunctions(proxy), prefix=r"/fn(/|$)")
    return app
