"""Functions, their immutable numbered versions, aliases and scaling, as the control plane records them.

A version is a checked package (gateway.packages): its zip lives in the
object store under ``functions/<name>/<number>.zip``, its row in the pack's
database with its sha256 and manifest. An alias (``live`` above all) points to
a version, optionally with a canary version taking ``canary_weight`` percent
of the requests; every change of an alias is kept in ``alias_history``, which
is how ``live`` rolls back. SQLAlchemy Core, parametrised statements only;
every method is blocking (the gateway calls them in a thread).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from typing import Any

import sqlalchemy as sa

from gateway.packages import Package, PackageError, inspect
from runner import manifest as manifest_module
from runner.database import isoformat, utcnow
from runner.errors import BackendUnavailable
from runner.manifest import Manifest
from runner.objectstore import ObjectStore

LIVE = "live"
ZIP = "application/zip"

metadata = sa.MetaData()

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("scale_min", sa.Integer),  # NULL: the live manifest's
    sa.Column("scale_max", sa.Integer),
    sa.Column("scale_replicas", sa.Integer),  # the count an operator asked for last; NULL: min
)

function_versions = sa.Table(
    "function_versions",
    metadata,
    sa.Column("function", sa.String(32), sa.ForeignKey("functions.name"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),  # manifest.toml as packaged
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("function", sa.String(32), sa.ForeignKey("functions.name"), primary_key=True),
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("canary_version", sa.Integer),
    sa.Column("canary_weight", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("function", sa.String(32), sa.ForeignKey("functions.name"), nullable=False, index=True),
    sa.Column("alias", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("canary_version", sa.Integer),
    sa.Column("canary_weight", sa.Integer, nullable=False),
    sa.Column("changed_at", sa.DateTime, nullable=False),
    sa.Column("undone", sa.Boolean, nullable=False),  # rolled back: no longer a state to return to
)


def package_key(function: str, number: int) -> str:
    """Where the zip of a version lives in the object store."""
    return f"functions/{function}/{number}.zip"


@dataclasses.dataclass(frozen=True)
class FunctionRecord:
    """A function: its description and the scaling an operator set (None: the manifest's)."""

    name: str
    description: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    scale_min: int | None
    scale_max: int | None
    scale_replicas: int | None


@dataclasses.dataclass(frozen=True)
class Version:
    """One immutable version of a function."""

    function: str
    number: int
    sha256: str
    size: int
    manifest_text: str
    description: str
    created_at: datetime.datetime

    @property
    def key(self) -> str:
        return package_key(self.function, self.number)

    @property
    def manifest(self) -> Manifest:
        return manifest_module.loads(self.manifest_text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "version": self.number,
            "sha256": self.sha256,
            "size": self.size,
            "manifest": self.manifest.to_dict(),
            "created_at": isoformat(self.created_at),
            "description": self.description,
        }


@dataclasses.dataclass(frozen=True)
class Alias:
    """Where an alias points: a version, and optionally a canary version with its share of requests (percent)."""

    function: str
    name: str
    version: int
    canary_version: int | None = None
    canary_weight: int = 0
    updated_at: datetime.datetime | None = None

    @property
    def traffic(self) -> dict[int, int]:
        """Each version's share of the requests, in percent."""
        if self.canary_version is None:
            return {self.version: 100}
        return {self.version: 100 - self.canary_weight, self.canary_version: self.canary_weight}

    def same_target(self, other: Alias | None) -> bool:
        """True when ``other`` sends the same requests to the same versions."""
        return other is not None and self.traffic == other.traffic

    def target(self) -> dict[str, Any]:
        """``{"version", "canary"}``, as the control plane shows it."""
        canary = None if self.canary_version is None else {"version": self.canary_version, "weight": self.canary_weight}
        return {"version": self.version, "canary": canary}


def _record(row: sa.Row[Any]) -> FunctionRecord:
    return FunctionRecord(
        row.name, row.description, row.created_at, row.updated_at, row.scale_min, row.scale_max, row.scale_replicas
    )


def _version(row: sa.Row[Any]) -> Version:
    return Version(row.function, row.number, row.sha256, row.size, row.manifest, row.description, row.created_at)


def _alias(row: sa.Row[Any], name_column: str = "name") -> Alias:
    return Alias(row.function, getattr(row, name_column), row.version, row.canary_version, row.canary_weight)


class Repository:
    """The control plane's records in the database and packages in the object store."""

    def __init__(self, engine: sa.Engine, store: ObjectStore) -> None:
        self.engine = engine
        self.store = store

    # Functions -------------------------------------------------------------------------------------------------

    def function(self, name: str) -> FunctionRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(functions).where(functions.c.name == name)).first()
        return None if row is None else _record(row)

    def functions(self) -> list[FunctionRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(functions).order_by(functions.c.name)).all()
        return [_record(row) for row in rows]

    def update_description(self, name: str, description: str) -> FunctionRecord | None:
        """Set a function's description; None when there is no such function."""
        with self.engine.begin() as connection:
            connection.execute(
                functions.update().where(functions.c.name == name).values(description=description, updated_at=utcnow())
            )
        return self.function(name)

    def set_scaling(self, name: str, minimum: int | None, maximum: int | None, replicas: int | None) -> None:
        """Record the bounds and replica count an operator set (None leaves a value as it is)."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        for column, value in (("scale_min", minimum), ("scale_max", maximum), ("scale_replicas", replicas)):
            if value is not None:
                values[column] = value
        with self.engine.begin() as connection:
            connection.execute(functions.update().where(functions.c.name == name).values(**values))

    def delete_function(self, name: str) -> None:
        """Forget a function: its aliases, history, versions and their packages."""
        with self.engine.begin() as connection:
            numbers = connection.execute(
                sa.select(function_versions.c.number).where(function_versions.c.function == name)
            ).scalars().all()
            for table in (alias_history, aliases, function_versions):
                connection.execute(table.delete().where(table.c.function == name))
            connection.execute(functions.delete().where(functions.c.name == name))
        for number in numbers:
            self.store.delete(package_key(name, number))

    # Versions --------------------------------------------------------------------------------------------------

    def versions(self, name: str) -> list[Version]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(function_versions).where(function_versions.c.function == name).order_by(function_versions.c.number)
            ).all()
        return [_version(row) for row in rows]

    def version(self, name: str, number: int) -> Version | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(function_versions).where(
                    function_versions.c.function == name, function_versions.c.number == number
                )
            ).first()
        return None if row is None else _version(row)

    def latest(self, name: str) -> Version | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(function_versions)
                .where(function_versions.c.function == name)
                .order_by(function_versions.c.number.desc())
                .limit(1)
            ).first()
        return None if row is None else _version(row)

    def add_version(self, package: Package, description: str) -> tuple[Version, bool]:
        """Record ``package`` as the function's next version (creating the function if new).

        Returns the version and whether it is new: a package identical to the
        latest version is that version. The zip is stored before its row, so
        a recorded version always has its package.
        """
        name = package.manifest.name
        now = utcnow()
        with self.engine.begin() as connection:
            latest = connection.execute(
                sa.select(function_versions)
                .where(function_versions.c.function == name)
                .order_by(function_versions.c.number.desc())
                .limit(1)
            ).first()
            if latest is not None and latest.sha256 == package.sha256:
                return _version(latest), False
            if connection.execute(sa.select(functions.c.name).where(functions.c.name == name)).first() is None:
                connection.execute(
                    functions.insert().values(
                        name=name, description=package.manifest.description, created_at=now, updated_at=now
                    )
                )
            number = 1 if latest is None else latest.number + 1
            version = Version(name, number, package.sha256, package.size, package.manifest_text, description, now)
            self.store.put(version.key, package.data, ZIP)
            connection.execute(
                function_versions.insert().values(
                    function=name,
                    number=number,
                    sha256=package.sha256,
                    size=package.size,
                    manifest=package.manifest_text,
                    description=description,
                    created_at=now,
                )
            )
        return version, True

    def package(self, version: Version) -> Package:
        """The stored package of ``version``, checked against its sha256."""
        stored = self.store.get(version.key)
        if stored is None:
            raise BackendUnavailable("object store", f"the package {version.key} is missing")
        if hashlib.sha256(stored.data).hexdigest() != version.sha256:
            raise BackendUnavailable("object store", f"the package {version.key} does not match its sha256")
        try:
            return inspect(stored.data, version.function)
        except PackageError as error:
            raise BackendUnavailable("object store", f"the package {version.key} is unusable: {error}") from None

    # Aliases ---------------------------------------------------------------------------------------------------

    def alias(self, function: str, name: str) -> Alias | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(aliases).where(aliases.c.function == function, aliases.c.name == name)
            ).first()
        return None if row is None else dataclasses.replace(_alias(row), updated_at=row.updated_at)

    def aliases(self, function: str) -> list[Alias]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(aliases).where(aliases.c.function == function).order_by(aliases.c.name)
            ).all()
        return [dataclasses.replace(_alias(row), updated_at=row.updated_at) for row in rows]

    def set_alias(self, alias: Alias) -> Alias:
        """Point an alias (and keep the change in its history)."""
        now = utcnow()
        values = {
            "version": alias.version,
            "canary_version": alias.canary_version,
            "canary_weight": alias.canary_weight,
        }
        with self.engine.begin() as connection:
            self._point(connection, alias, now)
            connection.execute(
                alias_history.insert().values(
                    function=alias.function, alias=alias.name, changed_at=now, undone=False, **values
                )
            )
        return dataclasses.replace(alias, updated_at=now)

    def previous_live(self, function: str) -> Alias | None:
        """Where ``live`` pointed before its latest change that was not rolled back, if anywhere."""
        rows = self._live_history(function, limit=2)
        return _alias(rows[1], "alias") if len(rows) == 2 else None

    def roll_back_live(self, function: str) -> Alias:
        """Undo the latest change of ``live``: it points where it pointed before (see previous_live)."""
        now = utcnow()
        with self.engine.begin() as connection:
            current, previous = self._live_history(function, limit=2, connection=connection)
            connection.execute(alias_history.update().where(alias_history.c.id == current.id).values(undone=True))
            alias = _alias(previous, "alias")
            self._point(connection, alias, now)
        return dataclasses.replace(alias, updated_at=now)

    def _live_history(self, function: str, limit: int, connection: sa.Connection | None = None) -> list[sa.Row[Any]]:
        query = (
            sa.select(alias_history)
            .where(alias_history.c.function == function, alias_history.c.alias == LIVE, alias_history.c.undone.is_(False))
            .order_by(alias_history.c.id.desc())
            .limit(limit)
        )
        if connection is not None:
            return list(connection.execute(query).all())
        with self.engine.connect() as own:
            return list(own.execute(query).all())

    @staticmethod
    def _point(connection: sa.Connection, alias: Alias, now: datetime.datetime) -> None:
        values = {
            "version": alias.version,
            "canary_version": alias.canary_version,
            "canary_weight": alias.canary_weight,
            "updated_at": now,
        }
        where = (aliases.c.function == alias.function, aliases.c.name == alias.name)
        if connection.execute(sa.select(aliases.c.name).where(*where)).first() is None:
            connection.execute(aliases.insert().values(function=alias.function, name=alias.name, **values))
        else:
            connection.execute(aliases.update().where(*where).values(**values))
