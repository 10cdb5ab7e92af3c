"""The local object store: one file per object in a folder per container.

Each file starts with one line of JSON metadata (content type and ETag)
followed by the object's data, so an object and its metadata are replaced
together by one ``os.replace``: readers in other processes see the old object
or the new one, never a mix. A key's ``/`` is written ``%2F`` so every object
is a file of the container's folder; temporary files start with ``~``, which
no key holds.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runner.errors import BackendUnavailable
from runner.objectstore.base import BACKEND, ObjectInfo, StoredObject, check_container, check_key

MAX_HEADER = 4096


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Turn a filesystem failure into BackendUnavailable."""
    try:
        yield
    except OSError as error:
        raise BackendUnavailable(BACKEND, f"{type(error).__name__}: {error}") from error


class LocalStore:
    """Objects as files under ``root/container``; safe for many processes at once."""

    def __init__(self, root: Path, container: str) -> None:
        self.directory = root / check_container(container)

    def ensure_container(self) -> None:
        with _unavailable():
            self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        header = json.dumps({"content_type": content_type, "etag": hashlib.md5(data).hexdigest()}).encode() + b"\n"
        self.ensure_container()
        with _unavailable():
            descriptor, temporary = tempfile.mkstemp(prefix="~", dir=self.directory)
            try:
                with open(descriptor, "wb") as file:
                    file.write(header)
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise

    def get(self, key: str) -> StoredObject | None:
        path = self._path(key)
        with _unavailable():
            try:
                file = open(path, "rb")  # noqa: SIM115 - closed just below
            except FileNotFoundError:
                return None
            with file:
                info = self._read_info(file, path)
                data = file.read()
        return StoredObject(data, info.content_type, info.etag, info.last_modified)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        with _unavailable():
            try:
                file = open(path, "rb")  # noqa: SIM115 - closed just below
            except FileNotFoundError:
                return None
            with file:
                return self._read_info(file, path)

    def delete(self, key: str) -> None:
        with _unavailable(), contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def _path(self, key: str) -> Path:
        return self.directory / check_key(key).replace("/", "%2F")

    @staticmethod
    def _read_info(file: BinaryIO, path: Path) -> ObjectInfo:
        """Read the metadata line; the file is left at the start of the data."""
        line = file.readline(MAX_HEADER)
        try:
            meta = json.loads(line)
            content_type, etag = str(meta["content_type"]), str(meta["etag"])
        except (ValueError, KeyError, TypeError):
            raise BackendUnavailable(BACKEND, f"{path} is not an object of this store") from None
        stat = os.fstat(file.fileno())
        modified = datetime.datetime.fromtimestamp(int(stat.st_mtime), datetime.UTC)
        return ObjectInfo(content_type, etag, modified, stat.st_size - len(line))
