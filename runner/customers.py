"""The shop's customers: the pack's own table, or a PrestaShop database read-only."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from runner import database
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
    """Looks customers up by id with one parametrised SELECT."""

    def __init__(self, engine: sa.Engine, query: sa.Select) -> None:
        self.engine = engine
        self.query = query

    @classmethod
    def from_settings(cls, settings: Settings, engine: sa.Engine) -> CustomerDirectory:
        """The shop database when TOMBOLA_SHOP_DATABASE_URL is set, else the pack's own table."""
        if settings.shop_database_url:
            table = prestashop_table(settings.shop_table_prefix)
            query = sa.select(table.c.id_customer, table.c.firstname, table.c.lastname, table.c.email)
            return cls(database.create_engine(settings.shop_database_url), query.where(table.c.id_customer == sa.bindparam("id")))
        table = database.customers
        query = sa.select(table.c.id, table.c.firstname, table.c.lastname, table.c.email)
        return cls(engine, query.where(table.c.id == sa.bindparam("id")))

    def find(self, customer_id: int) -> Customer | None:
        with self.engine.connect() as connection:
            row = connection.execute(self.query, {"id": customer_id}).first()
        return None if row is None else Customer(int(row[0]), row[1] or "", row[2] or "", row[3] or "")
