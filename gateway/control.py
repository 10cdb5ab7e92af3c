"""The control plane: functions, versions, aliases, deploys, rollbacks and scaling.

A function version is a checked package recorded by gateway.versions and
installed (unzipped) under ``$TOMBOLA_HOME/functions/<name>/<version>/``, the
folder its replicas run from. Pointing the ``live`` alias is the deploy: a
rolling update by the supervisor (gateway.supervisor), recorded only once the
new replicas are healthy; a version that fails its health check never gets a
request and the one before keeps serving. Other aliases are names only.

One change at a time per function (deploy, rollback, scale, delete). Scaling
is the operator's (``scale``: bounds and a replica count, recorded) and the
autoscaler's (``autoscale``: a count within the bounds, not recorded, refused
while a deploy runs). Every blocking call runs in a thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy.exc

from gateway import packages
from gateway.packages import PackageError
from gateway.registry import Registry, RegistryError
from gateway.supervisor import Child, LocalSupervisor, Progress, ReplicaStartError, Slot
from gateway.versions import LIVE, Alias, FunctionRecord, Repository, Version
from runner.database import isoformat
from runner.errors import BackendUnavailable
from runner.function import Function
from runner.manifest import NAME_PATTERN, Manifest, ManifestError

log = logging.getLogger("tombola.gateway")

ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_DESCRIPTION = 200
MAX_REPLICAS = 64
FOLDER_NOTE = "registered by tombola up from its folder"
WAKE_POLL = 0.05

T = TypeVar("T")


class ControlError(Exception):
    """A control request that cannot be done; the message is for the user, ``status`` the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Scale:
    """A function's replicas wanted now and the bounds the autoscaler keeps them in."""

    replicas: int
    min: int
    max: int
    target: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _quiet(message: str) -> None:
    """Progress nobody follows."""


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _split(total: int, traffic: Mapping[int, int]) -> dict[int, int]:
    """Replicas per version: ``total`` shared by weight, one at least for every version (none when ``total`` is 0)."""
    if total == 0:
        return dict.fromkeys(traffic, 0)
    primary = max(traffic, key=lambda version: (traffic[version], version))
    counts = {version: max(1, round(total * weight / 100)) for version, weight in traffic.items() if version != primary}
    counts[primary] = max(1, total - sum(counts.values()))
    return counts


def _describe_target(traffic: Mapping[int, int]) -> str:
    return " + ".join(f"version {version} ({weight}%)" for version, weight in sorted(traffic.items()))


async def _blocking(call: Callable[..., T], *args: Any) -> T:
    """Run a blocking database or object-store call in a thread; its failures as ControlErrors."""
    try:
        return await asyncio.to_thread(call, *args)
    except sqlalchemy.exc.IntegrityError:
        raise ControlError(409, "Another change of this function got there first; retry.") from None
    except sqlalchemy.exc.DBAPIError:
        log.warning("database unavailable", exc_info=True)
        raise ControlError(503, "The database cannot be reached right now; retry shortly.") from None
    except BackendUnavailable as error:
        raise ControlError(503, str(error)) from None


def _bounds(record: FunctionRecord, manifest: Manifest) -> tuple[int, int]:
    """The scaling bounds of a function: the operator's, else its manifest's."""
    low = manifest.scaling.min if record.scale_min is None else record.scale_min
    high = manifest.scaling.max if record.scale_max is None else record.scale_max
    return low, max(low, high, 1)


def _replica_dict(child: Child) -> dict[str, Any]:
    replica = child.replica
    return {
        "id": replica.id,
        "function": replica.function,
        "version": replica.version,
        "url": replica.url,
        "healthy": replica.healthy and child.state == "running",
        "draining": replica.draining,
        "in_flight": replica.in_flight,
        "pid": child.process.pid,
        "state": child.state,
    }


def _folder_package(function: Function) -> packages.Package:
    return packages.inspect(packages.build(function.directory), function.name)


