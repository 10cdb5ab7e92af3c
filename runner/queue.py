"""The queue runner: one replica of a queue function as a Kombu consumer.

Each message is delivered to the function's own Falcon app, in process, as
``POST <trigger.path>`` with the message as JSON — the same handler the control
plane can invoke over HTTP. The answer decides the message's fate:

- 2xx: done, acknowledged;
- 4xx: the message itself is bad: straight to the dead-letter queue;
- 503: a backend the function needs (database, object store, mail API) is
  unavailable — an outage, not the message's fault: published again after a
  backoff without counting an attempt, so no outage, however long, dead-letters
  a message;
- any other 5xx or a crash: published again with one more attempt after a
  backoff, and after ``TOMBOLA_MAX_ATTEMPTS`` attempts to the dead-letter queue.

The backoff doubles with each failure of the message, from
``TOMBOLA_RETRY_BACKOFF`` up to MAX_BACKOFF seconds.

A message is acknowledged only after its retry or dead-letter copy was
published, so a replica killed at any moment loses nothing (the broker
redelivers); handlers are idempotent, so a redelivery is harmless.
Kombu's ConsumerMixin reconnects by itself when the broker restarts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import falcon
import falcon.testing
import gevent
import kombu
import kombu.mixins

from runner import bus
from runner.app import TIMEOUT_HEADER
from runner.database import isoformat, utcnow
from runner.function import Function
from runner.settings import Settings

log = logging.getLogger("tombola.queue")

OUTAGE = 503  # the handler's answer when a backend is unavailable (runner.errors)
MAX_BACKOFF = 30.0


def backoff(first: float, failures: int) -> float:
    """Seconds to wait after a message's ``failures``-th failure: ``first``, doubling, at most MAX_BACKOFF."""
    return min(first * 2 ** min(failures - 1, 16), MAX_BACKOFF)


def deliver(app: falcon.App, path: str, body: Any, timeout: float) -> tuple[int, str]:
    """Run one message through the function's app; return its status code and body."""
    payload = json.dumps(body).encode()
    environ = falcon.testing.create_environ(
        path=path,
        method="POST",
        body=payload,
        headers={"Content-Type": "application/json", TIMEOUT_HEADER: str(timeout)},
    )
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(line)

    chunks = app(environ, start_response)
    text = b"".join(chunks).decode("utf-8", "replace")
    return int(status[0].split(" ", 1)[0]), text


@dataclasses.dataclass
class Counters:
    """What a queue replica has done with its messages (shown on /healthz)."""

    consumed: int = 0
    failed: int = 0
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class QueueConsumer(kombu.mixins.ConsumerMixin):
    """Consumes the function's queue, one message at a time, with retries and dead-lettering."""

    def __init__(self, function: Function, app: falcon.App, settings: Settings, counters: Counters) -> None:
        self.function = function
        self.app = app
        self.settings = settings
        self.counters = counters
        self.connection = bus.connect(settings)
        self.queue = bus.work_queue(function.manifest.trigger.queue or function.name)
        self.dead_letters = bus.dead_letter_queue(function.manifest.trigger.queue or function.name)
        self.producer: kombu.Producer | None = None

    def get_consumers(self, Consumer: Any, channel: Any) -> list[kombu.Consumer]:  # noqa: N803 (Kombu's name)
        self.producer = kombu.Producer(channel)
        for queue in bus.topology():
            queue.bind(channel).declare()
        consumer = Consumer(queues=[self.queue], callbacks=[self.on_message], accept=["json"])
        consumer.qos(prefetch_count=1)
        return [consumer]

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        log.warning("broker unreachable, retrying", extra={"error": str(exc), "retry_in": interval})

    def on_connection_revived(self) -> None:
        log.info("connected to broker", extra={"queue": self.queue.name})

    def on_message(self, body: Any, message: kombu.Message) -> None:
        headers = message.headers or {}
        attempts = int(headers.get(bus.ATTEMPTS_HEADER, 0))
        outages = int(headers.get(bus.OUTAGES_HEADER, 0))
        try:
            status, text = deliver(self.app, self.function.manifest.trigger.path or "/", body, self.function.manifest.limits.timeout)
        except Exception as error:  # the runner must outlive any handler failure
            status, text = 500, f"{type(error).__name__}: {error}"
        if 200 <= status < 300:
            self.counters.consumed += 1
            message.ack()
            return
        self.counters.failed += 1
        if status == OUTAGE:
            outages += 1
        else:
            attempts += 1
        counts = {bus.ATTEMPTS_HEADER: attempts, bus.OUTAGES_HEADER: outages}
        if 400 <= status < 500 or attempts >= self.settings.max_attempts:
            self._dead_letter(body, message, counts, f"{status} {text[:500]}")
            return
        delay = backoff(self.settings.retry_backoff, attempts + outages)
        log.warning(
            "message failed, retrying",
            extra={"status": status, "attempt": attempts, "outages": outages, "retry_in": delay, "error": text[:300]},
        )
        gevent.sleep(delay)
        self._publish(body, message, self.queue.name, "", counts, text)
        message.ack()

    def _dead_letter(self, body: Any, message: kombu.Message, counts: dict[str, int], error: str) -> None:
        log.error(
            "message dead-lettered",
            extra={"queue": self.queue.name, "attempt": counts[bus.ATTEMPTS_HEADER], "error": error[:300]},
        )
        self._publish(body, message, self.dead_letters.routing_key, bus.DEAD.name, counts, error)
        self.counters.dead_lettered += 1
        message.ack()

    def _publish(
        self, body: Any, message: kombu.Message, routing_key: str, exchange: str, counts: dict[str, int], error: str
    ) -> None:
        assert self.producer is not None
        headers = dict(message.headers or {})
        headers.setdefault(bus.FIRST_FAILED_HEADER, isoformat(utcnow()))
        headers.update({**counts, bus.ERROR_HEADER: error[:500]})
        self.producer.publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            serializer="json",
            headers=headers,
            message_id=bus.message_id(message),
            delivery_mode=kombu.entity.PERSISTENT_DELIVERY_MODE,
        )


def serve_queue(function: Function, host: str, port: int, version: str) -> int:
    """Run a queue replica until SIGTERM/SIGINT; the message in hand is finished first."""
    import signal

    import gevent.event
    import gevent.pywsgi

    from runner import logs
    from runner.app import create_app
    from runner.context import Context
    from runner.limits import limit_memory

    logs.configure(function=function.name, version=version)
    limit_memory(function.manifest.limits.memory_mb)
    settings = Settings.from_environ()
    counters = Counters()
    app = create_app(function, Context(settings, function.manifest), version, details=counters.as_dict)
    consumer = QueueConsumer(function, app, settings, counters)
    server = gevent.pywsgi.WSGIServer((host, port), app, log=None, error_log=log)
    server.start()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    worker = gevent.spawn(consumer.run)
    worker.link(lambda _: stop.set())
    log.info("queue replica started", extra={"queue": consumer.queue.name, "port": port})
    stop.wait()
    consumer.should_stop = True
    worker.join(timeout=function.manifest.limits.timeout + 5)
    server.stop(timeout=5)
    log.info("queue replica stopped", extra=counters.as_dict())
    return 0
