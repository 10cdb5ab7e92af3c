"""The control plane as the benchmark uses it: scale a function, list its replicas, watch their count.

``PUT /v1/functions/{name}/scaling`` with ``{"replicas", "min", "max"}`` and
``GET /v1/replicas?function=`` through gateway.client (the ``tombola``
command's own client).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from gateway.client import Client, ClientError

READY_TIMEOUT = 60.0


class ScalingError(RuntimeError):
    """The replicas asked for did not become ready in time."""


class Scaling:
    """Scale the pack's functions and read their replicas."""

    def __init__(self, url: str, token: str) -> None:
        self.client = Client(url, token)

    def replicas(self, function: str) -> list[dict[str, Any]]:
        """The replicas of ``function`` that take requests (healthy and not draining)."""
        listed = self.client.get("/v1/replicas", function=function)["replicas"]
        return [replica for replica in listed if replica.get("healthy") and not replica.get("draining")]

    def urls(self, function: str) -> list[str]:
        """The base URLs of ``function``'s replicas that take requests."""
        return sorted(replica["url"] for replica in self.replicas(function))

    def scale(self, function: str, replicas: int, low: int, high: int) -> None:
        """Run ``replicas`` replicas of ``function``, the autoscaler kept within [low, high]; wait until they are."""
        self.client.request(
            "PUT", f"/v1/functions/{function}/scaling", json_body={"replicas": replicas, "min": low, "max": high}
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while len(self.replicas(function)) != replicas:
            if time.monotonic() > deadline:
                raise ScalingError(f"{function} did not reach {replicas} ready replicas in {READY_TIMEOUT:.0f} s")
            time.sleep(0.2)

    def pin(self, function: str, replicas: int) -> None:
        """Exactly ``replicas`` replicas of ``function``, whatever its load."""
        self.scale(function, replicas, replicas, replicas)


class ReplicaWatch:
    """Counts a function's ready replicas twice a second in a thread: ``[(unix time, count), ...]``."""

    def __init__(self, scaling: Scaling, function: str, interval: float = 0.5) -> None:
        self.scaling = scaling
        self.function = function
        self.interval = interval
        self.counts: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"watch-{function}", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(ClientError):  # a busy gateway: the next sample will tell
                self.counts.append((time.time(), len(self.scaling.replicas(self.function))))
            self._stop.wait(self.interval)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
