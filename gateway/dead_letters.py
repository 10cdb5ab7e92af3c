"""Dead letters: the messages a queue function gave up on, listed, replayed or purged by an operator.

A queue runner moves a message to its function's dead-letter queue
(``tombola.<queue>.dead``, runner.bus) when the function answered 4xx, or after
``TOMBOLA_MAX_ATTEMPTS`` failures. The message keeps its body and its
``message_id`` (a play's is its play id); its headers say how many attempts it
had, the last error and when it first failed.

Every operation here is one *turn* of the queue, through Kombu, on RabbitMQ
and on the filesystem transport alike: each message the queue held when the
turn began is taken from the head, once, and either copied back to the tail
unchanged (kept), published to the function's work queue with its attempts
reset (replayed), or dropped (purged). The original is acknowledged only
after its copy was published — with publisher confirms on RabbitMQ — so a
failure half-way loses nothing: at worst a message is there twice, with one
id (the functions are idempotent). A listing keeps every message: the queue
ends as it began, same messages, bodies, headers and ids, in the same order.

Why not get without acknowledging, then requeue? RabbitMQ puts a requeued
message back where it was, but the filesystem transport appends it at the
tail, and holding a whole queue unacknowledged holds it all in memory; a turn
holds one message at a time. Messages that arrive during a turn (another
dead letter, a replayed message that fails again) wait for the next one. A
gateway runs one turn of a queue at a time; a turn reads the whole queue, so
it costs what the queue holds: a dead-letter queue is meant to stay short.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
from collections.abc import Callable
from typing import Any

import kombu
import kombu.exceptions

from runner import bus
from runner.errors import BackendUnavailable
from runner.settings import Settings

SUMMARY_LENGTH = 160
SHORT_VALUE = 40
CONNECT_RETRIES = 0  # an operator retries; an API call should not wait on a broker that is down


class Fate(enum.Enum):
    """What a turn does with one dead letter."""

    KEEP = "keep"
    REPLAY = "replay"
    DROP = "drop"


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """What an operator needs to know of one dead letter."""

    id: str
    attempts: int
    error: str
    first_failed_at: str | None
    replays: int
    summary: str

    @classmethod
    def of(cls, message: kombu.Message) -> DeadLetter:
        headers = message.headers or {}
        first_failed = headers.get(bus.FIRST_FAILED_HEADER)
        return cls(
            id=bus.message_id(message),
            attempts=_count(headers.get(bus.ATTEMPTS_HEADER)),
            error=str(headers.get(bus.ERROR_HEADER) or ""),
            first_failed_at=None if first_failed is None else str(first_failed),
            replays=_count(headers.get(bus.REPLAYS_HEADER)),
            summary=_summary(message),
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Listing:
    """The first dead letters of a queue, oldest first, and how many it holds."""

    queue: str
    count: int
    dead_letters: list[DeadLetter]

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "count": self.count, "dead_letters": [letter.as_dict() for letter in self.dead_letters]}


@dataclasses.dataclass(frozen=True)
class Selection:
    """The dead letters an operation takes: those with one of ``ids``, or every one."""

    ids: frozenset[str] = frozenset()
    every: bool = False

    def __contains__(self, letter: DeadLetter) -> bool:
        return self.every or letter.id in self.ids


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a replay or purge did: how many dead letters it took, and the ids asked for that were not there."""

    queue: str
    count: int
    missing: list[str]


