"""Health checks: every replica's ``GET /healthz``, twice a second.

A replica that refuses the connection or answers anything but 200 is
unhealthy at once (the balancer skips it); one that is only slow to answer is
unhealthy after ``SLOW_PROBES`` timeouts in a row, so a replica busy with a
burst keeps its traffic instead of dropping out. One success makes it healthy
again. A slow replica never delays the probes of the others: each probe runs
on its own, and a replica is probed once at a time. Draining replicas are left
alone: they are on their way out.
"""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.registry import Registry, Replica

INTERVAL = 0.5
TIMEOUT = 1.0
SLOW_PROBES = 3


class HealthChecker:
    """Probes the registry's replicas in the background and records their health."""

    def __init__(self, registry: Registry, session: aiohttp.ClientSession) -> None:
        self.registry = registry
        self.session = session
        self._probes: dict[Replica, asyncio.Task[None]] = {}
        self._timeouts: dict[Replica, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing in the background."""
        self._task = asyncio.create_task(self._run(), name="health-checks")

    async def stop(self) -> None:
        """Stop probing and wait until every probe has ended."""
        tasks = [*self._probes.values(), *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            for replica in self.registry.replicas():
                if replica not in self._probes and not replica.draining:
                    self._probes[replica] = asyncio.create_task(self._probe(replica))
            await asyncio.sleep(INTERVAL)

    async def _probe(self, replica: Replica) -> None:
        slow = False
        try:
            async with asyncio.timeout(TIMEOUT):
                async with self.session.get(f"{replica.url}/healthz", allow_redirects=False) as answer:
                    await answer.read()
                    healthy, reason = answer.status == 200, f"healthz answered {answer.status}"
        except TimeoutError:
            slow, healthy, reason = True, False, f"healthz took over {TIMEOUT:g} s {SLOW_PROBES} times in a row"
        except aiohttp.ClientError as error:
            healthy, reason = False, f"healthz failed: {type(error).__name__} {error}".strip()
        finally:
            self._probes.pop(replica, None)
        if replica not in self.registry.replicas(replica.function):
            self._timeouts.pop(replica, None)
            return
        if slow:
            self._timeouts[replica] = self._timeouts.get(replica, 0) + 1
            if self._timeouts[replica] < SLOW_PROBES:
                return
        else:
            self._timeouts.pop(replica, None)
        self.registry.set_health(replica, healthy, reason)
