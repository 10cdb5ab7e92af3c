"""The Falcon application of one function replica.

Wraps the handler's routes with what every replica offers: ``/healthz``,
JSON errors (never a traceback), a bound on concurrent executions with
backpressure, a per-execution deadline, and an access log line per execution
carrying the request's ``X-Request-Id``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import falcon
import gevent
import gevent.monkey

from runner import logs
from runner.context import Context
from runner.errors import ExecutionTimeout, install_error_handlers
from runner.function import Function

TIMEOUT_HEADER = "X-Tombola-Timeout"
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
log = logging.getLogger("tombola.runner")
access_log = logging.getLogger("tombola.access")


def _cooperative() -> bool:
    """True in a replica whose blocking calls gevent made cooperative (so work can be stopped)."""
    return gevent.monkey.is_module_patched("socket")


def remaining(req: falcon.Request) -> float:
    """Seconds left before this execution's deadline (never below zero)."""
    return max(0.0, req.context.deadline - time.monotonic())


class RequestLog:
    """Middleware: the request's id on every line logged while handling it, and one access line per execution."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.monotonic()
        raw = req.get_header(REQUEST_ID_HEADER)
        logs.request_id.set(raw if raw and REQUEST_ID.fullmatch(raw) else None)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, succeeded: bool) -> None:
        if req.path != "/healthz":
            access_log.info(
                "request handled",
                extra={
                    "method": req.method,
                    "path": req.path,
                    "status": resp.status_code,
                    "duration_ms": round((time.monotonic() - req.context.started) * 1000, 1),
                },
            )
        logs.request_id.set(None)


class Limits:
    """Middleware: at most ``concurrency`` executions at once, each within its deadline."""

    def __init__(self, concurrency: int, timeout: float) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self.in_flight = 0
        self.served = 0
        self._lock = threading.Lock()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        budget = self._budget(req)
        req.context.deadline = time.monotonic() + budget
        if req.path == "/healthz":
            return
        with self._lock:
            if self.in_flight >= self.concurrency:
                raise falcon.HTTPServiceUnavailable(
                    title="Replica busy",
                    description=f"{self.concurrency} executions already in progress; retry shortly.",
                    retry_after=1,
                )
            self.in_flight += 1
            req.context.counted = True
        if _cooperative():
            req.context.timer = gevent.Timeout(budget, ExecutionTimeout(f"stopped after {budget:.1f} s"))
            req.context.timer.start()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, succeeded: bool) -> None:
        timer = getattr(req.context, "timer", None)
        if timer is not None:
            timer.close()
        if getattr(req.context, "counted", False):
            with self._lock:
                self.in_flight -= 1
                self.served += 1

    def _budget(self, req: falcon.Request) -> float:
        header = req.get_header(TIMEOUT_HEADER)
        if header:
            try:
                asked = float(header)
            except ValueError:
                asked = self.timeout
            if 0 < asked < self.timeout:
                return asked
        return self.timeout


class Health:
    """``GET /healthz``: liveness and load of this replica."""

    def __init__(self, function: Function, limits: Limits, version: str, details: Callable[[], dict[str, Any]] | None) -> None:
        self.function = function
        self.limits = limits
        self.version = version
        self.details = details
        self.started = time.time()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "status": "ok",
            "function": self.function.name,
            "version": self.version,
            "pid": os.getpid(),
            "in_flight": self.limits.in_flight,
            "served": self.limits.served,
            "uptime": round(time.time() - self.started, 1),
            **(self.details() if self.details else {}),
        }


def create_app(
    function: Function,
    context: Context,
    version: str = "local",
    details: Callable[[], dict[str, Any]] | None = None,
) -> falcon.App:
    """The WSGI app of a replica of ``function``; ``details`` adds to its /healthz answer."""
    limits = Limits(function.manifest.limits.concurrency, function.manifest.limits.timeout)
    app = falcon.App(middleware=(RequestLog(), limits), cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    install_error_handlers(app)
    app.add_route("/healthz", Health(function, limits, version, details))
    for template, resource in function.import_handler().routes(context).items():
        app.add_route(template, resource)
    return app