class ControlPlane:
    """Functions, versions, aliases and scaling of one gateway, over its registry and local supervisor."""

    def __init__(self, registry: Registry, supervisor: LocalSupervisor, repository: Repository, installs: Path) -> None:
        self.registry = registry
        self.supervisor = supervisor
        self.repository = repository
        self.installs = installs
        self._scales: dict[str, Scale] = {}
        self._operations: dict[str, asyncio.Lock] = {}
        self._uploads: dict[str, asyncio.Lock] = {}
        self._deploying: collections.Counter[str] = collections.Counter()
        self._wakes: dict[str, asyncio.Task[None]] = {}
        self._elsewhere: frozenset[str] = frozenset()  # served by replicas of other servers, not by this one

    # Startup ---------------------------------------------------------------------------------------------------

    async def start(self, folders: Sequence[Function]) -> None:
        """Record each folder as a new live version when its package changed; run every live version at its scale.

        A function starts at the replica count an operator asked for last,
        else at its minimum (a function whose minimum is 0 starts with none);
        replicas that fail to start are retried in the background. Functions
        the registry serves already (replicas of other servers) are left alone.
        """
        for function in folders:
            await self._register_folder(function)
        self._elsewhere = frozenset(manifest.name for manifest in self.registry.functions())
        records = [record for record in await asyncio.to_thread(self.repository.functions) if record.name not in self._elsewhere]
        results = await asyncio.gather(*(self._start_function(record) for record in records), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _register_folder(self, function: Function) -> None:
        try:
            package = await asyncio.to_thread(_folder_package, function)
        except PackageError as error:
            raise ManifestError(f"{function.directory.name}: {error}") from None
        version, created = await asyncio.to_thread(self.repository.add_version, package, FOLDER_NOTE)
        live = await asyncio.to_thread(self.repository.alias, function.name, LIVE)
        if created or live is None:
            await asyncio.to_thread(self.repository.set_alias, Alias(function.name, LIVE, version.number))
            log.info("folder registered as the live version", extra={"function": function.name, "version": version.number})

    async def _start_function(self, record: FunctionRecord) -> None:
        name = record.name
        scale = await asyncio.to_thread(self._read_scale, record)
        live = await asyncio.to_thread(self.repository.alias, name, LIVE)
        if scale is None:
            return
        self._scales[name] = scale
        if live is None:
            return
        replicas = _clamp(scale.min if record.scale_replicas is None else record.scale_replicas, scale.min, scale.max)
        self._scales[name] = dataclasses.replace(scale, replicas=replicas)
        try:
            slots = await self._slots(name, live.traffic, replicas)
            await self.supervisor.place(name, slots, keep=True)
        except ReplicaStartError as error:
            log.error("replicas failed to start, retrying", extra={"function": name, "error": str(error)})
        except ControlError as error:
            log.error("function not started", extra={"function": name, "error": str(error)})

    # Functions -------------------------------------------------------------------------------------------------

    async def list_functions(self) -> list[dict[str, Any]]:
        """Every function with its live target, scaling and number of versions."""

        def read() -> list[tuple[FunctionRecord, list[Version], list[Alias]]]:
            return [
                (record, self.repository.versions(record.name), self.repository.aliases(record.name))
                for record in self.repository.functions()
            ]

        return [self._describe(*entry) for entry in await _blocking(read)]

    async def show_function(self, name: str) -> dict[str, Any]:
        """One function as listed, with its manifest (the live version's, else the latest's) and its aliases."""
        record = await self._record(name)
        versions, aliases = await _blocking(lambda: (self.repository.versions(name), self.repository.aliases(name)))
        shown = self._shown(versions, aliases)
        return {
            **self._describe(record, versions, aliases),
            "manifest": None if shown is None else shown.manifest.to_dict(),
            "aliases": [self._alias_dict(alias) for alias in aliases],
        }

    async def update_function(self, name: str, description: str | None) -> dict[str, Any]:
        """Change a function's description (None leaves it)."""
        if description is not None:
            if len(description) > MAX_DESCRIPTION:
                raise ControlError(400, f"A description holds at most {MAX_DESCRIPTION} characters.")
            if await _blocking(self.repository.update_description, name, description) is None:
                raise self._unknown(name)
        return await self.show_function(name)

    async def delete_function(self, name: str) -> None:
        """Stop the function's replicas (draining them), then forget its routes, versions, aliases and packages."""
        await self._record(name)
        async with self._deploy(name):
            await self.supervisor.remove(name)
            await _blocking(self.repository.delete_function, name)
            await asyncio.to_thread(shutil.rmtree, self.installs / name, True)
            self._scales.pop(name, None)
        log.info("function deleted", extra={"function": name})

    # Versions --------------------------------------------------------------------------------------------------

    async def create_version(self, name: str, package: bytes, description: str = "") -> dict[str, Any]:
        """Check and record ``package`` as the next version of ``name`` (creating the function if new).

        A package identical to the latest version (same sha256) is that
        version (``"created": false``); nothing is deployed.
        """
        if not NAME_PATTERN.fullmatch(name):
            raise ControlError(400, f"A function name matches {NAME_PATTERN.pattern}; {name!r} does not.")
        if len(description) > MAX_DESCRIPTION:
            raise ControlError(400, f"A description holds at most {MAX_DESCRIPTION} characters.")
        try:
            checked = await asyncio.to_thread(packages.inspect, package, name)
            self.registry.check_function(checked.manifest)
        except PackageError as error:
            raise ControlError(error.status, f"Invalid package: {error}.") from None
        except RegistryError as error:
            raise ControlError(409, str(error)) from None
        async with self._uploads.setdefault(name, asyncio.Lock()):
            version, created = await _blocking(self.repository.add_version, checked, description)
        if name not in self._scales:
            scaling = checked.manifest.scaling
            self._scales[name] = Scale(0, scaling.min, scaling.max, scaling.target)
        if created:
            log.info("version created", extra={"function": name, "version": version.number, "sha256": version.sha256})
        return {**version.as_dict(), "created": created}

    async def list_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, oldest first."""
        await self._record(name)
        return [version.as_dict() for version in await _blocking(self.repository.versions, name)]

    async def show_version(self, name: str, number: int) -> dict[str, Any]:
        """One version of ``name``."""
        return (await self._version(name, number)).as_dict()

    # Aliases and deploys ---------------------------------------------------------------------------------------

    async def show_alias(self, name: str, alias: str) -> dict[str, Any]:
        """Where an alias of ``name`` points."""
        await self._record(name)
        found = await _blocking(self.repository.alias, name, alias) if ALIAS_PATTERN.fullmatch(alias) else None
        if found is None:
            raise ControlError(404, f"Function {name} has no alias {alias!r}.")
        return self._alias_dict(found)

    async def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        canary_version: int | None = None,
        canary_weight: int = 0,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Point ``alias`` at ``version`` (and ``canary_weight`` percent of the requests at ``canary_version``).

        For ``live`` this is the deploy, a rolling update: the new replicas
        start and must answer their health check before any request reaches
        them; then the traffic moves and the old replicas drain and stop. If
        one fails its health check, the deploy fails (422), its replicas are
        stopped and live stays where it was.
        """
        if not ALIAS_PATTERN.fullmatch(alias):
            raise ControlError(400, f"An alias name matches {ALIAS_PATTERN.pattern}; {alias!r} does not.")
        if canary_version is None and canary_weight:
            raise ControlError(400, "A canary weight needs a canary version.")
        if canary_version is not None:
            if canary_version == version:
                raise ControlError(400, "The canary must be another version than the alias's own.")
            if not 1 <= canary_weight <= 99:
                raise ControlError(400, "A canary weight is a percentage from 1 to 99.")
        target = Alias(name, alias, version, canary_version, canary_weight if canary_version is not None else 0)
        for number in target.traffic:
            await self._version(name, number)
        if alias != LIVE:
            saved = await _blocking(self.repository.set_alias, target)
            return {**self._alias_dict(saved), "replicas": []}
        async with self._deploy(name):
            return await self._roll_out(name, target, lambda: self.repository.set_alias(target), progress or _quiet)

    async def rollback(self, name: str, progress: Progress | None = None) -> dict[str, Any]:
        """Point ``live`` back where it pointed before its latest change (a deploy, as set_alias)."""
        await self._record(name)
        async with self._deploy(name):
            previous = await _blocking(self.repository.previous_live, name)
            if previous is None:
                raise ControlError(409, f"Function {name} has no earlier live version to roll back to.")
            return await self._roll_out(name, previous, lambda: self.repository.roll_back_live(name), progress or _quiet)

    async def _roll_out(self, name: str, target: Alias, record: Callable[[], Alias], say: Progress) -> dict[str, Any]:
        """Run ``target``'s versions; ``record`` the change once they are healthy. The caller holds the function."""
        if name in self._elsewhere:
            raise ControlError(409, f"Function {name} runs on other servers, not on this gateway: deploy it there.")
        function = await self._record(name)
        current = await _blocking(self.repository.alias, name, LIVE)
        running = {version: slot.weight for version, slot in self.supervisor.slots(name).items()}
        unchanged = current is not None and target.same_target(current)
        if unchanged and running == target.traffic:
            say(f"{name} live already runs {_describe_target(target.traffic)}")
            return self._deployed(name, current or target)
        manifest = (await self._version(name, target.version)).manifest
        low, high = _bounds(function, manifest)
        scale = self._scales.get(name)
        wanted = scale.replicas if scale is not None and scale.replicas else function.scale_replicas
        replicas = _clamp(max(1, low if wanted is None else wanted), low, high)
        slots = await self._slots(name, target.traffic, replicas)
        say(f"deploying {name} {_describe_target(target.traffic)} on {replicas} replica(s)")
        saved = [current] if unchanged and current is not None else []

        async def commit() -> None:
            saved.append(await _blocking(record))

        try:
            await self.supervisor.place(name, slots, say, None if unchanged else commit)
        except ReplicaStartError as error:
            keeps = "nothing else serves it" if current is None else f"live stays on {_describe_target(current.traffic)}"
            log.warning("deploy failed", extra={"function": name, "error": str(error)})
            raise ControlError(422, f"The new version of {name} failed its health check: {error}; {keeps}.") from None
        except RegistryError as error:
            raise ControlError(409, str(error)) from None
        self._scales[name] = Scale(replicas, low, high, manifest.scaling.target)
        say(f"{name} live: {_describe_target(target.traffic)}")
        log.info("deployed", extra={"function": name, "traffic": target.traffic, "replicas": replicas})
        return self._deployed(name, saved[-1])

    # Scaling ---------------------------------------------------------------------------------------------------

    def scaling(self, name: str) -> dict[str, int]:
        """``{"replicas", "min", "max", "target"}`` of ``name`` now (replicas: wanted; 0 when it is not deployed)."""
        scale = self._scales.get(name)
        if scale is None:
            raise self._unknown(name)
        return scale.as_dict()

    async def scale(
        self, name: str, replicas: int | None = None, min: int | None = None, max: int | None = None  # noqa: A002
    ) -> dict[str, int]:
        """Set the bounds and/or run ``replicas`` replicas (recorded: they hold after a restart too)."""
        for label, value in (("replicas", replicas), ("min", min), ("max", max)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPLICAS):
                raise ControlError(400, f"{label} must be a whole number from 0 to {MAX_REPLICAS}.")
        record = await self._record(name)
        async with self._operation(name):
            current = self._scales.get(name) or await _blocking(self._read_scale, record)
            if current is None:
                raise self._unknown(name)
            low = current.min if min is None else min
            high = current.max if max is None else max
            if high < 1:
                raise ControlError(400, "max must be 1 at least.")
            if low > high:
                raise ControlError(400, f"min ({low}) must not exceed max ({high}).")
            if replicas is not None and not low <= replicas <= high:
                raise ControlError(400, f"replicas must lie between min ({low}) and max ({high}), not {replicas}.")
            wanted = _clamp(current.replicas, low, high) if replicas is None else replicas

            async def commit() -> None:
                await _blocking(self.repository.set_scaling, name, min, max, replicas)

            if self.supervisor.slots(name):
                try:
                    await self._resize(name, wanted, commit)
                except ReplicaStartError as error:
                    raise ControlError(503, f"Could not start the replicas of {name}: {error}.") from None
            else:
                await commit()
                wanted = 0
            self._scales[name] = Scale(wanted, low, high, current.target)
            log.info("scaled", extra={"function": name, "from": current.replicas, "to": wanted, "by": "operator"})
            return self._scales[name].as_dict()

    async def autoscale(self, name: str, replicas: int) -> bool:
        """Run ``replicas`` replicas of ``name`` (kept within its bounds, not recorded).

        False, with nothing done, while a deploy of ``name`` runs or when the
        count is already that one; a replica that fails to start raises
        ReplicaStartError (the replicas already running keep serving).
        """
        if self._deploying[name] or name not in self._scales:
            return False
        async with self._operation(name):
            scale = self._scales.get(name)
            if self._deploying[name] or scale is None or not self.supervisor.slots(name):
                return False
            wanted = _clamp(replicas, scale.min, scale.max)
            if wanted == scale.replicas:
                return False
            await self._resize(name, wanted, None)
            log.info("scaled", extra={"function": name, "from": scale.replicas, "to": wanted, "by": "autoscaler"})
            scale.replicas = wanted
            return True

    async def ensure_replica(self, name: str, timeout: float) -> bool:
        """Wake ``name`` up when it runs no replica (one starts, unless one is starting); True once one can take requests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._available(name):
            # Checked each round: the autoscaler may release the last replica while this waits.
            scale = self._scales.get(name)
            if scale is None or not self.supervisor.slots(name):
                return False
            if scale.replicas == 0 and name not in self._wakes:
                task = asyncio.create_task(self._wake(name), name=f"wake-{name}")
                self._wakes[name] = task
                task.add_done_callback(lambda _: self._wakes.pop(name, None))
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(WAKE_POLL)
        return True

    async def _wake(self, name: str) -> None:
        try:
            await self.autoscale(name, 1)
        except ReplicaStartError as error:
            log.error("cold start failed", extra={"function": name, "error": str(error)})

    async def _resize(self, name: str, replicas: int, commit: Callable[[], Awaitable[object]] | None) -> None:
        """Run ``replicas`` replicas of what ``name`` runs now, shared among its versions as before."""
        slots = self.supervisor.slots(name)
        counts = _split(replicas, {version: slot.weight for version, slot in slots.items()})
        resized = {version: dataclasses.replace(slot, replicas=counts[version]) for version, slot in slots.items()}
        await self.supervisor.place(name, resized, commit=commit)

    # Replicas --------------------------------------------------------------------------------------------------

    async def replicas(self) -> list[dict[str, Any]]:
        """Every replica of every function: version, health, requests in flight, process."""
        entries = [_replica_dict(child) for child in self.supervisor.children()]
        return sorted(entries, key=lambda entry: (entry["function"], entry["version"], entry["id"]))

    # Helpers ---------------------------------------------------------------------------------------------------

    def _read_scale(self, record: FunctionRecord) -> Scale | None:
        """The scaling of a function not running (no replica wanted), from its records; None without a version."""
        live = self.repository.alias(record.name, LIVE)
        shown = self.repository.latest(record.name) if live is None else self.repository.version(record.name, live.version)
        if shown is None:
            return None
        manifest = shown.manifest
        low, high = _bounds(record, manifest)
        return Scale(0, low, high, manifest.scaling.target)

    def _operation(self, name: str) -> asyncio.Lock:
        return self._operations.setdefault(name, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _deploy(self, name: str) -> AsyncIterator[None]:
        """Hold the function for a deploy: the autoscaler stands aside from now on, even while this waits its turn."""
        self._deploying[name] += 1
        try:
            async with self._operation(name):
                yield
        finally:
            self._deploying[name] -= 1
            if not self._deploying[name]:
                del self._deploying[name]

    def _available(self, name: str) -> bool:
        """True when a replica of a version that takes requests is available."""
        weights = self.registry.traffic(name) or {}
        return any(replica.available and replica.version in weights for replica in self.registry.replicas(name))

    async def _slots(self, name: str, traffic: Mapping[int, int], replicas: int) -> dict[int, Slot]:
        """The slots running ``traffic`` (version → weight) on ``replicas`` replicas, each version installed."""
        counts = _split(replicas, traffic)
        return {
            version: Slot(await self._installed(name, version), counts[version], weight) for version, weight in traffic.items()
        }

    async def _installed(self, name: str, number: int) -> Function:
        """The folder of version ``number`` of ``name``, unzipped from its stored package if not yet."""
        version = await self._version(name, number)
        target = self.installs / name / str(number)

        def install() -> Function:
            if not packages.installed(target, version.sha256):
                packages.install(self.repository.package(version), target)
            return Function.load(target)

        try:
            return await _blocking(install)
        except (PackageError, ManifestError) as error:
            raise ControlError(503, f"Version {number} of {name} cannot be installed: {error}") from None

    async def _record(self, name: str) -> FunctionRecord:
        record = await _blocking(self.repository.function, name) if NAME_PATTERN.fullmatch(name) else None
        if record is None:
            raise self._unknown(name)
        return record

    async def _version(self, name: str, number: int) -> Version:
        await self._record(name)
        version = await _blocking(self.repository.version, name, number)
        if version is None:
            raise ControlError(404, f"Function {name} has no version {number}.")
        return version

    @staticmethod
    def _unknown(name: str) -> ControlError:
        return ControlError(404, f"No function is named {name!r}.")

    @staticmethod
    def _shown(versions: list[Version], aliases: list[Alias]) -> Version | None:
        """The version that speaks for the function: live's, else the latest."""
        live = next((alias for alias in aliases if alias.name == LIVE), None)
        if live is not None:
            for version in versions:
                if version.number == live.version:
                    return version
        return versions[-1] if versions else None

    def _describe(self, record: FunctionRecord, versions: list[Version], aliases: list[Alias]) -> dict[str, Any]:
        shown = self._shown(versions, aliases)
        manifest = None if shown is None else shown.manifest
        live = next((alias for alias in aliases if alias.name == LIVE), None)
        scale = self._scales.get(record.name)
        if scale is None and manifest is not None:
            low, high = _bounds(record, manifest)
            scale = Scale(0, low, high, manifest.scaling.target)
        return {
            "name": record.name,
            "description": record.description,
            "trigger": None if manifest is None else manifest.trigger.type,
            "public_prefix": None if manifest is None else manifest.trigger.public_prefix,
            "live": None if live is None else live.target(),
            "scaling": None if scale is None else scale.as_dict(),
            "versions": len(versions),
            "created_at": isoformat(record.created_at),
            "updated_at": isoformat(record.updated_at),
        }

    @staticmethod
    def _alias_dict(alias: Alias) -> dict[str, Any]:
        return {"function": alias.function, "alias": alias.name, **alias.target(), "updated_at": isoformat(alias.updated_at)}

    def _deployed(self, name: str, alias: Alias) -> dict[str, Any]:
        replicas = [_replica_dict(child) for child in self.supervisor.children() if child.replica.function == name]
        return {**self._alias_dict(alias), "replicas": sorted(replicas, key=lambda entry: (entry["version"], entry["id"]))}
