"""What a function's handler receives: settings and lazily opened backends.

A replica builds one Context at start. It holds connection pools and, for I,
a short-lived cache of customers read from the shop (``runner.customers``);
never the state of a play: every function stays stateless.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from runner.manifest import Manifest
from runner.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa

    from runner.bus import Publisher
    from runner.customers import CustomerDirectory
    from runner.objectstore import ObjectStore


class Context:
    """Settings and backends for the handlers of one function replica."""

    def __init__(self, settings: Settings, manifest: Manifest) -> None:
        self.settings = settings
        self.manifest = manifest

    @functools.cached_property
    def database(self) -> sa.Engine:
        from runner.database import create_engine

        return create_engine(self.settings.database_url, self.settings.database_pool_size)

    @functools.cached_property
    def customers(self) -> CustomerDirectory:
        from runner.customers import CustomerDirectory

        return CustomerDirectory.from_settings(self.settings, self.database)

    @functools.cached_property
    def store(self) -> ObjectStore:
        from runner.objectstore import open_store

        return open_store(self.settings)

    @functools.cached_property
    def publisher(self) -> Publisher:
        from runner.bus import Publisher

        return Publisher(self.settings)
