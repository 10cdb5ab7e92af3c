"""Object storage for prize pictures (and, later, function packages).

One interface, ObjectStore, and three backends chosen by ``TOMBOLA_STORE``:
``local`` (files, the default), ``swift`` (OpenStack Swift) and ``s3``. Every
failure to reach a backend raises ``BackendUnavailable("object store", …)``;
an absent object is None, never an error; a bad key is a ValueError.
"""

from __future__ import annotations

from runner.objectstore.base import ObjectInfo, ObjectStore, StoredObject, check_key
from runner.settings import Settings

__all__ = ["ObjectInfo", "ObjectStore", "StoredObject", "check_key", "open_store"]


def open_store(settings: Settings) -> ObjectStore:
    """The store ``settings.store`` names, on ``settings.container`` (backends are imported on demand)."""
    if settings.store == "swift":
        from runner.objectstore.swift import SwiftStore

        return SwiftStore.from_settings(settings)
    if settings.store == "s3":
        from runner.objectstore.s3 import S3Store

        return S3Store.from_settings(settings)
    from runner.objectstore.local import LocalStore

    return LocalStore(settings.store_path, settings.container)
