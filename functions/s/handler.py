"""S — status: ``GET /user/{customer_id}`` answers whether the customer has played.

``status`` is ``not_played``, ``playing`` (a play is being drawn right now) or
``played`` with ``played_at`` (ISO 8601) and the ``price`` won.
"""

from __future__ import annotations

import falcon

from runner import plays
from runner.context import Context
from runner.database import isoformat
from runner.ids import parse_customer_id


class Status:
    """The play status of one customer."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, customer_id: str) -> None:
        number = parse_customer_id(customer_id)
        play = plays.find(self.ctx.database, number)
        resp.cache_control = ["no-store"]
        if play is None:
            resp.media = {"id": number, "status": "not_played", "played_at": None, "price": None}
        elif play.status == plays.CLAIMED:
            resp.media = {"id": number, "status": "playing", "played_at": None, "price": None}
        else:
            resp.media = {"id": number, "status": "played", "played_at": isoformat(play.played_at), "price": play.price}


def routes(ctx: Context) -> dict[str, object]:
    return {"/user/{customer_id}": Status(ctx)}
