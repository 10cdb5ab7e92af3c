"""The shop's customers: the pack's own table, or a PrestaShop database read-only.

Customers found are kept a short while (``TOMBOLA_CUSTOMER_CACHE_SECONDS``,
default 30, no longer than I's own ``Cache-Control: max-age=60`` lets browsers
keep them): I's hot path then costs no query. An id not found is never kept,
so a customer who has just signed up is found at once.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from runner import database
from runner.kept import KeptLookup
from runner.settings import Settings


@dataclasses.dataclass(frozen=True)
class Customer:
    id: int
    firstname: str
    lastname: str
    email: str

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def prestashop_table(prefix: str) -> sa.Table:
    """PrestaShop's ``<prefix>customer`` table, as far as the lottery reads it."""
    return sa.Table(
        f"{prefix}customer",
        sa.MetaData(),
        sa.Column("id_customer", sa.Integer, primary_key=True),
        sa.Column("firstname", sa.String(255)),
        sa.Column("lastname", sa.String(255)),
        sa.Column("email", sa.String(255)),
    )


class CustomerDirectory:
    """Looks customers up by id with one parametrised SELECT, and keeps those found for ``cache_seconds``."""

    def __init__(self, engine: sa.Engine, query: sa.Select, cache_seconds: float = 0.0) -> None:
        self.engine = engine
        self.query = query
        self._find = KeptLookup(self._select, cache_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, engine: sa.Engine) -> CustomerDirectory:
        """The shop database when TOMBOLA_SHOP_DATABASE_URL is set, else the pack's own table."""
        seconds = settings.customer_cache_seconds
        if settings.shop_database_url:
            table = prestashop_table(settings.shop_table_prefix)
            query = sa.select(table.c.id_customer, table.c.firstname, table.c.lastname, table.c.email)
            shop = database.create_engine(settings.shop_database_url, settings.database_pool_size)
            return cls(shop, query.where(table.c.id_customer == sa.bindparam("id")), seconds)
        table = database.customers
        query = sa.select(table.c.id, table.c.firstname, table.c.lastname, table.c.email)
        return cls(engine, query.where(table.c.id == sa.bindparam("id")), seconds)

    def find(self, customer_id: int) -> Customer | None:
        """The customer ``customer_id``, or None when the shop has no such customer."""
        return self._find(customer_id)

    def _select(self, customer_id: int) -> Customer | None:
        with self.engine.connect() as connection:
            row = connection.execute(self.query, {"id": customer_id}).first()
        return None if row is None else Customer(int(row[0]), row[1] or "", row[2] or "", row[3] or "")
