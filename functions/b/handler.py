"""B — the Play button: ``POST /user/{customer_id}`` plays, once per customer, never twice.

1. Claim the customer's only play in the database (an atomic insert): a second
   play gets 409, whatever the page shows.
2. Ask W for a prize within the execution's deadline. If W fails or is too
   slow, give the claim back and answer 503: the customer may retry.
3. Publish the play, persistent, and wait for the broker's confirm; if the
   broker cannot take it, give the claim back and answer 503. Without a
   confirm the message may still have gone out: the claim is given back only
   if W1 or W2 did not settle it meanwhile (runner.plays); if they did, the
   play went through after all.
4. Mark the play played and answer ``{"status": "ok", "price", "play_id"}``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time

import falcon
import requests
import requests.adapters
import sqlalchemy.exc

from runner import plays
from runner.app import TIMEOUT_HEADER, remaining
from runner.bus import PUBLISH_TIMEOUT
from runner.context import Context
from runner.database import isoformat, utcnow
from runner.errors import BackendUnavailable
from runner.ids import parse_customer_id

log = logging.getLogger("tombola.b")
MAX_PRICE_LENGTH = 64
DRAW_ATTEMPTS = 2


class PrizeWorker:
    """The client of W, the slow third-party prize generator."""

    def __init__(self, base_url: str, connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=connections, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def draw(self, customer_id: int, budget: float) -> tuple[str, str]:
        """Ask W for a prize within ``budget`` seconds; return (price, base64 JPEG).

        A connection that breaks without an answer is tried once more: a kept-alive
        connection may be closed by the other end just as it is reused. A timeout is not.
        """
        deadline = time.monotonic() + budget
        for attempt in range(1, DRAW_ATTEMPTS + 1):
            left = deadline - time.monotonic()
            if left <= 0.5:
                raise BackendUnavailable("prize worker", "no time left for W")
            try:
                answer = self.session.get(
                    f"{self.base_url}/play/{customer_id}",
                    headers={TIMEOUT_HEADER: f"{left:.2f}"},
                    timeout=(min(2.0, left), left),
                )
                break
            except requests.ConnectionError as error:
                if attempt == DRAW_ATTEMPTS or isinstance(error, requests.Timeout):
                    raise BackendUnavailable("prize worker", type(error).__name__) from error
                log.info("connection to W broke, trying again", extra={"customer": customer_id, "error": type(error).__name__})
            except requests.RequestException as error:
                raise BackendUnavailable("prize worker", type(error).__name__) from error
        if answer.status_code != 200:
            raise BackendUnavailable("prize worker", f"W answered {answer.status_code}")
        try:
            prize = answer.json()
            price, img = prize["price"], prize["img"]
            if not isinstance(price, str) or not 0 < len(price) <= MAX_PRICE_LENGTH or not isinstance(img, str):
                raise ValueError("price or img of the wrong type")
            base64.b64decode(img, validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise BackendUnavailable("prize worker", f"W answered an unusable prize: {error}") from error
        return price, img


class Play:
    """Plays for one customer."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.worker = PrizeWorker(ctx.settings.w_url, ctx.manifest.limits.concurrency)

    def on_post(self, req: falcon.Request, resp: falcon.Response, customer_id: str) -> None:
        number = parse_customer_id(customer_id)
        if self.ctx.customers.find(number) is None:
            raise falcon.HTTPNotFound(title="Unknown customer", description=f"No customer has the id {number}.")
        play_id = plays.claim(self.ctx.database, number)
        if play_id is None:
            raise falcon.HTTPConflict(title="Already played", description=f"Customer {number} has already played.")
        try:
            price, img = self.worker.draw(number, remaining(req) - PUBLISH_TIMEOUT)
        except BaseException:
            plays.release(self.ctx.database, number, play_id)
            raise
        played_at = utcnow()
        try:
            self.ctx.publisher.publish_play(
                {"id": number, "play_id": play_id, "price": price, "img": img, "played_at": isoformat(played_at)}
            )
        except BaseException:
            if plays.release(self.ctx.database, number, play_id):
                raise
            # Not given back: a consumer settled the play, so its message went out although no confirm came.
            log.warning("publish unconfirmed but delivered", extra={"customer": number, "play_id": play_id})
        try:
            plays.mark_played(self.ctx.database, number, play_id, price, played_at)
        except sqlalchemy.exc.SQLAlchemyError as error:
            # The play is accepted (the broker confirmed it): W1 records it as played.
            log.warning("play published but not marked", extra={"customer": number, "error": str(error)})
        log.info("played", extra={"customer": number, "play_id": play_id, "price": price})
        resp.media = {"status": "ok", "price": price, "play_id": play_id}


def routes(ctx: Context) -> dict[str, object]:
    return {"/user/{customer_id}": Play(ctx)}
