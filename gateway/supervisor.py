"""Local replicas: each one a child process ``python -m runner serve``, in its own process group.

The supervisor starts replicas on free loopback ports, registers them once
their ``/healthz`` answers, stops them gracefully (SIGTERM, then SIGKILL after
the function's timeout plus five seconds) and, in the background, replaces the
replicas that exit unexpectedly. Ctrl-C on the terminal reaches the gateway
only; the gateway then stops every replica itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping

import aiohttp

from gateway.config import GatewayConfig
from gateway.registry import Registry, RegistryError, Replica
from runner.function import Function
from runner.settings import Settings

log = logging.getLogger("tombola.gateway")

START_TIMEOUT = 20.0
STOP_GRACE = 5.0
RECONCILE_INTERVAL = 0.5
MAX_BACKOFF = 30.0
PR_SET_PDEATHSIG = 1


class ReplicaStartError(RuntimeError):
    """A replica exited or stayed silent while starting."""


@dataclasses.dataclass(eq=False)
class Child:
    """A replica process the supervisor started."""

    replica: Replica
    function: Function
    process: subprocess.Popen[bytes]
    state: str = "starting"  # then "running", then "stopping"


def replica_environment(config: GatewayConfig, settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The gateway's environment for its replicas: same settings, W behind the internal listener, no token."""
    environment = dict(os.environ if env is None else env)
    environment.pop("TOMBOLA_TOKEN", None)
    environment["TOMBOLA_HOME"] = str(settings.home)
    environment.setdefault("TOMBOLA_W_URL", f"{config.internal_url}/fn/w")
    return environment


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _death_signal() -> Callable[[], None] | None:
    """On Linux: make a child receive SIGTERM when the gateway dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_death_signal


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a replica's process group (the group is named after the replica's pid)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class LocalSupervisor:
    """Runs the wanted number of local replicas of each function."""

    def __init__(self, registry: Registry, session: aiohttp.ClientSession, environment: Mapping[str, str]) -> None:
        self.registry = registry
        self.session = session
        self.environment = dict(environment)
        self._functions: dict[str, tuple[Function, str]] = {}
        self._wanted: dict[str, int] = {}
        self._children: dict[Replica, Child] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._repairs: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)
        self._death_signal = _death_signal()
        self._reconciler: asyncio.Task[None] | None = None

    def add(self, function: Function, version: str = "local") -> None:
        """Serve ``function`` (no replica yet: see scale)."""
        self.registry.add_function(function.manifest)
        self._functions[function.name] = (function, version)
        self._wanted.setdefault(function.name, 0)
        self._locks.setdefault(function.name, asyncio.Lock())

    async def scale(self, name: str, count: int) -> None:
        """Run exactly ``count`` replicas of ``name``; raise ReplicaStartError if one fails to start."""
        if name not in self._functions:
            raise RegistryError(f"no function named {name}")
        if count < 0:
            raise ValueError("a replica count cannot be negative")
        self._wanted[name] = count
        async with self._locks[name]:
            await self._converge(name)

    async def stop_replica(self, replica: Replica) -> None:
        """Drain and stop a replica: SIGTERM, then SIGKILL after the function's timeout plus five seconds."""
        child = self._children.get(replica)
        if child is None:
            self.registry.remove_replica(replica)
            return
        child.state = "stopping"
        replica.draining = True
        if child.process.poll() is None:
            child.process.terminate()
            grace = child.function.manifest.limits.timeout + STOP_GRACE
            try:
                await asyncio.wait_for(self._exited(child.process), grace)
            except TimeoutError:
                log.warning("replica did not stop in time, killing it", extra={"replica": replica.id, "grace": grace})
        _kill_group(child.process)
        self._forget(child)
        log.info("replica stopped", extra={"function": replica.function, "replica": replica.id})

    def start_reconciling(self) -> None:
        """Replace, in the background, the replicas that exit unexpectedly."""
        self._reconciler = asyncio.create_task(self._reconcile(), name="reconcile")

    async def stop_all(self) -> None:
        """Stop reconciling, then stop every replica gracefully, all at once."""
        await self._stop_reconciling()
        await asyncio.gather(*(self.stop_replica(replica) for replica in list(self._children)))

    def kill_all(self) -> None:
        """SIGKILL every replica now (a second Ctrl-C)."""
        for child in list(self._children.values()):
            child.state = "stopping"
            _kill_group(child.process)
            self._forget(child)

    async def _converge(self, name: str) -> None:
        running = self._running(name)
        missing = self._wanted[name] - len(running)
        if missing < 0:
            await asyncio.gather(*(self.stop_replica(child.replica) for child in running[missing:]))
            return
        results = await asyncio.gather(*(self._start(name) for _ in range(missing)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _start(self, name: str) -> Replica:
        function, version = self._functions[name]
        port = free_port()
        replica = Replica(id=f"{name}-{next(self._ids)}", function=name, version=version, url=f"http://127.0.0.1:{port}")
        command = [
            sys.executable, "-m", "runner", "serve", str(function.directory),
            "--host", "127.0.0.1", "--port", str(port), "--version", version,
        ]
        process = subprocess.Popen(
            command,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=self._death_signal,
        )
        child = Child(replica, function, process)
        self._children[replica] = child
        log.info("replica starting", extra={"function": name, "replica": replica.id, "pid": process.pid, "port": port})
        try:
            await self._wait_ready(child)
            if child.state == "stopping":
                raise ReplicaStartError(f"{replica.id} was stopped while starting")
        except BaseException:
            _kill_group(process)
            self._children.pop(replica, None)
            raise
        child.state = "running"
        self.registry.add_replica(replica)
        return replica

    async def _wait_ready(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            code = child.process.poll()
            if code is not None:
                raise ReplicaStartError(f"{child.replica.id} exited with status {code} while starting")
            try:
                async with asyncio.timeout(1.0):
                    async with self.session.get(f"{child.replica.url}/healthz") as answer:
                        if answer.status == 200:
                            return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise ReplicaStartError(f"{child.replica.id} did not answer /healthz within {START_TIMEOUT:.0f} s")

    @staticmethod
    async def _exited(process: subprocess.Popen[bytes]) -> None:
        while process.poll() is None:
            await asyncio.sleep(0.1)

    def _running(self, name: str) -> list[Child]:
        """The replicas of ``name`` that are starting or running (not stopping)."""
        return [child for child in self._children.values() if child.replica.function == name and child.state != "stopping"]

    def _forget(self, child: Child) -> None:
        self._children.pop(child.replica, None)
        self.registry.remove_replica(child.replica)

    async def _reconcile(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL)
            for child in list(self._children.values()):
                code = child.process.poll()
                if code is not None and child.state == "running":
                    log.error(
                        "replica exited unexpectedly",
                        extra={"function": child.replica.function, "replica": child.replica.id, "status": code},
                    )
                    _kill_group(child.process)
                    self._forget(child)
            for name in self._functions:
                short = len(self._running(name)) < self._wanted[name]
                busy = name in self._repairs or self._locks[name].locked()
                if short and not busy and loop.time() >= self._retry_at.get(name, 0):
                    self._repairs[name] = asyncio.create_task(self._repair(name))

    async def _repair(self, name: str) -> None:
        """Start the missing replicas of ``name``; after a failure, wait longer before the next try."""
        try:
            async with self._locks[name]:
                await self._converge(name)
        except ReplicaStartError as error:
            failures = self._failures.get(name, 0) + 1
            self._failures[name] = failures
            delay = min(2.0**failures, MAX_BACKOFF)
            self._retry_at[name] = asyncio.get_running_loop().time() + delay
            log.error("replica failed to start", extra={"function": name, "error": str(error), "retry_in": delay})
        else:
            self._failures.pop(name, None)
        finally:
            self._repairs.pop(name, None)

    async def _stop_reconciling(self) -> None:
        tasks = [*self._repairs.values(), *([self._reconciler] if self._reconciler else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
