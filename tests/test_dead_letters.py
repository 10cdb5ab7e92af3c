"""Dead letters: poison messages end in their function's dead-letter queue, and operators list, replay and purge them.

On RabbitMQ (the session's vhost) and on Kombu's filesystem transport (the
embedded default): first gateway.dead_letters on its own, then the whole pack
(``tombola up``) through ``/v1`` and the ``tombola`` command, with a play W1
cannot record (the database refuses its picture) and a malformed message.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon.asgi
import falcon.testing
import kombu
import pytest
import requests
import sqlalchemy as sa

from gateway import errors
from gateway.control import ControlError
from gateway.control_api import ControlApi
from gateway.dead_letters import DeadLetters, Selection
from runner import bus, plays
from runner.bus import Publisher
from runner.database import create_engine
from runner.settings import Settings
from tests.pack import Pack
from tests.support import Tombola, free_port, make_settings, tombola_against
from tests.test_function_w1 import message

ATTEMPTS = 3
CUSTOMER = 42
POISON = (
    f"CREATE TRIGGER poison BEFORE UPDATE OF picture ON plays WHEN NEW.customer_id = {CUSTOMER} "
    "AND NEW.picture IS NOT NULL BEGIN SELECT RAISE(ABORT, 'this play is poisoned'); END"
)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def broker_env(request: pytest.FixtureRequest, broker: str) -> dict[str, str]:
    """The environment of ``broker``: nothing for the filesystem transport, the session's vhost for RabbitMQ."""
    return {} if broker == "filesystem" else {"TOMBOLA_BROKER_URL": request.getfixturevalue("rabbitmq_url")}


# gateway.dead_letters on each broker -----------------------------------------------------------------------------


