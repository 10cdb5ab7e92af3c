"""Which replica takes the next request: a version by its weight, then the least busy of its replicas.

The version comes from the function's traffic in the registry (e.g. 90/10
during a canary), by smooth weighted round-robin among the versions that have
an available replica: over any run of requests each version's share is exact
to one request. Within the version, the replica with the fewest requests in
flight wins; ties go round-robin (per version).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from gateway.registry import Registry, Replica


class Balancer:
    """Picks replicas; without a registry (or for a function it does not know), every version is welcome."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry
        self._turns: dict[tuple[str, int | None], int] = {}  # per function, and per version when weighted
        self._credits: dict[str, dict[int, int]] = {}

    def choose(self, replicas: Iterable[Replica], exclude: Collection[Replica] = ()) -> Replica | None:
        """The replica for the next request, or None when no replica may take it."""
        candidates = [replica for replica in replicas if replica.available and replica not in exclude]
        if not candidates:
            return None
        function = candidates[0].function
        weights = self.registry.traffic(function) if self.registry is not None else None
        if weights is not None:
            offered = {replica.version for replica in candidates}
            version = self._version(function, {version: weights[version] for version in weights if version in offered})
            if version is None:
                return None
            candidates = [replica for replica in candidates if replica.version == version]
        fewest = min(replica.in_flight for replica in candidates)
        least_busy = [replica for replica in candidates if replica.in_flight == fewest]
        key = (function, least_busy[0].version if weights is not None else None)
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return least_busy[turn % len(least_busy)]

    def _version(self, function: str, weights: dict[int, int]) -> int | None:
        """Smooth weighted round-robin: each version earns its weight, the richest takes the request and pays the total."""
        if not weights:
            return None
        earned = self._credits.get(function, {})
        credits = {version: earned.get(version, 0) + weight for version, weight in sorted(weights.items())}
        chosen = max(credits, key=credits.__getitem__)
        credits[chosen] -= sum(weights.values())
        self._credits[function] = credits
        return chosen
