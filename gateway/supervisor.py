"""Local replicas: each one a child process ``python -m runner serve``, in its own process group.

A replica runs one version of a function from that version's folder and
writes its output to ``<logs>/<function>/<replica-id>.log``. ``place`` moves a
function to new slots (version → folder, replicas, weight); it is the rolling
update. It starts the missing replicas and waits until each answers
``/healthz``; only then does the traffic move to the new weights; what is left
over is drained (it takes no new request, and the requests in flight finish
within the function's timeout plus five seconds) and stopped (SIGTERM, then
SIGKILL after the same grace). A replica that fails to start never gets
traffic: the replicas the change started are stopped and the previous slots
keep serving. In the background, replicas that exit unexpectedly are
replaced. Ctrl-C on the terminal reaches the gateway only; the gateway then
stops every replica itself.
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
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp

from gateway.config import GatewayConfig
from gateway.registry import Registry, Replica
from runner.function import Function
from runner.settings import Settings

log = logging.getLogger("tombola.gateway")

START_TIMEOUT = 20.0
STOP_GRACE = 5.0
RECONCILE_INTERVAL = 0.5
DRAIN_POLL = 0.05
MAX_BACKOFF = 30.0
STABLE_AFTER = 10.0  # a replica that exits sooner after its start counts as a failed start
PR_SET_PDEATHSIG = 1

Progress = Callable[[str], None]


class ReplicaStartError(RuntimeError):
    """A replica exited or stayed silent while starting."""


@dataclasses.dataclass(frozen=True)
class Slot:
    """One version of a function as the supervisor runs it: its folder, its replicas, its share of the requests."""

    function: Function
    replicas: int
    weight: int


@dataclasses.dataclass(eq=False)
class Child:
    """A replica process the supervisor started."""

    replica: Replica
    function: Function
    process: subprocess.Popen[bytes]
    log_path: Path
    state: str = "starting"  # then "running", then "stopping"
    started: float = dataclasses.field(default_factory=time.monotonic)


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


def _started_by(parent: int, pid: object) -> bool:
    """True when ``pid`` is ``parent`` or its child (a replica's gunicorn worker), read from /proc."""
    if not isinstance(pid, int):
        return False
    if pid == parent:
        return True
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a replica's process group (the group is named after the replica's pid)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _quiet(message: str) -> None:
    """Progress nobody follows."""


def _primary(slots: Mapping[int, Slot]) -> Function:
    """The version with the largest share (the newest among equals): its manifest routes the function."""
    return max(slots.items(), key=lambda item: (item[1].weight, item[0]))[1].function


def _shares(slots: Mapping[int, Slot]) -> str:
    total = sum(slot.weight for slot in slots.values()) or 1
    return ", ".join(
        f"version {version} {slot.weight * 100 // total}%" for version, slot in sorted(slots.items()) if slot.weight > 0
    )


