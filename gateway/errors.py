"""Errors as JSON ``{"title", "description"}``, whatever went wrong and whatever the client accepts."""

from __future__ import annotations

import logging
from typing import Any

import falcon
import falcon.asgi

from runner.errors import serialize_error

log = logging.getLogger("tombola.gateway")


async def _unexpected(req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any) -> None:
    log.exception("unexpected error", extra={"path": req.path})
    raise falcon.HTTPInternalServerError(title="Internal error", description="The gateway failed; the error was logged.")


def install(app: falcon.asgi.App) -> None:
    """Make every error of ``app`` a JSON answer, never a traceback."""
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, _unexpected)
