"""The message bus: topology of the play exchange and B's confirmed publisher.

B publishes one persistent message per play to the durable direct exchange
``tombola.plays``; it feeds the queues ``tombola.w1`` and ``tombola.w2``.
A message that fails too often goes through ``tombola.dead`` to its queue's
dead-letter queue (``tombola.w1.dead``, ``tombola.w2.dead``). Each message
carries a stable ``message_id`` (a play's is its play id) that its copies keep.

Every party declares the whole topology: with RabbitMQ that is idempotent, and
Kombu's broker-less filesystem transport (the embedded default) keeps bindings
per process, so the publisher must know every queue it feeds.
"""

from __future__ import annotations

import hashlib
import itertools
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import amqp.exceptions
import kombu
import kombu.exceptions
import kombu.pools
import kombu.transport.filesystem
import kombu.transport.virtual
import kombu.utils.json

from runner.errors import BackendUnavailable
from runner.settings import Settings

PLAYS = kombu.Exchange("tombola.plays", type="direct", durable=True)
DEAD = kombu.Exchange("tombola.dead", type="direct", durable=True)
PLAY_KEY = "play"
PLAY_CONSUMERS = ("w1", "w2")
ATTEMPTS_HEADER = "x-tombola-attempts"
OUTAGES_HEADER = "x-tombola-outages"  # failures because a backend was down: they cost no attempt
ERROR_HEADER = "x-tombola-error"
FIRST_FAILED_HEADER = "x-tombola-first-failed-at"
REPLAYS_HEADER = "x-tombola-replays"
PUBLISH_TIMEOUT = 5.0


def work_queue(name: str) -> kombu.Queue:
    """The durable queue that feeds the queue function ``name``."""
    return kombu.Queue(f"tombola.{name}", PLAYS, routing_key=PLAY_KEY, durable=True)


def dead_letter_queue(name: str) -> kombu.Queue:
    """Where the messages that failed ``name`` too often wait for an operator."""
    return kombu.Queue(f"tombola.{name}.dead", DEAD, routing_key=name, durable=True)


def topology() -> list[kombu.Queue]:
    """Every queue of the pack (declaring a queue declares its exchange and binding)."""
    return [factory(name) for name in PLAY_CONSUMERS for factory in (work_queue, dead_letter_queue)]


def message_id(message: kombu.Message) -> str:
    """A message's stable id: its ``message_id`` property, else a digest of its body."""
    given = (message.properties or {}).get("message_id")
    if given:
        return str(given)
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    return hashlib.sha256(body).hexdigest()[:32]


_SEQUENCE = itertools.count()


class FolderChannel(kombu.transport.filesystem.Channel):
    """Kombu's filesystem channel, first in, first out.

    Kombu names a message file after the millisecond and a random uuid and reads
    the files in name order, so two messages of one millisecond came out in random
    order; a sequence number after the millisecond keeps a publisher's order. The
    file is written aside and renamed: a reader never sees half of it.
    """

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(time.monotonic() * 1000)}_{next(_SEQUENCE):012d}-{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        partial = folder / f".{name}.part"  # not a message file of any queue: it starts with a dot
        try:
            partial.write_text(kombu.utils.json.dumps(payload), encoding="utf-8")
            partial.replace(folder / name)
        except OSError as error:
            raise kombu.exceptions.ChannelError(f"Cannot add file {name!r} to {folder}: {error}") from error


class FolderTransport(kombu.transport.filesystem.Transport):
    """Kombu's filesystem transport, FIFO, with its binding cache per connection, not per process.

    The bindings themselves live in the control folder, shared by every process;
    a process-wide cache would skip writing them into a second folder.
    """

    Channel = FolderChannel

    def __init__(self, client: kombu.Connection, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.state = kombu.transport.virtual.BrokerState()


def connect(settings: Settings) -> kombu.Connection:
    """A connection to the broker; the filesystem transport keeps its folders under TOMBOLA_HOME."""
    if settings.broker_url.startswith("filesystem"):
        folder = settings.home / "bus"
        for sub in ("messages", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": str(folder / "messages"),
            "data_folder_out": str(folder / "messages"),
            "control_folder": str(folder / "control"),
            "polling_interval": 0.05,
        }
        return kombu.Connection(transport=FolderTransport, transport_options=options)
    options = {"confirm_publish": True}
    return kombu.Connection(settings.broker_url, transport_options=options, connect_timeout=3, heartbeat=0)


def broker_errors(connection: kombu.Connection) -> tuple[type[BaseException], ...]:
    """The exceptions that mean the broker cannot take or give a message now."""
    return (
        kombu.exceptions.KombuError,
        amqp.exceptions.AMQPError,
        amqp.exceptions.MessageNacked,
        OSError,
        socket.timeout,
        *connection.connection_errors,
        *connection.channel_errors,
    )


class Publisher:
    """Publishes plays as persistent JSON messages and waits for the broker's confirm."""

    def __init__(self, settings: Settings, pool_size: int = 16) -> None:
        self.connection = connect(settings)
        self.errors = broker_errors(self.connection)
        # Our own pool: Kombu's global pools are keyed by URL and would mix up two brokers of one URL.
        self.producers = kombu.pools.ProducerPool(self.connection.Pool(limit=pool_size), limit=pool_size)

    def publish_play(self, message: dict[str, Any]) -> None:
        """Publish one play; raise BackendUnavailable unless the broker confirmed it."""
        try:
            with self.producers.acquire(block=True, timeout=PUBLISH_TIMEOUT) as producer:
                try:
                    producer.publish(
                        message,
                        exchange=PLAYS,
                        routing_key=PLAY_KEY,
                        serializer="json",
                        delivery_mode=kombu.entity.PERSISTENT_DELIVERY_MODE,
                        declare=topology(),
                        message_id=message["play_id"],
                        retry=True,
                        retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
                        timeout=PUBLISH_TIMEOUT,
                        confirm_timeout=PUBLISH_TIMEOUT,
                    )
                except BaseException:
                    # Drop the connection without the closing handshake: a broker that blocks publishers
                    # (resource alarm) would never answer it. Nor may a late confirm pass for the next message's.
                    producer.connection.collect()
                    raise
        except self.errors as error:
            raise BackendUnavailable("message broker", f"{type(error).__name__}: {error}") from error
