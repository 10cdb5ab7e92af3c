"""Errors as JSON ``{"title", "description"}``, whatever went wrong and whatever the client accepts."""

from __future__ import annotations

import http
import json
import logging
from typing import Any

import falcon
import falcon.asgi

log = logging.getLogger("tombola.gateway")


def serialize(req: falcon.asgi.Request, resp: falcon.asgi.Response, error: falcon.HTTPError) -> None:
    """Write ``error`` as JSON; an error without description gets its status's standard one."""
    description = error.description or http.HTTPStatus(error.status_code).description
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"title": error.title, "description": description}).encode()


async def _unexpected(req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any) -> None:
    log.exception("unexpected error", extra={"path": req.path})
    raise falcon.HTTPInternalServerError(title="Internal error", description="The gateway failed; the error was logged.")


def install(app: falcon.asgi.App) -> None:
    """Make every error of ``app`` a JSON answer, never a traceback."""
    app.set_error_serializer(serialize)
    app.add_error_handler(Exception, _unexpected)
