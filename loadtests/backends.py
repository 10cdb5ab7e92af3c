"""The backends of the benchmark's pack: embedded, or RabbitMQ + MariaDB + Swift as the tests use them.

``services``: a scratch MariaDB database and a scratch RabbitMQ vhost made and
dropped the way tests/conftest.py makes them (run ``python -m tests.services``
first), and a Swift all-in-one of tests/swift_server.py for the pictures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.conftest import MARIADB, rabbitmq_vhost
from tests.swift_server import SwiftServer

KINDS = ("embedded", "services")


@contextlib.contextmanager
def backends(kind: str) -> Iterator[dict[str, str]]:
    """The TOMBOLA_* variables of the pack's backends of ``kind`` (see KINDS), for as long as they are needed."""
    if kind == "embedded":
        yield {}
        return
    if kind != "services":
        raise ValueError(f"backends must be one of {', '.join(KINDS)}, not {kind!r}")
    with MARIADB.scratch_database() as database, rabbitmq_vhost() as broker, SwiftServer() as swift:
        yield {
            "TOMBOLA_DATABASE_URL": database,
            "TOMBOLA_BROKER_URL": broker,
            **swift.settings_env("swift"),
            "TOMBOLA_CONTAINER": "tombola-bench",
        }
