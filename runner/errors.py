"""Errors every replica maps to a clear JSON answer instead of a traceback."""

from __future__ import annotations

import http
import json
import logging
from typing import Any

import falcon
import sqlalchemy.exc

log = logging.getLogger("tombola.runner")


class BackendUnavailable(Exception):
    """A backend (object store, broker, mail API, W) cannot be reached now."""

    def __init__(self, backend: str, detail: str = "") -> None:
        super().__init__(f"{backend} unavailable{': ' + detail if detail else ''}")
        self.backend = backend


class BackendError(Exception):
    """A backend answered, but with an error that waiting for it will not cure (e.g. its own 500)."""

    def __init__(self, backend: str, detail: str = "") -> None:
        super().__init__(f"{backend} failed{': ' + detail if detail else ''}")
        self.backend = backend


class ExecutionTimeout(Exception):
    """The execution ran past its deadline and was stopped."""


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Write ``error`` as JSON ``{"title", "description"}``; one without description gets its status's standard one."""
    description = error.description or http.HTTPStatus(error.status_code).description
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"title": error.title, "description": description}).encode()


def _backend_unavailable(req: falcon.Request, resp: falcon.Response, error: BackendUnavailable, params: Any) -> None:
    log.warning("backend unavailable", extra={"backend": error.backend, "error": str(error), "path": req.path})
    raise falcon.HTTPServiceUnavailable(
        title=f"{error.backend.capitalize()} unavailable",
        description=f"The {error.backend} cannot be reached right now; retry shortly.",
        retry_after=2,
    )


def _backend_error(req: falcon.Request, resp: falcon.Response, error: BackendError, params: Any) -> None:
    log.warning("backend failed", extra={"backend": error.backend, "error": str(error), "path": req.path})
    raise falcon.HTTPBadGateway(title=f"{error.backend.capitalize()} failed", description=str(error))


def _database_unavailable(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    log.warning("database unavailable", extra={"error": type(error).__name__, "path": req.path})
    raise falcon.HTTPServiceUnavailable(
        title="Database unavailable",
        description="The database cannot be reached right now; retry shortly.",
        retry_after=2,
    )


def _timeout(req: falcon.Request, resp: falcon.Response, error: ExecutionTimeout, params: Any) -> None:
    raise falcon.HTTPGatewayTimeout(title="Execution timed out", description=str(error))


def _unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    log.exception("unexpected error", extra={"path": req.path})
    raise falcon.HTTPInternalServerError(title="Internal error", description="The function failed; the error was logged.")


def install_error_handlers(app: falcon.App) -> None:
    """Map unavailable backends to 503, their error answers to 502, deadlines to 504, anything else to a JSON 500."""
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(sqlalchemy.exc.OperationalError, _database_unavailable)
    app.add_error_handler(sqlalchemy.exc.InterfaceError, _database_unavailable)
    app.add_error_handler(sqlalchemy.exc.TimeoutError, _database_unavailable)
    app.add_error_handler(BackendUnavailable, _backend_unavailable)
    app.add_error_handler(BackendError, _backend_error)
    app.add_error_handler(ExecutionTimeout, _timeout)
