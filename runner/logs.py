"""Structured logs: one JSON object a line on stderr.

A line logged while a replica handles a request that carries ``X-Request-Id``
also carries that id as ``request_id`` (see ``runner.app.RequestLog``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the request being handled (each gevent greenlet has its own context)."""


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON with its ``extra`` fields and the process's identity."""

    def __init__(self, identity: dict[str, str]) -> None:
        super().__init__()
        self.identity = identity

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
            **self.identity,
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def level() -> str:
    """The log level from ``TOMBOLA_LOG_LEVEL`` (default INFO)."""
    return os.environ.get("TOMBOLA_LOG_LEVEL", "INFO").upper()


def skip_unused_fields() -> None:
    """Stop gathering what no line shows: the caller's file and line, the thread, the process.

    The logging HOWTO's "Optimization": an access line per request then costs
    no walk of the stack (``sys._getframe``) and no thread or process look-up.
    """
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure(**identity: str) -> None:
    """Send every log record of this process to stderr as JSON, tagged with ``identity``."""
    skip_unused_fields()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(identity))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level())
