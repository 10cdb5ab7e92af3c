"""W — the slow third-party prize generator: ``GET /play/{customer_id}``.

Answers ``{"price": <prize name>, "img": <base64 JPEG>}`` after a pause of
``TOMBOLA_W_TEMPO`` seconds, as the real (slow) prize service does. The pause
never outlasts the execution's deadline: a tempo longer than the time left
ends the call with 504. W does not know the shop's customers: any valid id
gets a prize.
"""

from __future__ import annotations

import base64
import time

import falcon
import pictures
import prizes

from runner.app import remaining
from runner.context import Context
from runner.errors import ExecutionTimeout
from runner.ids import parse_customer_id


class Play:
    """One draw of a prize for a customer."""

    def __init__(self, ctx: Context) -> None:
        self.tempo = max(0.0, ctx.settings.w_tempo)

    def on_get(self, req: falcon.Request, resp: falcon.Response, customer_id: str) -> None:
        number = parse_customer_id(customer_id)
        prize = prizes.draw()
        picture = pictures.render(prize, number)
        left = remaining(req)
        time.sleep(min(self.tempo, left))
        if self.tempo > left:
            raise ExecutionTimeout(f"the prize takes {self.tempo:g} s, the deadline allowed {left:.1f} s")
        resp.cache_control = ["no-store"]
        resp.media = {"price": prize.name, "img": base64.b64encode(picture).decode("ascii")}


def routes(ctx: Context) -> dict[str, object]:
    return {"/play/{customer_id}": Play(ctx)}