def _count(value: Any) -> int:
    """A counter header as a number (0 when absent or not a whole number)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHORT_VALUE else f"<{len(text)} chars>"


def _summary(message: kombu.Message) -> str:
    """One line about a message's body: its fields, long values abbreviated (a play's picture among them)."""
    try:
        body = message.decode()
    except (kombu.exceptions.DecodeError, kombu.exceptions.ContentDisallowed):
        return f"<{len(message.body or b'')} bytes of {message.content_type or 'unknown type'}>"
    text = ", ".join(f"{key}={_short(value)}" for key, value in body.items()) if isinstance(body, dict) else _short(body)
    return text if len(text) <= SUMMARY_LENGTH else text[: SUMMARY_LENGTH - 1] + "…"


def _replayed(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers of a replayed message: its failures forgotten, its replays counted."""
    failures = (bus.ATTEMPTS_HEADER, bus.OUTAGES_HEADER, bus.ERROR_HEADER, bus.FIRST_FAILED_HEADER)
    kept = {key: value for key, value in headers.items() if key not in failures}
    kept[bus.REPLAYS_HEADER] = _count(headers.get(bus.REPLAYS_HEADER)) + 1
    return kept


class DeadLetters:
    """The dead-letter queues of the pack's queue functions, on the pack's broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._turns: dict[str, threading.Lock] = {}

    def list(self, queue: str, limit: int) -> Listing:
        """The first ``limit`` dead letters of ``queue`` (a function's queue name, e.g. ``w1``); none is removed."""
        shown: list[DeadLetter] = []

        def keep(letter: DeadLetter) -> Fate:
            if len(shown) < limit:
                shown.append(letter)
            return Fate.KEEP

        count = self._turn(queue, keep)
        return Listing(bus.dead_letter_queue(queue).name, count, shown)

    def replay(self, queue: str, selection: Selection) -> Outcome:
        """Send the selected dead letters back to the function's work queue, their attempts reset."""
        return self._take(queue, selection, Fate.REPLAY)

    def purge(self, queue: str, selection: Selection) -> Outcome:
        """Delete the selected dead letters."""
        return self._take(queue, selection, Fate.DROP)

    def _take(self, queue: str, selection: Selection, fate: Fate) -> Outcome:
        found: set[str] = set()

        def decide(letter: DeadLetter) -> Fate:
            if letter not in selection:
                return Fate.KEEP
            found.add(letter.id)
            return fate

        self._turn(queue, decide)
        return Outcome(bus.dead_letter_queue(queue).name, len(found), sorted(selection.ids - found))

    def _turn(self, queue: str, decide: Callable[[DeadLetter], Fate]) -> int:
        """Take each message ``queue``'s dead-letter queue holds now, once, and do what ``decide`` says; how many."""
        work, dead = bus.work_queue(queue), bus.dead_letter_queue(queue)
        with self._turns.setdefault(queue, threading.Lock()):
            connection = bus.connect(self.settings)
            errors = bus.broker_errors(connection)
            try:
                with connection:
                    connection.ensure_connection(max_retries=CONNECT_RETRIES)
                    channel = connection.default_channel
                    work(channel).declare()
                    letters = dead(channel)
                    letters.declare()
                    _, holds, _ = letters.queue_declare(passive=True)
                    producer = kombu.Producer(channel)
                    taken = 0
                    while taken < holds and (message := letters.get(no_ack=False, accept=["json"])) is not None:
                        fate = decide(DeadLetter.of(message))
                        if fate is Fate.KEEP:
                            _publish(producer, message, dead.name, dict(message.headers or {}))
                        elif fate is Fate.REPLAY:
                            _publish(producer, message, work.name, _replayed(dict(message.headers or {})))
                        message.ack()
                        taken += 1
                    return taken
            except errors as error:
                raise BackendUnavailable("message broker", f"{type(error).__name__}: {error}") from error


def _publish(producer: kombu.Producer, message: kombu.Message, queue: str, headers: dict[str, Any]) -> None:
    """Publish ``message`` as it is (body, content type, id) to ``queue`` with ``headers``; return once confirmed."""
    producer.publish(
        message.body,
        exchange="",
        routing_key=queue,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        headers=headers,
        message_id=bus.message_id(message),
        delivery_mode=kombu.entity.PERSISTENT_DELIVERY_MODE,
        timeout=bus.PUBLISH_TIMEOUT,
        confirm_timeout=bus.PUBLISH_TIMEOUT,
    )
