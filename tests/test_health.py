"""The gateway's health checks against a real socket: slow is not dead, refused or failing is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import aiohttp.web

from gateway import health
from gateway.health import HealthChecker
from gateway.registry import Registry, Replica
from runner import manifest
from tests.support import free_port


class FakeReplica:
    """A /healthz server whose answers the test steers: its delay and its status."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.status = 200
        self.port = free_port()
        self.runner: aiohttp.web.AppRunner | None = None

    async def healthz(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        await asyncio.sleep(self.delay)
        return aiohttp.web.json_response({"status": "ok"}, status=self.status)

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/healthz", self.healthz)
        self.runner = aiohttp.web.AppRunner(app, shutdown_timeout=0)
        await self.runner.setup()
        await aiohttp.web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@contextlib.asynccontextmanager
async def probed() -> AsyncIterator[tuple[FakeReplica, Replica]]:
    """A fake replica registered as ``i-1`` and probed by a running HealthChecker."""
    server = FakeReplica()
    await server.start()
    registry = Registry()
    registry.add_function(manifest.loads('name = "i"\n[trigger]\ntype = "http"\n'))
    replica = Replica(id="i-1", function="i", version=1, url=f"http://127.0.0.1:{server.port}")
    registry.add_replica(replica)
    async with aiohttp.ClientSession() as session:
        checker = HealthChecker(registry, session)
        checker.start()
        try:
            yield server, replica
        finally:
            await checker.stop()
            await server.stop()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_a_replica_slow_to_answer_keeps_its_traffic_until_it_is_slow_several_times_in_a_row() -> None:
    async def scenario() -> None:
        async with probed() as (server, replica):
            server.delay = health.TIMEOUT * 1.5
            timeouts = 0
            # Watch the probes time out one by one: each ends after TIMEOUT.
            while timeouts < health.SLOW_PROBES - 1:
                await asyncio.sleep(health.TIMEOUT)
                timeouts += 1
                assert replica.healthy, f"unhealthy after {timeouts} slow probe(s)"
            await until(lambda: not replica.healthy)
            server.delay = 0.0
            await until(lambda: replica.healthy)

    asyncio.run(scenario())


def test_a_replica_that_answers_an_error_is_unhealthy_at_once_and_back_after_one_success() -> None:
    async def scenario() -> None:
        async with probed() as (server, replica):
            server.status = 503
            await until(lambda: not replica.healthy)
            server.status = 200
            await until(lambda: replica.healthy)

    asyncio.run(scenario())


def test_a_replica_that_refuses_connections_is_unhealthy_at_the_next_probe() -> None:
    async def scenario() -> None:
        async with probed() as (server, replica):
            await asyncio.sleep(2 * health.INTERVAL)
            assert replica.healthy
            await server.stop()
            await until(lambda: not replica.healthy)

    asyncio.run(scenario())
