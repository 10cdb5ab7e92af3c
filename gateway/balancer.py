"""Which replica takes the next request: the least busy one, in turn among equals."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from gateway.registry import Replica


class Balancer:
    """Least in-flight requests among the available replicas; ties go round-robin per function."""

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}

    def choose(self, replicas: Iterable[Replica], exclude: Collection[Replica] = ()) -> Replica | None:
        """The replica for the next request, or None when no replica may take it."""
        candidates = [replica for replica in replicas if replica.available and replica not in exclude]
        if not candidates:
            return None
        fewest = min(replica.in_flight for replica in candidates)
        least_busy = [replica for replica in candidates if replica.in_flight == fewest]
        function = least_busy[0].function
        turn = self._turns.get(function, 0)
        self._turns[function] = turn + 1
        return least_busy[turn % len(least_busy)]
