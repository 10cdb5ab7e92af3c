"""W: the slow prize generator, in process and as a real gevent replica."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import time

import pytest
import requests
from PIL import Image

from tests.support import FUNCTIONS, function_client, make_settings, replica

PRIZE_NAMES = {"Sticker pack", "Mug", "T-shirt", "Voucher 10 EUR", "Tote bag", "Voucher 50 EUR", "Headphones"}


@pytest.fixture
def client(tmp_path):
    return function_client("w", make_settings(tmp_path, TOMBOLA_W_TEMPO="0"))


def picture(answer) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(answer.json["img"], validate=True)))
    image.load()
    return image


def test_answer_is_a_prize_and_its_jpeg(client):
    answer = client.simulate_get("/play/42")
    assert answer.status_code == 200
    assert set(answer.json) == {"price", "img"}
    assert answer.json["price"] in PRIZE_NAMES
    image = picture(answer)
    assert (image.format, image.size, image.mode) == ("JPEG", (400, 300), "RGB")
    assert len(base64.b64decode(answer.json["img"])) < 40_000
    assert answer.headers["Cache-Control"] == "no-store"


def test_draws_follow_the_catalogue_weights(client):
    drawn = [client.simulate_get(f"/play/{number}").json["price"] for number in range(1, 301)]
    assert set(drawn) <= PRIZE_NAMES
    assert len(set(drawn)) >= 4
    assert drawn.count("Sticker pack") > drawn.count("Headphones")


def test_the_largest_id_fits_the_picture(client):
    answer = client.simulate_get("/play/999999999")
    assert answer.status_code == 200
    assert picture(answer).size == (400, 300)


def test_tempo_is_honoured(tmp_path):
    client = function_client("w", make_settings(tmp_path, TOMBOLA_W_TEMPO="0.3"))
    started = time.monotonic()
    answer = client.simulate_get("/play/7")
    assert answer.status_code == 200
    assert 0.3 <= time.monotonic() - started < 2


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "1.5", "1234567890", "1%20OR%201=1", "%EF%BC%91", "$(id)", "1;ls"])
def test_bad_ids_are_400_json(client, raw):
    answer = client.simulate_get(f"/play/{raw}")
    assert answer.status_code == 400
    assert answer.json["title"] == "Invalid customer id"


def test_deadline_shorter_than_tempo_is_504_at_the_deadline(tmp_path):
    client = function_client("w", make_settings(tmp_path, TOMBOLA_W_TEMPO="5"))
    started = time.monotonic()
    answer = client.simulate_get("/play/7", headers={"X-Tombola-Timeout": "0.3"})
    assert answer.status_code == 504
    assert answer.json["title"] == "Execution timed out"
    assert time.monotonic() - started < 2


def test_w_is_private():
    from runner.function import Function

    manifest = Function.load(FUNCTIONS / "w").manifest
    assert manifest.is_http and manifest.trigger.public_prefix is None
    assert manifest.reads == ("TOMBOLA_W_TEMPO",)


@pytest.mark.slow
def test_a_replica_sleeps_cooperatively(tmp_path):
    """Under gevent, 40 calls of one second each take about one second in one replica; deadlines hold."""
    env = {"TOMBOLA_HOME": str(tmp_path), "TOMBOLA_W_TEMPO": "1"}

    def play(number: int) -> requests.Response:
        # No idle keep-alive connection left: the replica then stops at once instead of after its grace period.
        return requests.get(f"{url}/play/{number}", headers={"Connection": "close"}, timeout=10)

    with replica("w", env, tmp_path / "w.log") as url:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(play, range(1, 41)))
        elapsed = time.monotonic() - started
        late = requests.get(f"{url}/play/1", headers={"Connection": "close", "X-Tombola-Timeout": "0.5"}, timeout=10)
    assert [answer.status_code for answer in answers] == [200] * 40
    assert {answer.json()["price"] for answer in answers} <= PRIZE_NAMES
    assert 1 <= elapsed < 4
    assert late.status_code == 504 and late.json()["title"] == "Execution timed out"
