"""The gateway's two ASGI apps, sharing one registry and one proxy.

- public: the page (``/``, ``/static/{name}``), the public functions by their
  prefix (``/srvi/user/42`` → i ``/user/42``) and ``/healthz``; private
  functions are not reachable from it.
- internal: ``/fn/{function}/...`` → any function (how B reaches W) and
  ``/healthz``.

The control plane (``/v1``, not built yet) belongs on the internal app, and on
the public one too when ``GatewayConfig.control_public`` is set: add its routes
in both factories below. ``/v1`` is already a reserved prefix.
"""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from gateway import errors
from gateway.assets import StaticFiles
from gateway.proxy import Proxy, split_path
from gateway.registry import Registry
from gateway.security import SecurityHeaders


class GatewayHealth:
    """``GET /healthz``: ok when every function has at least one healthy replica."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        functions = self.registry.status()
        healthy = all(counts["healthy"] >= 1 for counts in functions.values())
        resp.cache_control = ["no-store"]
        resp.media = {"status": "ok" if healthy else "degraded", "functions": functions}


def _http_only(resp: falcon.asgi.Response | None) -> falcon.asgi.Response:
    """The response of an HTTP request; sinks get none for a WebSocket, which the gateway refuses."""
    if not isinstance(resp, falcon.asgi.Response):
        raise falcon.HTTPBadRequest(title="HTTP only", description="The gateway forwards HTTP requests only.")
    return resp


class PublicFunctions:
    """Sink of the public app: ``/srv<x>/...`` → the function published at ``/srv<x>``."""

    def __init__(self, registry: Registry, proxy: Proxy) -> None:
        self.registry = registry
        self.proxy = proxy

    async def __call__(self, req: falcon.asgi.Request, resp: falcon.asgi.Response | None, **params: Any) -> None:
        segment, path = split_path(req)
        manifest = self.registry.published(f"/{segment}")
        if manifest is None:
            raise falcon.HTTPNotFound(title="Not found", description="Nothing is published at this path.")
        await self.proxy.forward(req, _http_only(resp), manifest.name, path)


class InternalFunctions:
    """Sink of the internal app: ``/fn/{function}/...`` → any function, private ones included."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def __call__(self, req: falcon.asgi.Request, resp: falcon.asgi.Response | None, **params: Any) -> None:
        function, path = split_path(req, skip=1)
        await self.proxy.forward(req, _http_only(resp), function, path)


def create_public_app(registry: Registry, proxy: Proxy) -> falcon.asgi.App:
    """The app of the public listener."""
    app = falcon.asgi.App(middleware=[SecurityHeaders()], cors_enable=False)
    errors.install(app)
    static = StaticFiles()
    app.add_route("/", static, suffix="index")
    app.add_route("/static/{name}", static)
    app.add_route("/healthz", GatewayHealth(registry))
    app.add_sink(PublicFunctions(registry, proxy), prefix="/")
    return app


def create_internal_app(registry: Registry, proxy: Proxy) -> falcon.asgi.App:
    """The app of the internal listener (loopback or private network only)."""
    app = falcon.asgi.App(cors_enable=False)
    errors.install(app)
    app.add_route("/healthz", GatewayHealth(registry))
    app.add_sink(InternalFunctions(proxy), prefix=r"/fn(/|$)")
    return app
