"""The OpenStack Swift object store, through python-swiftclient.

Authenticates with v1 (tempauth, ``account:user`` and key) or v3 Keystone
(which needs python-keystoneclient installed). A replica keeps a small pool of
connections; each is used by one greenlet or thread at a time, keeps its token
and its HTTP keep-alive, and re-authenticates when the token expires.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import functools
import hashlib
import logging
import queue
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests
from swiftclient import ClientException, Connection

from runner.errors import BackendUnavailable
from runner.objectstore.base import BACKEND, ObjectInfo, StoredObject, check_container, check_key
from runner.settings import Settings

T = TypeVar("T")
TIMEOUT = 5.0  # seconds to connect, and between bytes of an answer
POOL_SIZE = 16
# swiftclient logs each failed request at INFO, a 404 for every picture not stored yet included;
# this store reports real failures itself, as BackendUnavailable.
logging.getLogger("swiftclient").setLevel(logging.WARNING)


def connect(settings: Settings) -> Connection:
    """A Swift connection as ``settings`` describe it (it authenticates on first use)."""
    options: dict[str, Any] = {}
    if settings.swift_auth_version.startswith("3"):
        options = {
            "project_name": settings.swift_project,
            "user_domain_name": settings.swift_user_domain,
            "project_domain_name": settings.swift_project_domain,
            "region_name": settings.swift_region or None,
        }
    return Connection(
        authurl=settings.swift_auth_url,
        user=settings.swift_user,
        key=settings.swift_key,
        auth_version=settings.swift_auth_version,
        os_options=options,
        timeout=TIMEOUT,
        retries=1,
        starting_backoff=0.2,
        max_backoff=1,
    )


class ConnectionPool:
    """At most ``size`` connections, made on demand, each lent to one caller at a time."""

    def __init__(self, connect: Callable[[], Connection], size: int = POOL_SIZE, wait: float = TIMEOUT) -> None:
        self._connect = connect
        self._wait = wait
        # Last in, first out: the most recently used (warm) connection goes first; None is a free slot.
        self._idle: queue.LifoQueue[Connection | None] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(None)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            lent = self._idle.get(timeout=self._wait)
        except queue.Empty:
            raise BackendUnavailable(BACKEND, f"no free connection within {self._wait:g} s") from None
        try:
            if lent is None:
                lent = self._connect()
            yield lent
        finally:
            self._idle.put(lent)


def _last_modified(headers: dict[str, str]) -> datetime.datetime:
    return email.utils.parsedate_to_datetime(headers["last-modified"]).astimezone(datetime.UTC)


class SwiftStore:
    """A Swift container."""

    def __init__(self, container: str, pool: ConnectionPool) -> None:
        self.container = check_container(container)
        self._pool = pool

    @classmethod
    def from_settings(cls, settings: Settings) -> SwiftStore:
        return cls(settings.container, ConnectionPool(functools.partial(connect, settings)))

    def ensure_container(self) -> None:
        self._call(lambda connection: connection.put_container(self.container))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        check_key(key)
        etag = hashlib.md5(data).hexdigest()

        def put(connection: Connection) -> Any:  # the ETag Swift answers
            return connection.put_object(self.container, key, data, content_type=content_type, etag=etag)

        if self._call(put) is None:  # 404: the container is missing
            self.ensure_container()
            if self._call(put) is None:
                raise BackendUnavailable(BACKEND, f"container {self.container} vanished while storing {key}")

    def get(self, key: str) -> StoredObject | None:
        check_key(key)
        answer = self._call(lambda connection: connection.get_object(self.container, key))
        if answer is None:
            return None
        headers, data = answer
        return StoredObject(data, headers["content-type"], headers["etag"].strip('"'), _last_modified(headers))

    def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        headers = self._call(lambda connection: connection.head_object(self.container, key))
        if headers is None:
            return None
        return ObjectInfo(
            headers["content-type"], headers["etag"].strip('"'), _last_modified(headers), int(headers["content-length"])
        )

    def delete(self, key: str) -> None:
        check_key(key)
        self._call(lambda connection: connection.delete_object(self.container, key))

    def _call(self, request: Callable[[Connection], T]) -> T | None:
        """Run ``request`` on a pooled connection; None when Swift answers 404."""
        with self._pool.connection() as connection:
            try:
                return request(connection)
            except ClientException as error:
                if error.http_status == 404:
                    return None
                raise BackendUnavailable(BACKEND, f"Swift: {error}") from error
            except (OSError, requests.RequestException) as error:
                raise BackendUnavailable(BACKEND, f"Swift: {type(error).__name__}: {error}") from error
