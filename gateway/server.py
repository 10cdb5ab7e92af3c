"""One gateway process: both listeners in one event loop, the health checks, the control plane and the local replicas.

Startup binds both listeners first (a taken port fails at once), registers the
function folders as versions and starts every live version's replicas
(gateway.control), then listens. On SIGINT or SIGTERM the public listener
stops accepting and finishes its requests, then the internal one (B may still
be calling W through it), then every replica is stopped. A second signal kills
everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence

import aiohttp
import falcon.asgi
import uvicorn

from gateway.app import create_internal_app, create_public_app
from gateway.autoscaler import Autoscaler, AutoscalerSettings
from gateway.balancer import Balancer
from gateway.config import GatewayConfig
from gateway.control import ControlPlane
from gateway.control_api import ControlApi
from gateway.health import HealthChecker
from gateway.http_limits import BoundedHttpToolsProtocol
from gateway.proxy import Proxy
from gateway.ratelimit import PlayLimit
from gateway.registry import Registry
from gateway.remote import RemoteReplicas
from gateway.status import StatusReport
from gateway.supervisor import LocalSupervisor, replica_environment
from gateway.versions import Repository
from runner.database import create_engine
from runner.function import Function
from runner.objectstore import open_store
from runner.settings import Settings

log = logging.getLogger("tombola.gateway")
BACKLOG = 2048
KEEPALIVE = 2.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Listener(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the gateway (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; it listens once its server starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


class Gateway:
    """The registry, proxy, health checks, control plane, supervisor and listeners of one gateway process."""

    def __init__(self, config: GatewayConfig, settings: Settings, functions: Sequence[Function]) -> None:
        self.config = config
        self.functions = functions
        self.registry = Registry()
        self.session = client_session()
        self.health = HealthChecker(self.registry, self.session)
        self.supervisor = LocalSupervisor(
            self.registry,
            self.session,
            replica_environment(config, settings),
            logs=settings.home / "logs",
            start_timeout=config.start_timeout,
        )
        self.engine = create_engine(settings.database_url, settings.database_pool_size)
        repository = Repository(self.engine, open_store(settings))
        self.control = ControlPlane(self.registry, self.supervisor, repository, settings.home / "functions")
        self.api = ControlApi.create(self.control, config, settings, self.session)
        proxy = Proxy(self.registry, Balancer(self.registry), self.session, config.max_body, starter=self.control)
        status = StatusReport(self.registry, proxy.metrics, self.control)
        self.autoscaler = Autoscaler(self.registry, self.control, proxy.metrics, AutoscalerSettings.from_environ())
        public_api = self.api if config.control_public else None
        public_app = create_public_app(self.registry, proxy, public_api, status, PlayLimit.from_config(config))
        self.public = Listener(self._uvicorn(public_app))
        internal_app = create_internal_app(self.registry, proxy, self.api, status)
        self.internal = Listener(self._uvicorn(internal_app))
        self.functions = RemoteReplicas.install(self.registry, internal_app, functions)
        self._stopping = asyncio.Event()

    @staticmethod
    def _uvicorn(app: falcon.asgi.App) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            http=BoundedHttpToolsProtocol,
            ws="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            proxy_headers=False,
            server_header=False,
            backlog=BACKLOG,
        )

    async def run(self, ready: Callable[[], None], signals: Sequence[signal.Signals] = SIGNALS) -> None:
        """Serve until one of ``signals`` arrives or ``stop`` is called; call ``ready`` once both listeners accept requests."""
        loop = asyncio.get_running_loop()
        sockets: list[socket.socket] = []
        try:
            sockets.append(bind(self.config.host, self.config.port))
            sockets.append(bind(self.config.internal_host, self.config.internal_port))
            for signum in signals:
                loop.add_signal_handler(signum, self.stop)
            self.health.start()
            if await self._until_stopped(self.control.start(self.functions)):
                self._set_grace()
                self.supervisor.start_reconciling()
                self.autoscaler.start()
                await self._serve(sockets[0], sockets[1], ready)
        finally:
            for sock in sockets:
                sock.close()
            await self.health.stop()
            await self.autoscaler.stop()
            await self.api.stop()
            # Idle keep-alive connections would hold a replica's graceful stop until its grace ends.
            await self.session.close()
            await self.supervisor.stop_all()
            self.engine.dispose()
            for signum in signals:
                loop.remove_signal_handler(signum)
            log.info("gateway stopped")

    def _set_grace(self) -> None:
        """In-flight requests end by their function's deadline, so shutdown waits at most the longest one."""
        timeouts = [manifest.limits.timeout for manifest in self.registry.functions()]
        grace = math.ceil(max(timeouts, default=10.0)) + 1
        for listener in (self.public, self.internal):
            listener.config.timeout_graceful_shutdown = grace

    async def _serve(self, public_socket: socket.socket, internal_socket: socket.socket, ready: Callable[[], None]) -> None:
        listeners = {
            asyncio.create_task(self.internal.serve(sockets=[internal_socket]), name="internal-listener"): self.internal,
            asyncio.create_task(self.public.serve(sockets=[public_socket]), name="public-listener"): self.public,
        }
        try:
            if await self._until_stopped(self._started(listeners)):
                log.info("gateway listening", extra={"public": self.config.public_url, "internal": self.config.internal_url})
                ready()
                await self._until_stopped(asyncio.wait(listeners, return_when=asyncio.FIRST_COMPLETED))
        finally:
            # Public first: its requests may still need the internal listener (B calls W through it).
            for task, listener in reversed(listeners.items()):
                listener.should_exit = True
                await asyncio.gather(task, return_exceptions=True)
                if not task.cancelled() and task.exception() is not None:
                    log.error("listener failed", extra={"listener": task.get_name(), "error": repr(task.exception())})

    async def _started(self, listeners: dict[asyncio.Task[None], Listener]) -> None:
        while not all(listener.started for listener in listeners.values()):
            if any(task.done() for task in listeners):
                raise RuntimeError("a listener stopped while starting")
            await asyncio.sleep(0.02)

    async def _until_stopped(self, work: Awaitable[object]) -> bool:
        """Run ``work`` until it ends (True) or a stop signal comes first (False, ``work`` cancelled)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task.done():
            task.result()
            return not self._stopping.is_set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    def stop(self) -> None:
        """Stop as on SIGINT: finish the requests in flight, then stop the replicas; called again, kill them now."""
        if self._stopping.is_set():
            log.warning("second signal: killing every replica now")
            self.public.force_exit = self.internal.force_exit = True
            self.supervisor.kill_all()
            return
        log.info("stopping: finishing in-flight requests, then stopping replicas")
        self._stopping.set()


def client_session() -> aiohttp.ClientSession:
    """The one session of the gateway: a keep-alive pool to every replica."""
    # No connection cap: each proxied request holds one connection, so inbound requests bound them.
    # Idle connections close after a few seconds, so that a draining replica is left alone soon.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
    )


async def serve(config: GatewayConfig, settings: Settings, functions: Sequence[Function], ready: Callable[[], None]) -> None:
    """Run a gateway until it is told to stop; call ``ready`` once it serves."""
    # The gateway logs when its listeners start and stop; uvicorn's own info lines would repeat it.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    await Gateway(config, settings, functions).run(ready)
