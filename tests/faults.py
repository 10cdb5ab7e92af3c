"""What the fault tests share: a running load of plays, a look at the pack's replicas, waiting, the bus's queues."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import kombu
import requests

from runner import bus
from tests.mailsink import MailSink
from tests.pack import Pack

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll ``condition`` until it returns something true; return it; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not true after {timeout:.0f} s (last: {value!r})")
        time.sleep(interval)


@contextlib.contextmanager
def frozen(*pids: int) -> Iterator[None]:
    """Hold replicas still (SIGSTOP) so that work queues up for them; they go on where they were (SIGCONT)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def control(pack: Pack) -> requests.Session:
    """A session on the pack's control plane (internal listener, the pack's token)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {pack.env['TOMBOLA_TOKEN']}"
    return session


def replicas(pack: Pack, function: str) -> list[dict[str, Any]]:
    """``/v1/replicas`` of one function: id, url, pid, healthy, state ..."""
    answer = control(pack).get(f"{pack.internal_url}/v1/replicas", params={"function": function}, timeout=5)
    answer.raise_for_status()
    return answer.json()["replicas"]


def pids(pack: Pack, functions: Iterable[str]) -> dict[str, set[int]]:
    """The process ids of each function's replicas."""
    return {function: {replica["pid"] for replica in replicas(pack, function)} for function in functions}


def health(replica: dict[str, Any]) -> dict[str, Any]:
    """A replica's own ``/healthz`` answer (a queue replica adds its counters: consumed, failed, dead_lettered)."""
    return requests.get(f"{replica['url']}/healthz", timeout=5).json()


def all_healthy(pack: Pack, functions: Iterable[str]) -> bool:
    return all(replica["healthy"] for function in functions for replica in replicas(pack, function))


def queue_depth(broker_url: str, name: str) -> int:
    """Messages ready in the queue ``tombola.<name>`` (declared passively: it must exist)."""
    with kombu.Connection(broker_url, connect_timeout=5) as connection:
        queue = kombu.Queue(f"tombola.{name}", channel=connection.default_channel)
        return queue.queue_declare(passive=True).message_count


def dead_letters(broker_url: str) -> int:
    """Messages waiting in every dead-letter queue of the pack."""
    with kombu.Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.default_channel
        return sum(
            kombu.Queue(bus.dead_letter_queue(name).name, channel=channel).queue_declare(passive=True).message_count
            for name in bus.PLAY_CONSUMERS
        )


def mails_by_customer(mail_sink: MailSink) -> dict[int, int]:
    """How many admin mails each customer's play got (subject ``Tombola: customer N won …``)."""
    counts: dict[int, int] = {}
    for mail in mail_sink.mails():
        customer = int(mail["subject"].split("customer ", 1)[1].split(" ", 1)[0])
        counts[customer] = counts.get(customer, 0) + 1
    return counts


def status(pack: Pack, customer: int) -> dict[str, Any]:
    """S's answer for the customer (it must answer 200)."""
    answer = requests.get(f"{pack.url}/srvs/user/{customer}", timeout=10)
    answer.raise_for_status()
    return answer.json()


def picture(pack: Pack, customer: int) -> str:
    """P's status for the customer: ``ok`` once W1 stored the picture, else ``ko``."""
    return requests.get(f"{pack.url}/srvp/user/{customer}", timeout=10).json()["status"]


def _body(answer: requests.Response) -> dict[str, Any]:
    try:
        return answer.json()
    except ValueError:
        return {"not_json": answer.text[:500]}


@dataclasses.dataclass(frozen=True)
class Answer:
    """One play as the customer saw it (status 0: the request got no answer)."""

    customer: int
    status: int
    body: dict[str, Any]
    retry_after: str | None
    started: float
    ended: float


class PlayLoad:
    """Threads that each play fresh customers, one after the other, and record every answer."""

    def __init__(self, pack: Pack, first_customer: int, threads: int = 6) -> None:
        self.pack = pack
        self.customers = itertools.count(first_customer)
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._play, daemon=True) for _ in range(threads)]

    def __enter__(self) -> PlayLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _play(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            with self._lock:
                customer = next(self.customers)
            started = time.monotonic()
            try:
                answer = session.post(f"{self.pack.url}/srvb/user/{customer}", timeout=60)
            except requests.RequestException as error:  # recorded as status 0: no answer at all
                seen = Answer(customer, 0, {"error": repr(error)}, None, started, time.monotonic())
            else:
                seen = Answer(customer, answer.status_code, _body(answer), answer.headers.get("Retry-After"), started, time.monotonic())
            with self._lock:
                self.answers.append(seen)

    def count(self, status: int, since: float = 0.0) -> int:
        """Answers with ``status`` to plays that started at ``since`` (time.monotonic) or later."""
        with self._lock:
            return sum(1 for answer in self.answers if answer.status == status and answer.started >= since)