@pytest.fixture(params=["filesystem", "rabbitmq"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, **broker_env(request, request.param))


@pytest.fixture
def queue() -> str:
    """A queue function's queue of its own, so that each test starts from empty queues."""
    return f"dl{secrets.token_hex(4)}"


def dead_letter(settings: Settings, queue: str, count: int) -> list[tuple[str, Any, dict[str, Any]]]:
    """Put ``count`` messages in ``queue``'s dead-letter queue, as a runner leaves them; (id, body, headers) of each."""
    letters = []
    with bus.connect(settings) as connection:
        producer = kombu.Producer(connection.default_channel)
        for number in range(count):
            headers = {
                bus.ATTEMPTS_HEADER: number + 1,
                bus.ERROR_HEADER: f"500 failure {number}",
                bus.FIRST_FAILED_HEADER: f"2026-01-0{number + 1}T10:00:00+00:00",
                "x-origin": "kept as it is",
            }
            body = {"n": number, "img": "x" * 100}
            producer.publish(
                body,
                exchange="",
                routing_key=bus.dead_letter_queue(queue).name,
                declare=[bus.dead_letter_queue(queue)],
                serializer="json",
                headers=headers,
                message_id=f"m{number}",
                delivery_mode=kombu.entity.PERSISTENT_DELIVERY_MODE,
            )
            letters.append((f"m{number}", body, headers))
    return letters


def drain(settings: Settings, queue: kombu.Queue) -> list[tuple[str, Any, dict[str, Any]]]:
    """Take every message of ``queue``: (id, body, headers) of each, in order."""
    with bus.connect(settings) as connection:
        bound = queue(connection.default_channel)
        bound.declare()
        taken = []
        while (found := bound.get(no_ack=True, accept=["json"])) is not None:
            taken.append((bus.message_id(found), found.decode(), dict(found.headers)))
        return taken


def test_listing_keeps_every_dead_letter_in_order_with_its_content(settings: Settings, queue: str) -> None:
    letters = dead_letter(settings, queue, 5)
    dead_letters = DeadLetters(settings)
    first = dead_letters.list(queue, limit=3)
    assert first.queue == f"tombola.{queue}.dead" and first.count == 5
    assert [letter.id for letter in first.dead_letters] == ["m0", "m1", "m2"]
    second = first.dead_letters[1]
    assert (second.attempts, second.error, second.first_failed_at, second.replays) == (
        2, "500 failure 1", "2026-01-02T10:00:00+00:00", 0
    )
    assert second.summary == "n=1, img=<100 chars>"
    again = dead_letters.list(queue, limit=50)
    assert again.count == 5 and [letter.id for letter in again.dead_letters] == ["m0", "m1", "m2", "m3", "m4"]
    assert drain(settings, bus.dead_letter_queue(queue)) == letters


def test_replay_sends_the_selected_to_the_work_queue_with_attempts_reset(settings: Settings, queue: str) -> None:
    letters = dead_letter(settings, queue, 4)
    dead_letters = DeadLetters(settings)
    outcome = dead_letters.replay(queue, Selection(frozenset({"m1", "m3", "not-there"})))
    assert (outcome.queue, outcome.count, outcome.missing) == (f"tombola.{queue}.dead", 2, ["not-there"])
    replayed = drain(settings, bus.work_queue(queue))
    assert [(letter_id, body) for letter_id, body, _ in replayed] == [(letters[1][0], letters[1][1]), (letters[3][0], letters[3][1])]
    assert all(headers == {"x-origin": "kept as it is", bus.REPLAYS_HEADER: 1} for _, _, headers in replayed)
    assert [letter.id for letter in dead_letters.list(queue, limit=50).dead_letters] == ["m0", "m2"]

    everything = dead_letters.replay(queue, Selection(every=True))
    assert (everything.count, everything.missing) == (2, [])
    assert [letter_id for letter_id, _, _ in drain(settings, bus.work_queue(queue))] == ["m0", "m2"]
    assert dead_letters.list(queue, limit=50).count == 0


def test_purge_deletes_the_selected_dead_letters_only(settings: Settings, queue: str) -> None:
    dead_letter(settings, queue, 3)
    dead_letters = DeadLetters(settings)
    assert dead_letters.purge(queue, Selection(frozenset({"m1"}))).count == 1
    assert [letter.id for letter in dead_letters.list(queue, limit=50).dead_letters] == ["m0", "m2"]
    assert dead_letters.purge(queue, Selection(every=True)).count == 2
    assert dead_letters.list(queue, limit=50).count == 0
    assert drain(settings, bus.work_queue(queue)) == []


class OneQueueFunction:
    """A control plane that knows one function, w1, triggered by its queue."""

    async def show_function(self, name: str) -> dict[str, Any]:
        if name != "w1":
            raise ControlError(404, f"No function is named {name}.")
        return {"name": "w1", "manifest": {"trigger": {"type": "queue", "queue": "w1", "path": "/messages"}}}


def test_an_unreachable_broker_is_a_503(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TOMBOLA_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    app = falcon.asgi.App()
    errors.install(app)
    ControlApi(OneQueueFunction(), None, None, "token", 1024, DeadLetters(settings)).install(app)  # type: ignore[arg-type]
    client = falcon.testing.TestClient(app, headers={"Authorization": "Bearer token"})
    for answer in (
        client.simulate_get("/v1/functions/w1/dead-letters"),
        client.simulate_post("/v1/functions/w1/dead-letters/replay", json={"all": True}),
    ):
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
        assert answer.json["title"] == "Message broker unavailable"


# The pack: poison messages through /v1 and the tombola command ----------------------------------------------------


@pytest.fixture(scope="module", params=["filesystem", "rabbitmq"])
def poison_pack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    """The pack, W1 giving up after three attempts, quickly; on RabbitMQ, from empty queues."""
    env = broker_env(request, request.param)
    if "TOMBOLA_BROKER_URL" in env:
        with kombu.Connection(env["TOMBOLA_BROKER_URL"]) as connection:
            for queue in bus.topology():
                queue(connection.default_channel).declare()
                queue(connection.default_channel).purge()
    env = {
        **env,
        "TOMBOLA_W_TEMPO": "0",
        "TOMBOLA_MAX_ATTEMPTS": str(ATTEMPTS),
        "TOMBOLA_RETRY_BACKOFF": "0.05",
        "TOMBOLA_SEED_CUSTOMERS": "100",
    }
    pack = Pack(tmp_path_factory.mktemp(f"dead_letters_{request.param}"), env).start()
    yield pack
    assert pack.stop() == 0, pack.log()


@pytest.fixture
def tombola(poison_pack: Pack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Tombola:
    """Run ``tombola ARGS`` against the pack's control plane; its exit status, stdout and stderr."""
    return tombola_against(poison_pack.internal_url, poison_pack.env["TOMBOLA_TOKEN"], monkeypatch, capsys)


def control(pack: Pack) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {pack.env['TOMBOLA_TOKEN']}"
    return session


def listed(pack: Pack, function: str) -> dict[str, Any]:
    answer = control(pack).get(f"{pack.internal_url}/v1/functions/{function}/dead-letters", timeout=30)
    assert answer.status_code == 200, answer.text
    listing: dict[str, Any] = answer.json()
    return listing


def deliveries(pack: Pack, function: str, status: int) -> int:
    """How many messages the function's replicas answered with ``status`` (their access lines)."""
    answer = control(pack).get(f"{pack.internal_url}/v1/functions/{function}/logs", params={"lines": 10_000}, timeout=10)
    entries = [json.loads(line["line"]) for line in answer.json()["lines"] if line["line"].startswith("{")]
    return sum(1 for entry in entries if entry.get("logger") == "tombola.access" and entry.get("status") == status)


def test_a_poison_play_is_dead_lettered_after_max_attempts_listed_and_replayed_once_fixed(
    poison_pack: Pack, tombola: Tombola
) -> None:
    engine = create_engine(f"sqlite:///{poison_pack.home / 'tombola.db'}")
    with engine.begin() as connection:
        connection.execute(sa.text(POISON))
    played = requests.post(f"{poison_pack.url}/srvb/user/{CUSTOMER}", timeout=30)
    assert played.status_code == 200, played.text
    play_id = played.json()["play_id"]

    # W1 fails the play three times (500: the database refuses its picture), then gives up on it.
    listing = wait_until(lambda: (found := listed(poison_pack, "w1"))["count"] and found)
    assert listing["queue"] == "tombola.w1.dead" and listing["count"] == 1
    (letter,) = listing["dead_letters"]
    assert letter["id"] == play_id and letter["attempts"] == ATTEMPTS and letter["replays"] == 0
    assert letter["error"].startswith("500") and letter["first_failed_at"]
    assert f"id={CUSTOMER}, play_id={play_id}" in letter["summary"]
    assert deliveries(poison_pack, "w1", 500) == ATTEMPTS
    assert plays.find(engine, CUSTOMER).picture is None

    # Listing, through the API or the command, leaves it where it is.
    table = tombola("dead-letters", "w1")
    assert table.code == 0, table.err
    header, row = table.out.splitlines()
    assert header.split() == ["ID", "ATTEMPTS", "REPLAYS", "FIRST_FAILED", "ERROR", "MESSAGE"]
    assert row.split()[:4] == [play_id, str(ATTEMPTS), "0", letter["first_failed_at"]]
    assert "1 dead letter(s) in tombola.w1.dead" in table.err
    assert listed(poison_pack, "w1")["dead_letters"] == [letter]

    # Replayed while the cause is still there, it fails afresh: three attempts again, not six.
    again = tombola("replay", "w1", play_id)
    assert again.code == 0 and again.out == "w1: 1 dead letter(s) replayed\n", again.err
    relisted = wait_until(lambda: [found for found in listed(poison_pack, "w1")["dead_letters"] if found["replays"] == 1])
    assert relisted[0]["id"] == play_id and relisted[0]["attempts"] == ATTEMPTS
    assert deliveries(poison_pack, "w1", 500) == 2 * ATTEMPTS

    # The cause fixed, a replay records the play and empties the dead-letter queue.
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER poison"))
    fixed = tombola("replay", "w1", "--all")
    assert fixed.code == 0 and fixed.out == "w1: 1 dead letter(s) replayed\n", fixed.err
    recorded = wait_until(lambda: (play := plays.find(engine, CUSTOMER)) is not None and play.picture and play)
    assert recorded.play_id == play_id and recorded.picture == f"{CUSTOMER}.jpg" and recorded.status == plays.PLAYED
    assert listed(poison_pack, "w1")["count"] == 0
    assert tombola("dead-letters", "w1").out == "no dead letters in tombola.w1.dead\n"
    engine.dispose()


def test_a_malformed_message_is_dead_lettered_at_once_then_purged(poison_pack: Pack, tombola: Tombola) -> None:
    broker = {key: value for key, value in poison_pack.env.items() if key == "TOMBOLA_BROKER_URL"}
    settings = make_settings(poison_pack.home, **broker)
    play_id = str(uuid.uuid4())
    Publisher(settings).publish_play(message(43, play_id=play_id, img="*** not a picture ***"))
    for function in ("w1", "w2"):
        listing = wait_until(lambda function=function: (found := listed(poison_pack, function))["count"] and found)
        (letter,) = listing["dead_letters"]
        assert letter["id"] == play_id and letter["attempts"] == 1 and letter["error"].startswith("400")

    missing = tombola("replay", "w1", "no-such-message")
    assert missing.code == 1 and "not in tombola.w1.dead: no-such-message" in missing.err
    assert tombola("replay", "w1").code == 1  # neither ids nor --all
    purged = tombola("purge", "w1", play_id)
    assert purged.code == 0 and purged.out == "w1: 1 dead letter(s) purged\n", purged.err
    assert tombola("purge", "w2", "--all").out == "w2: 1 dead letter(s) purged\n"
    assert listed(poison_pack, "w1")["count"] == 0 and listed(poison_pack, "w2")["count"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"ids": []}, 422),
        ({"ids": "m1"}, 422),
        ({"ids": [1]}, 422),
        ({"ids": [""]}, 422),
        ({"all": False}, 422),
        ({"ids": ["m1"], "all": True}, 422),
        ({"ids": ["m1"], "except": ["m2"]}, 422),
        (b"{not json", 400),
        (b"", 400),
    ],
)
def test_a_bad_replay_or_purge_body_is_a_clear_4xx(poison_pack: Pack, body: Any, status: int) -> None:
    session = control(poison_pack)
    for action in ("replay", "purge"):
        url = f"{poison_pack.internal_url}/v1/functions/w1/dead-letters/{action}"
        answer = session.post(url, data=body, timeout=10) if isinstance(body, bytes) else session.post(url, json=body, timeout=10)
        assert answer.status_code == status, answer.text
        assert answer.json()["description"]


def test_dead_letters_need_the_token_and_a_queue_function(poison_pack: Pack, tombola: Tombola) -> None:
    base = f"{poison_pack.internal_url}/v1/functions/w1/dead-letters"
    for method, url in (("GET", base), ("POST", f"{base}/replay"), ("POST", f"{base}/purge")):
        answer = requests.request(method, url, json={"all": True}, timeout=10)
        assert answer.status_code == 401 and answer.json()["title"] == "Token required"
    session = control(poison_pack)
    for function in ("nosuch", "i"):
        answer = session.get(f"{poison_pack.internal_url}/v1/functions/{function}/dead-letters", timeout=10)
        assert answer.status_code == 404 and answer.json()["description"]
        replay = session.post(f"{poison_pack.internal_url}/v1/functions/{function}/dead-letters/replay", json={"all": True}, timeout=10)
        assert replay.status_code == 404
    assert session.get(base, params={"limit": 0}, timeout=10).status_code == 400
    wrong = tombola("dead-letters", "i")
    assert wrong.code == 1 and "not triggered by a queue" in wrong.err
