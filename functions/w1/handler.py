"""W1 — ``POST /messages``: records the play and stores its picture as ``<id>.jpg``.

The play is settled first (runner.plays): a message whose claim was given
back (B answered 503 when the broker's confirm never came) or taken over is
discarded, and no picture is stored for it. Idempotent: the same message twice
records the same play and stores the same picture. The runner acknowledges
the message only after a 2xx answer.
"""

from __future__ import annotations

import logging

import falcon

from runner import plays
from runner.context import Context
from runner.messages import PlayMessage

log = logging.getLogger("tombola.w1")


class PlayRecorder:
    """Records one play message."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        message = PlayMessage.from_media(req.get_media())
        if not plays.settle(self.ctx.database, message):
            resp.media = {"status": "discarded", "id": message.id, "play_id": message.play_id}
            return
        key = plays.picture_key(message.id)
        self.ctx.store.put(key, message.picture, "image/jpeg")
        plays.attach_picture(self.ctx.database, message.id, message.play_id, key)
        log.info("play recorded", extra={"customer": message.id, "play_id": message.play_id})
        resp.media = {"status": "recorded", "id": message.id, "picture": key}


def routes(ctx: Context) -> dict[str, object]:
    return {"/messages": PlayRecorder(ctx)}
