"""Locust scenarios for tombola: real players, read-only browsers, and the slow worker.

Run against any pack (only ``--host`` is needed)::

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 Player Browser

- **Player** opens the page, reads I, S and P, plays once with a fresh customer
  id, then polls S and P until the prize appears ("time to prize").
- **Browser** reads I, S and P of existing customers, and the prize picture
  with conditional GETs (ETag → 304).
- **SlowWorker** only plays, to measure W (reached through B) under load.

Custom metrics appear as pseudo-requests of type ``METRIC``: ``play completed``
(the play's latency), ``time to prize``, ``409 already played`` and
``503 busy``. Fresh ids never collide, across distributed workers too: each
worker takes its own block of ids (``--first-id``, ``--ids-per-worker``).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment

PRIZE_POLL_INTERVAL = 0.25
PRIZE_POLL_LIMIT = 30.0


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("tombola")
    group.add_argument("--first-id", type=int, default=1, env_var="TOMBOLA_FIRST_ID", help="first fresh customer id to play")
    group.add_argument(
        "--ids-per-worker", type=int, default=100_000, env_var="TOMBOLA_IDS_PER_WORKER",
        help="size of each Locust worker's block of fresh ids",
    )
    group.add_argument(
        "--browse-ids", type=int, default=10_000, env_var="TOMBOLA_BROWSE_IDS",
        help="Browser reads customers 1..N (existing ids)",
    )


class FreshIds:
    """Customer ids that no other user, here or on another Locust worker, will play."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: itertools.count[int] | None = None

    def take(self, environment: Environment) -> int:
        with self._lock:
            if self._ids is None:
                options = environment.parsed_options
                worker = getattr(environment.runner, "worker_index", 0) or 0
                first = (options.first_id if options else 1) + worker * (options.ids_per_worker if options else 100_000)
                self._ids = itertools.count(first)
            return next(self._ids)


fresh_ids = FreshIds()


def record(environment: Environment, name: str, milliseconds: float, exception: Exception | None = None) -> None:
    """A custom metric, shown by Locust as a pseudo-request of type METRIC."""
    environment.events.request.fire(
        request_type="METRIC", name=name, response_time=milliseconds, response_length=0, exception=exception, context={}
    )


class PlayFailed(Exception):
    """A play that did not end with a prize."""


class Playing(HttpUser):
    """What Player and SlowWorker share: one play with a fresh id."""

    abstract = True

    def play(self, customer: int) -> bool:
        """POST the play; True when it was accepted."""
        started = time.perf_counter()
        with self.client.post(f"/srvb/user/{customer}", name="/srvb/user/[id]", catch_response=True) as answer:
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code == 200:
                record(self.environment, "play completed", elapsed)
                return True
            if answer.status_code == 409:
                record(self.environment, "409 already played", elapsed)
                answer.failure("409: a fresh id was already played")
            elif answer.status_code == 503:
                record(self.environment, "503 busy", elapsed)
                answer.failure("503: prize service busy")
            else:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
            return False


class Player(Playing):
    """A customer: the page, I, S, P, one play, then waiting for the prize."""

    wait_time = between(0.5, 1.5)

    @task
    def play_once(self) -> None:
        customer = fresh_ids.take(self.environment)
        self.client.get(f"/?id={customer}", name="/ (page)")
        self.client.get(f"/srvi/user/{customer}", name="/srvi/user/[id]")
        self.client.get(f"/srvs/user/{customer}", name="/srvs/user/[id]")
        self.client.get(f"/srvp/user/{customer}", name="/srvp/user/[id]")
        started = time.perf_counter()
        if not self.play(customer):
            return
        self.wait_for_prize(customer, started)

    def wait_for_prize(self, customer: int, started: float) -> None:
        while time.perf_counter() - started < PRIZE_POLL_LIMIT:
            status = self.client.get(f"/srvs/user/{customer}", name="/srvs/user/[id]")
            picture = self.client.get(f"/srvp/user/{customer}", name="/srvp/user/[id]")
            if status.ok and picture.ok and status.json().get("status") == "played" and picture.json().get("status") == "ok":
                record(self.environment, "time to prize", (time.perf_counter() - started) * 1000)
                return
            time.sleep(PRIZE_POLL_INTERVAL)
        record(self.environment, "time to prize", PRIZE_POLL_LIMIT * 1000, PlayFailed(f"no prize for {customer}"))


class SlowWorker(Playing):
    """Plays back to back: W's throughput and latency, seen through B."""

    wait_time = between(0, 0.1)

    @task
    def play_only(self) -> None:
        self.play(fresh_ids.take(self.environment))


class Browser(HttpUser):
    """Read-only traffic on existing customers, with conditional GETs of the pictures."""

    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.browse_ids = options.browse_ids if options else 10_000
        self.etags: dict[int, str] = {}

    def some_customer(self) -> int:
        return random.randint(1, self.browse_ids)

    @task(3)
    def identify(self) -> None:
        self.client.get(f"/srvi/user/{self.some_customer()}", name="/srvi/user/[id]")

    @task(3)
    def status(self) -> None:
        self.client.get(f"/srvs/user/{self.some_customer()}", name="/srvs/user/[id]")

    @task(2)
    def picture(self) -> None:
        self.client.get(f"/srvp/user/{self.some_customer()}", name="/srvp/user/[id]")

    @task(2)
    def image(self) -> None:
        customer = self.some_customer()
        headers = {"If-None-Match": self.etags[customer]} if customer in self.etags else {}
        with self.client.get(f"/srvp/user/{customer}/image", headers=headers, name="/srvp/user/[id]/image", catch_response=True) as answer:
            if answer.status_code == 200:
                self.etags[customer] = answer.headers.get("ETag", "")
            elif answer.status_code in (304, 404):
                answer.success()  # 304: the cached picture is current; 404: this customer has not played
