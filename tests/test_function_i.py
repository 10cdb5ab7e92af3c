"""I: customers by id, from the pack's table or a PrestaShop database."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from runner.customers import prestashop_table
from tests.support import function_client, make_settings, migrated


@pytest.fixture
def client(tmp_path):
    return function_client("i", migrated(make_settings(tmp_path)))


def test_known_customer(client):
    answer = client.simulate_get("/user/42")
    assert answer.status_code == 200
    assert answer.json == {"id": 42, "firstname": "Sophie", "lastname": "Turing", "email": "sophie.turing.42@example.com"}


def test_unknown_customer_is_404_json(client):
    answer = client.simulate_get("/user/101")
    assert answer.status_code == 404
    assert answer.json["title"] == "Unknown customer"


@pytest.mark.parametrize(
    "raw",
    ["abc", "-1", "0", "1.5", "1234567890", "9" * 400, "1%20OR%201=1", "0%20UNION%20SELECT%201", "SLEEP(2)", "%EF%BC%91", "1e3"],
)
def test_bad_ids_are_400_json(client, raw):
    answer = client.simulate_get(f"/user/{raw}")
    assert answer.status_code == 400
    assert answer.json["title"] == "Invalid customer id"


def test_seed_is_deterministic_and_complete(tmp_path):
    settings = migrated(make_settings(tmp_path), seed=10_000)
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM customers")).scalar_one()
        last = connection.execute(sa.text("SELECT firstname, lastname FROM customers WHERE id = 10000")).one()
    assert count == 10_000
    assert tuple(last) == ("Radia", "Shannon")


def test_reads_a_prestashop_shop(tmp_path):
    shop_url = f"sqlite:///{tmp_path / 'shop.db'}"
    table = prestashop_table("shop_")
    engine = sa.create_engine(shop_url)
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id_customer": 7, "firstname": "Jean", "lastname": "Dupont", "email": "jd@shop.test"}])
    client = function_client("i", migrated(make_settings(tmp_path, TOMBOLA_SHOP_DATABASE_URL=shop_url, TOMBOLA_SHOP_TABLE_PREFIX="shop_")))
    assert client.simulate_get("/user/7").json == {"id": 7, "firstname": "Jean", "lastname": "Dupont", "email": "jd@shop.test"}
    assert client.simulate_get("/user/42").status_code == 404


def rename(settings, customer_id: int, firstname: str) -> None:
    engine = sa.create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE customers SET firstname = :name WHERE id = :id"), {"name": firstname, "id": customer_id})


def test_a_found_customer_is_kept_for_the_cache_time_then_read_again(tmp_path):
    settings = migrated(make_settings(tmp_path, TOMBOLA_CUSTOMER_CACHE_SECONDS="0.5"))
    client = function_client("i", settings)
    assert client.simulate_get("/user/42").json["firstname"] == "Sophie"
    rename(settings, 42, "Renamed")
    assert client.simulate_get("/user/42").json["firstname"] == "Sophie"  # kept
    time.sleep(0.6)
    assert client.simulate_get("/user/42").json["firstname"] == "Renamed"  # read again once expired


def test_without_a_cache_every_read_sees_the_shop(tmp_path):
    settings = migrated(make_settings(tmp_path, TOMBOLA_CUSTOMER_CACHE_SECONDS="0"))
    client = function_client("i", settings)
    assert client.simulate_get("/user/42").json["firstname"] == "Sophie"
    rename(settings, 42, "Renamed")
    assert client.simulate_get("/user/42").json["firstname"] == "Renamed"


def test_an_unknown_id_is_never_kept(tmp_path):
    settings = migrated(make_settings(tmp_path))
    client = function_client("i", settings)
    assert client.simulate_get("/user/101").status_code == 404
    engine = sa.create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO customers VALUES (101, 'New', 'Customer', 'new@example.com')"))
    assert client.simulate_get("/user/101").json["firstname"] == "New"