class LocalSupervisor:
    """Runs the wanted replicas of each version of each function."""

    def __init__(
        self,
        registry: Registry,
        session: aiohttp.ClientSession,
        environment: Mapping[str, str],
        logs: Path,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.registry = registry
        self.session = session
        self.environment = dict(environment)
        self.logs = logs
        self.start_timeout = start_timeout
        self._slots: dict[str, dict[int, Slot]] = {}
        self._children: dict[Replica, Child] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._repairs: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)
        self._death_signal = _death_signal()
        self._reconciler: asyncio.Task[None] | None = None

    def slots(self, name: str) -> dict[int, Slot]:
        """What ``name`` runs now, by version (empty when it runs nothing)."""
        return dict(self._slots.get(name, {}))

    def children(self) -> list[Child]:
        """Every replica process, starting, running or stopping."""
        return list(self._children.values())

    async def place(
        self,
        name: str,
        slots: Mapping[int, Slot],
        progress: Progress | None = None,
        commit: Callable[[], Awaitable[object]] | None = None,
        keep: bool = False,
    ) -> None:
        """Run ``slots`` (version → slot) for ``name``, as a rolling update.

        Start the missing replicas, wait until they are healthy, await
        ``commit`` (the caller records the change), move the traffic to the
        slots' weights, then drain and stop the replicas left over. When a
        replica fails to start (ReplicaStartError) or ``commit`` fails, the
        replicas started here are stopped, the previous slots stay as they
        were and the error is raised; with ``keep`` (startup), the slots stay
        and what failed is started again in the background.
        """
        say = progress or _quiet
        if not slots:
            raise ValueError("a function needs at least one version")
        primary = _primary(slots)
        self.registry.check_function(primary.manifest)
        async with self._lock(name):
            new = self.registry.function(name) is None
            if new:
                self.registry.add_function(primary.manifest)
            previous = self._slots.get(name, {})
            self._slots[name] = dict(slots)
            started: list[Replica] = []
            try:
                await self._start_missing(name, started, say)
                if commit is not None:
                    await commit()
            except BaseException:
                if keep:
                    self._route(name, say)
                    raise
                if previous:
                    self._slots[name] = previous
                else:
                    self._slots.pop(name)
                if started:
                    say(f"stopping the {len(started)} new replica(s); the traffic stays where it was")
                await asyncio.gather(*(self.stop_replica(replica) for replica in started))
                if new:
                    self.registry.remove_function(name)
                raise
            self._route(name, say)
            await self._drain_surplus(name, say)

    async def remove(self, name: str) -> None:
        """Drain and stop every replica of ``name``, then stop serving it."""
        async with self._lock(name):
            self._slots.pop(name, None)
            await asyncio.gather(*(self.stop_replica(child.replica) for child in self._running(name)))
            self.registry.remove_function(name)

    async def stop_replica(self, replica: Replica) -> None:
        """Drain a replica, then stop it: SIGTERM, then SIGKILL after the function's timeout plus five seconds."""
        child = self._children.get(replica)
        if child is None:
            self.registry.remove_replica(replica)
            return
        child.state = "stopping"
        replica.draining = True
        grace = child.function.manifest.limits.timeout + STOP_GRACE
        await self._drained(replica, grace)
        if child.process.poll() is None:
            child.process.terminate()
            try:
                await asyncio.wait_for(self._exited(child.process), grace)
            except TimeoutError:
                log.warning("replica did not stop in time, killing it", extra={"replica": replica.id, "grace": grace})
        _kill_group(child.process)
        self._forget(child)
        log.info("replica stopped", extra={"function": replica.function, "version": replica.version, "replica": replica.id})

    def start_reconciling(self) -> None:
        """Replace, in the background, the replicas that exit unexpectedly."""
        self._reconciler = asyncio.create_task(self._reconcile(), name="reconcile")

    async def stop_all(self) -> None:
        """Stop reconciling, then stop every replica gracefully, all at once."""
        await self._stop_reconciling()
        await asyncio.gather(*(self.stop_replica(child.replica) for child in list(self._children.values())))

    def kill_all(self) -> None:
        """SIGKILL every replica now (a second Ctrl-C)."""
        for child in list(self._children.values()):
            child.state = "stopping"
            _kill_group(child.process)
            self._forget(child)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _start_missing(self, name: str, started: list[Replica], say: Progress) -> None:
        """Start what the slots of ``name`` lack, all at once; add the replicas that came up to ``started``."""
        starts = []
        for version, slot in sorted(self._slots.get(name, {}).items()):
            missing = slot.replicas - len(self._running(name, version))
            if missing > 0:
                say(f"starting {missing} replica(s) of {name} version {version}")
                starts += [self._start(name, version, slot.function) for _ in range(missing)]
        results = await asyncio.gather(*starts, return_exceptions=True)
        for result in results:
            if isinstance(result, Replica):
                started.append(result)
                say(f"{result.id} is healthy")
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _route(self, name: str, say: Progress) -> None:
        """Route ``name`` by its primary version's manifest and send its requests by the slots' weights."""
        slots = self._slots[name]
        self.registry.add_function(_primary(slots).manifest)
        self.registry.set_traffic(name, {version: slot.weight for version, slot in slots.items()})
        say(f"traffic: {_shares(slots)}")

    async def _drain_surplus(self, name: str, say: Progress) -> None:
        """Drain and stop the replicas of versions no slot wants, and those beyond a slot's count."""
        slots = self._slots.get(name, {})
        surplus: list[Child] = []
        for version in sorted({child.replica.version for child in self._running(name)}):
            running = sorted(self._running(name, version), key=lambda child: (child.replica.available, child.replica.in_flight))
            wanted = slots[version].replicas if version in slots else 0
            surplus += running[: max(0, len(running) - wanted)]
        if not surplus:
            return
        say(f"draining {', '.join(child.replica.id for child in surplus)}")
        await asyncio.gather(*(self.stop_replica(child.replica) for child in surplus))
        say(f"stopped {', '.join(child.replica.id for child in surplus)}")

    async def _start(self, name: str, version: int, function: Function) -> Replica:
        port = free_port()
        replica = Replica(
            id=f"{name}-v{version}-{next(self._ids)}", function=name, version=version, url=f"http://127.0.0.1:{port}"
        )
        log_path = self.logs / name / f"{replica.id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "runner", "serve", str(function.directory),
            "--host", "127.0.0.1", "--port", str(port), "--version", str(version),
        ]
        with open(log_path, "ab") as output:
            process = subprocess.Popen(
                command,
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                process_group=0,
                preexec_fn=self._death_signal,
            )
        child = Child(replica, function, process, log_path)
        self._children[replica] = child
        log.info(
            "replica starting",
            extra={"function": name, "version": version, "replica": replica.id, "pid": process.pid, "port": port},
        )
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
        deadline = loop.time() + self.start_timeout
        while loop.time() < deadline:
            code = child.process.poll()
            if code is not None:
                raise ReplicaStartError(
                    f"{child.replica.id} exited with status {code} while starting (its output: {child.log_path})"
                )
            try:
                async with asyncio.timeout(1.0):
                    async with self.session.get(f"{child.replica.url}/healthz") as answer:
                        if answer.status == 200:
                            answered_by = (await answer.json()).get("pid")
                            if not _started_by(child.process.pid, answered_by):
                                # Its port was taken between free_port() and the bind: another process answers there.
                                raise ReplicaStartError(f"{child.replica.id}: another process (pid {answered_by}) holds its port")
                            return
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.1)
        raise ReplicaStartError(
            f"{child.replica.id} did not answer /healthz within {self.start_timeout:g} s (its output: {child.log_path})"
        )

    @staticmethod
    async def _drained(replica: Replica, grace: float) -> None:
        """Wait until no request is in flight on ``replica``, at most ``grace`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while replica.in_flight > 0:
            if loop.time() >= deadline:
                log.warning("replica still busy after its grace", extra={"replica": replica.id, "in_flight": replica.in_flight})
                return
            await asyncio.sleep(DRAIN_POLL)

    @staticmethod
    async def _exited(process: subprocess.Popen[bytes]) -> None:
        while process.poll() is None:
            await asyncio.sleep(0.1)

    def _running(self, name: str, version: int | None = None) -> list[Child]:
        """The replicas of ``name`` (of ``version`` only, if given) that are starting or running (not stopping)."""
        return [
            child
            for child in self._children.values()
            if child.replica.function == name
            and child.state != "stopping"
            and (version is None or child.replica.version == version)
        ]

    def _forget(self, child: Child) -> None:
        self._children.pop(child.replica, None)
        self.registry.remove_replica(child.replica)

    def _short(self, name: str) -> bool:
        """True when a version of ``name`` runs fewer replicas than its slot wants."""
        return any(len(self._running(name, version)) < slot.replicas for version, slot in self._slots[name].items())

    async def _reconcile(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL)
            for child in list(self._children.values()):
                code = child.process.poll()
                if code is not None and child.state == "running":
                    name = child.replica.function
                    extra = {"function": name, "replica": child.replica.id, "status": code}
                    if not self._stable(child):
                        extra["retry_in"] = self._back_off(name)
                    log.error("replica exited unexpectedly", extra=extra)
                    _kill_group(child.process)
                    self._forget(child)
            for name in list(self._failures):
                if not self._short(name) and all(self._stable(child) for child in self._running(name)):
                    self._failures.pop(name)  # its replicas stay up: the next failure starts the backoff anew
            for name in list(self._slots):
                busy = name in self._repairs or self._lock(name).locked()
                if not busy and self._short(name) and loop.time() >= self._retry_at.get(name, 0):
                    self._repairs[name] = asyncio.create_task(self._repair(name))

    async def _repair(self, name: str) -> None:
        """Start the missing replicas of ``name``; after a failure, wait longer before the next try."""
        try:
            async with self._lock(name):
                await self._start_missing(name, [], _quiet)
        except ReplicaStartError as error:
            log.error("replica failed to start", extra={"function": name, "error": str(error), "retry_in": self._back_off(name)})
        finally:
            self._repairs.pop(name, None)

    @staticmethod
    def _stable(child: Child) -> bool:
        """True once ``child`` has run STABLE_AFTER seconds: an exit then is not a crash loop."""
        return time.monotonic() - child.started >= STABLE_AFTER

    def _back_off(self, name: str) -> float:
        """Count a failure of ``name``'s replicas; the seconds before the next start: 0, then 2, 4, 8… up to MAX_BACKOFF."""
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        delay = 0.0 if failures == 1 else min(2.0 ** (failures - 1), MAX_BACKOFF)
        self._retry_at[name] = asyncio.get_running_loop().time() + delay
        return delay

    async def _stop_reconciling(self) -> None:
        tasks = [*self._repairs.values(), *([self._reconciler] if self._reconciler else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
