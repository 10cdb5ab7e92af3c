"""The autoscaler: each HTTP function's replicas follow its requests in flight.

Twice a second, for each function: desired = ceil(in-flight / scaling.target),
the in-flight count averaged over the last two seconds (one spike adds no
replica), clamped to the function's [min, max]. More replicas are asked for at
once; fewer only once demand stayed lower for ``cooldown`` seconds, and then
down to the highest count wanted in that time. A function whose min is 0 goes
to zero only after ``idle`` seconds without a request; the next request then
waits for a cold start (see gateway.proxy). Any change of the replica count
(the autoscaler's, an operator's, a deploy's) starts the cool-down afresh.

Changes go through ``ControlPlane.autoscale``, which refuses them while a
deploy of the function runs. Each change is logged once done (function, from,
to, in_flight, reason, and the seconds it took) and counted in
``tombola_autoscaler_decisions_total``.
Queue functions are left alone (their demand is not the gateway's traffic),
and so are functions whose replicas run on other servers (gateway.remote).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Protocol

from gateway.control import ControlError
from gateway.metrics import Metrics
from gateway.registry import Registry
from runner.environment import flag, number

log = logging.getLogger("tombola.autoscaler")

INTERVAL = 0.5
WINDOW = 2.0


class Scaler(Protocol):
    """What the autoscaler needs of the control plane."""

    def scaling(self, name: str) -> dict[str, int]:
        """``{"replicas", "min", "max", "target"}`` of the function ``name`` now; ControlError if it runs none."""
        ...

    async def autoscale(self, name: str, replicas: int) -> bool:
        """Run ``replicas`` replicas of ``name``; False when a deploy of it runs (nothing done)."""
        ...


@dataclasses.dataclass(frozen=True)
class AutoscalerSettings:
    """``TOMBOLA_AUTOSCALE`` (on/off), ``TOMBOLA_SCALE_COOLDOWN`` and ``TOMBOLA_SCALE_IDLE`` (seconds)."""

    enabled: bool = True
    cooldown: float = 30.0
    idle: float = 60.0

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> AutoscalerSettings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        seconds = "a number of seconds (0 or more)"
        return cls(
            enabled=flag(env, "TOMBOLA_AUTOSCALE", cls.enabled),
            cooldown=number(env, "TOMBOLA_SCALE_COOLDOWN", cls.cooldown, expected=seconds),
            idle=number(env, "TOMBOLA_SCALE_IDLE", cls.idle, expected=seconds),
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the demand of one function calls for now."""

    current: int
    desired: int
    replicas: int  # the count to run: ``current`` when nothing changes
    in_flight: float
    reason: str


class Demand:
    """One function's recent demand, and the replica count it calls for."""

    def __init__(self, settings: AutoscalerSettings, now: float) -> None:
        self.settings = settings
        self.born = now
        self.since = now  # when the replica count last changed
        self.replicas = -1  # the count last seen
        self._loads: collections.deque[tuple[float, int]] = collections.deque()
        self._wishes: collections.deque[tuple[float, int]] = collections.deque()

    def decide(self, now: float, in_flight: int, last_request: float, scaling: Mapping[str, int]) -> Decision:
        """The decision at ``now``, given the requests in flight, the last request's start and the scaling."""
        current = scaling["replicas"]
        if current != self.replicas:
            self.replicas, self.since = current, now
            self._wishes.clear()
        self._loads.append((now, in_flight))
        while self._loads[0][0] <= now - WINDOW:
            self._loads.popleft()
        load = sum(count for _, count in self._loads) / len(self._loads)
        desired = math.ceil(load / scaling["target"])
        idle = now - max(last_request, self.born) >= self.settings.idle
        if desired == 0 and current > 0 and not idle:
            desired = 1  # requests too short to be seen in flight still keep one replica
        desired = min(max(desired, scaling["min"]), scaling["max"])
        self._wishes.append((now, desired))
        while self._wishes[0][0] <= now - self.settings.cooldown:
            self._wishes.popleft()
        target = scaling["target"]
        if desired > current:
            reason = f"{load:.1f} requests in flight for a target of {target} per replica"
            return Decision(current, desired, desired, load, reason)
        peak = max(wish for _, wish in self._wishes)
        if peak < current and now - self.since >= self.settings.cooldown:
            if peak == 0:
                reason = f"no request for {self.settings.idle:g} s"
            else:
                reason = f"{peak} replicas were enough for {self.settings.cooldown:g} s (target {target} per replica)"
            return Decision(current, desired, peak, load, reason)
        return Decision(current, desired, current, load, "")


class Autoscaler:
    """Runs the scaling decisions of every HTTP function in the background."""

    def __init__(self, registry: Registry, control: Scaler, metrics: Metrics, settings: AutoscalerSettings) -> None:
        self.registry = registry
        self.control = control
        self.metrics = metrics
        self.settings = settings
        self._demands: dict[str, Demand] = {}
        self._changes: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start deciding in the background (unless ``TOMBOLA_AUTOSCALE`` is off)."""
        if not self.settings.enabled:
            log.info("autoscaler disabled")
            return
        self._task = asyncio.create_task(self._run(), name="autoscaler")

    async def stop(self) -> None:
        """Stop deciding; cancel the changes under way."""
        tasks = [*self._changes.values(), *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self.step(time.monotonic())
            await asyncio.sleep(INTERVAL)

    def step(self, now: float) -> None:
        """Decide for every HTTP function; start the changes decided (one at a time per function)."""
        for manifest in self.registry.functions():
            if not manifest.is_http:
                continue
            name = manifest.name
            try:
                scaling = self.control.scaling(name)
            except ControlError:
                continue  # not run by this gateway (remote replicas), or deleted meanwhile
            measures = self.metrics.function(name)
            demand = self._demands.setdefault(name, Demand(self.settings, now))
            decision = demand.decide(now, measures.in_flight, measures.last_request, scaling)
            measures.desired.set(decision.desired)
            if decision.replicas != decision.current and name not in self._changes:
                self._changes[name] = asyncio.create_task(self._change(name, decision), name=f"autoscale-{name}")

    async def _change(self, name: str, decision: Decision) -> None:
        entry: dict[str, object] = {
            "function": name,
            "from": decision.current,
            "to": decision.replicas,
            "in_flight": round(decision.in_flight, 2),
            "reason": decision.reason,
        }
        started = time.monotonic()
        try:
            changed = await self.control.autoscale(name, decision.replicas)
            entry["took"] = round(time.monotonic() - started, 2)
            if changed:
                direction = "up" if decision.replicas > decision.current else "down"
                self.metrics.function(name).decisions[direction].inc()
                log.info("autoscaled", extra=entry)
            else:
                log.debug("autoscaling skipped: the control plane refused it (a deploy runs)", extra=entry)
        except Exception as error:  # a replica that failed to start: the next decision tries again
            log.error("autoscaling failed", extra={**entry, "error": f"{type(error).__name__}: {error}"})
        finally:
            del self._changes[name]
