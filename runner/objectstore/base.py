"""What every object store offers: the objects, their metadata and the rules for names."""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Protocol

from runner.settings import SettingsError

# The backend name in BackendUnavailable errors (and so in 503 answers and logs).
BACKEND = "object store"
MAX_KEY_LENGTH = 128
KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
# DNS-style, so the same name works as a Swift container and an S3 bucket.
CONTAINER_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """An object's metadata, read without its data."""

    content_type: str
    etag: str  # strong ETag value, without quotes
    last_modified: datetime.datetime  # UTC, whole seconds
    size: int


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """An object's data with its metadata."""

    data: bytes
    content_type: str
    etag: str  # strong ETag value, without quotes
    last_modified: datetime.datetime  # UTC, whole seconds


class ObjectStore(Protocol):
    """One container of objects; every backend failure raises BackendUnavailable("object store")."""

    def ensure_container(self) -> None:
        """Create the container if it is missing (idempotent)."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any object there; creates a missing container."""

    def get(self, key: str) -> StoredObject | None:
        """The object under ``key``, or None when there is none."""

    def head(self, key: str) -> ObjectInfo | None:
        """The metadata of the object under ``key``, or None when there is none."""

    def delete(self, key: str) -> None:
        """Remove the object under ``key``; an absent object is fine."""


def check_key(key: str) -> str:
    """Return ``key`` if it may name an object (e.g. ``42.jpg``, ``functions/p.zip``), else raise ValueError."""
    if (
        not isinstance(key, str)
        or len(key) > MAX_KEY_LENGTH
        or not KEY_PATTERN.fullmatch(key)
        or ".." in key
        or "." in key.split("/")
    ):
        raise ValueError(
            f"invalid object key {key!r}: use at most {MAX_KEY_LENGTH} of A-Z a-z 0-9 . _ - and / between"
            " segments, without '..'"
        )
    return key


def check_container(name: str) -> str:
    """Return ``name`` if it may name a container or bucket, else raise SettingsError."""
    if not CONTAINER_PATTERN.fullmatch(name) or ".." in name:
        raise SettingsError(
            f"TOMBOLA_CONTAINER must be 3 to 63 of a-z 0-9 . - starting and ending with a letter or digit, not {name!r}"
        )
    return name
