"""What the gateway knows: the functions it serves and the replicas that run them.

The registry does not care how a replica was started: the local supervisor
registers child processes, and replicas on other servers can be registered the
same way, by their base URL. Each replica runs one version of its function;
the function's traffic (version → weight) says which versions take requests:
a version without weight takes none, whatever its replicas' health.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from runner.manifest import Manifest

log = logging.getLogger("tombola.gateway")
RESERVED_PREFIXES = frozenset({"/fn", "/healthz", "/metrics", "/static", "/status", "/status.json", "/v1"})


class RegistryError(ValueError):
    """A function or replica that conflicts with what the registry already holds."""


@dataclasses.dataclass(eq=False)
class Replica:
    """One running copy of a function, reachable at ``url``."""

    id: str
    function: str
    version: int
    url: str
    healthy: bool = True
    draining: bool = False
    in_flight: int = 0

    @property
    def available(self) -> bool:
        """True when the replica may take new requests."""
        return self.healthy and not self.draining


class Registry:
    """Functions by name and their replicas; the gateway's single source of routing truth."""

    def __init__(self) -> None:
        self._functions: dict[str, Manifest] = {}
        self._replicas: dict[str, list[Replica]] = {}
        self._traffic: dict[str, dict[int, int]] = {}

    def check_function(self, manifest: Manifest) -> None:
        """Raise RegistryError if ``manifest``'s function could not be served beside the others."""
        prefix = manifest.trigger.public_prefix
        if prefix in RESERVED_PREFIXES:
            raise RegistryError(f"{manifest.name}: the prefix {prefix} is reserved by the gateway")
        owner = self.published(prefix) if prefix else None
        if owner is not None and owner.name != manifest.name:
            raise RegistryError(f"{manifest.name}: the prefix {prefix} already belongs to {owner.name}")

    def add_function(self, manifest: Manifest) -> None:
        """Serve ``manifest``'s function (replacing the manifest of a function already known).

        A new function gets no traffic until set_traffic gives its versions weights.
        """
        self.check_function(manifest)
        self._functions[manifest.name] = manifest
        self._replicas.setdefault(manifest.name, [])
        self._traffic.setdefault(manifest.name, {})

    def remove_function(self, name: str) -> None:
        """Stop serving the function ``name`` (its replicas must be stopped already)."""
        self._functions.pop(name, None)
        self._replicas.pop(name, None)
        self._traffic.pop(name, None)

    def set_traffic(self, function: str, weights: Mapping[int, int]) -> None:
        """Share the requests of ``function`` among its versions by weight (versions left out get none)."""
        if function not in self._functions:
            raise RegistryError(f"no function named {function}")
        self._traffic[function] = {version: weight for version, weight in weights.items() if weight > 0}
        log.info("traffic set", extra={"function": function, "traffic": self._traffic[function]})

    def traffic(self, function: str) -> dict[int, int] | None:
        """The weight of each version of ``function`` that takes requests (a copy); None for an unknown function."""
        weights = self._traffic.get(function)
        return None if weights is None else dict(weights)

    def function(self, name: str) -> Manifest | None:
        """The manifest of the function ``name``, if served."""
        return self._functions.get(name)

    def functions(self) -> list[Manifest]:
        """Every function served, by name."""
        return [self._functions[name] for name in sorted(self._functions)]

    def published(self, prefix: str) -> Manifest | None:
        """The function whose public prefix is ``prefix``, if any (private functions have none)."""
        for manifest in self._functions.values():
            if manifest.trigger.public_prefix == prefix:
                return manifest
        return None

    def add_replica(self, replica: Replica) -> None:
        """Route requests for the replica's function to it as well."""
        if replica.function not in self._functions:
            raise RegistryError(f"no function named {replica.function}")
        self._replicas[replica.function].append(replica)
        log.info(
            "replica registered",
            extra={"function": replica.function, "version": replica.version, "replica": replica.id, "url": replica.url},
        )

    def remove_replica(self, replica: Replica) -> None:
        """Stop routing to the replica (nothing happens if it is already gone)."""
        replicas = self._replicas.get(replica.function, [])
        if replica in replicas:
            replicas.remove(replica)
            log.info("replica unregistered", extra={"function": replica.function, "replica": replica.id})

    def replicas(self, function: str | None = None) -> list[Replica]:
        """The replicas of ``function``, or of every function."""
        if function is not None:
            return list(self._replicas.get(function, []))
        return [replica for replicas in self._replicas.values() for replica in replicas]

    def set_health(self, replica: Replica, healthy: bool, reason: str = "") -> None:
        """Record a replica's health; log when it changes."""
        if replica.healthy == healthy:
            return
        replica.healthy = healthy
        log.log(
            logging.INFO if healthy else logging.WARNING,
            "replica healthy" if healthy else "replica unhealthy",
            extra={"function": replica.function, "replica": replica.id, "reason": reason},
        )

    def status(self) -> dict[str, dict[str, int]]:
        """Replicas and available replicas per function."""
        return {
            manifest.name: {
                "replicas": len(self._replicas[manifest.name]),
                "healthy": sum(replica.available for replica in self._replicas[manifest.name]),
            }
            for manifest in self.functions()
        }
