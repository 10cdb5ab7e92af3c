"""The whole flow through the gateway, on embedded defaults and on real backends.

page → I/S → play → W1 stored the status and the picture → P serves it →
W2 posted exactly one mail; and the exactly-once race.
"""

from __future__ import annotations

import base64
import concurrent.futures
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from runner import database
from runner.settings import Settings
from tests.pack import Pack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["embedded", "rabbitmq-mariadb-swift", "rabbitmq-postgres-s3"])
def flow_pack(request, tmp_path_factory, mail_sink):
    mail = {"TOMBOLA_MAIL_URL": mail_sink.url, "TOMBOLA_MAIL_DOMAIN": "shop.test", "TOMBOLA_MAIL_API_KEY": mail_sink.key}
    env = {"TOMBOLA_W_TEMPO": "1", "TOMBOLA_CONTAINER": f"flow-{uuid.uuid4().hex[:8]}", **mail}
    if request.param == "rabbitmq-mariadb-swift":
        env |= {"TOMBOLA_BROKER_URL": request.getfixturevalue("rabbitmq_url"), "TOMBOLA_DATABASE_URL": request.getfixturevalue("mariadb_url")}
        env |= request.getfixturevalue("swift_server").settings_env("swift")
    elif request.param == "rabbitmq-postgres-s3":
        env |= {"TOMBOLA_BROKER_URL": request.getfixturevalue("rabbitmq_url"), "TOMBOLA_DATABASE_URL": request.getfixturevalue("postgres_url")}
        env |= request.getfixturevalue("swift_server").settings_env("s3")
    pack = Pack(tmp_path_factory.mktemp(request.param), env).start()
    yield pack
    assert pack.stop() == 0, pack.log()


def poll(url: str, until, timeout: float = 20.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(url, timeout=5)
        if until(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def mails_for(mail_sink, customer_id: int) -> list[dict]:
    return [mail for mail in mail_sink.mails() if f"customer {customer_id} " in mail["subject"]]


def test_the_whole_flow(flow_pack, mail_sink):
    url, customer = flow_pack.url, 42
    page = requests.get(f"{url}/?id={customer}", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert requests.get(f"{url}/srvi/user/{customer}", timeout=5).json()["email"] == "sophie.turing.42@example.com"
    assert requests.get(f"{url}/srvs/user/{customer}", timeout=5).json()["status"] == "not_played"
    assert requests.get(f"{url}/srvp/user/{customer}", timeout=5).json() == {"status": "ko"}

    play = requests.post(f"{url}/srvb/user/{customer}", timeout=30)
    assert play.status_code == 200, play.text
    price = play.json()["price"]

    status = requests.get(f"{url}/srvs/user/{customer}", timeout=5).json()
    assert status["status"] == "played" and status["price"] == price and status["played_at"]
    picture = poll(f"{url}/srvp/user/{customer}", lambda a: a.json()["status"] == "ok").json()
    assert picture["status"] == "ok" and picture["url"] == f"/srvp/user/{customer}/image"
    assert base64.b64decode(picture["img"])[:2] == b"\xff\xd8"

    image = requests.get(f"{url}{picture['url']}", timeout=5)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == base64.b64decode(picture["img"])
    again = requests.get(f"{url}{picture['url']}", headers={"If-None-Match": image.headers["etag"]}, timeout=5)
    assert again.status_code == 304 and again.content == b""

    assert requests.post(f"{url}/srvb/user/{customer}", timeout=30).status_code == 409
    mail_sink.wait_for_subject(f"Tombola: customer {customer} won {price}", timeout=20)
    time.sleep(1)
    assert len(mails_for(mail_sink, customer)) == 1


def test_exactly_once_under_a_race(flow_pack, mail_sink):
    url, customer = flow_pack.url, 77
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        codes = sorted(pool.map(lambda _: requests.post(f"{url}/srvb/user/{customer}", timeout=60).status_code, range(50)))
    assert codes == [200] + [409] * 49
    assert poll(f"{url}/srvp/user/{customer}", lambda a: a.json()["status"] == "ok").json()["status"] == "ok"
    mail_sink.wait_for_subject(f"Tombola: customer {customer} won", timeout=20)
    time.sleep(2)
    assert len(mails_for(mail_sink, customer)) == 1


# The upstream's SQL injections, and their usual variants, as customer ids.
BAD_IDS = [
    "abc", "-3", "0", "99999999999999999999", "1%20OR%201=1", "0%20UNION%20SELECT%20user()", "SLEEP(2)",
    "0%20UNION%20SELECT%20email,firstname,lastname%20FROM%20customers--", "1'%20OR%20'1'='1", "1%20AND%20SLEEP(2)",
    "1);SELECT%20pg_sleep(2)--", "1;DROP%20TABLE%20plays", "1%20OR%201=1--%20-", "1%09OR%091=1", "%27",
]


def database_snapshot(pack: Pack) -> dict[str, list[str]]:
    """Every row of the lottery's tables, as text."""
    engine = sa.create_engine(Settings.from_environ(pack.env).database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return {
                table.name: sorted(str(tuple(row)) for row in connection.execute(sa.select(table)))
                for table in (database.customers, database.plays, database.mails)
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("method", "prefix"), [("GET", "/srvi/user"), ("GET", "/srvs/user"), ("POST", "/srvb/user"), ("GET", "/srvp/user")]
)
def test_bad_ids_are_400_never_500_and_change_nothing(flow_pack, method, prefix):
    before = database_snapshot(flow_pack)
    for raw in BAD_IDS:
        answer = requests.request(method, f"{flow_pack.url}{prefix}/{raw}", timeout=5)
        assert answer.status_code == 400, (raw, answer.text)
        assert answer.json()["title"] == "Invalid customer id"
    assert database_snapshot(flow_pack) == before


def test_the_worker_is_not_public(flow_pack):
    assert requests.get(f"{flow_pack.url}/srvw/play/1", timeout=5).status_code == 404
    assert requests.get(f"{flow_pack.url}/fn/w/play/1", timeout=5).status_code == 404
