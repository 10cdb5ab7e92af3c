"""The HTTP runner: one replica of an HTTP function under gunicorn's gevent worker.

The gevent worker holds many slow executions at once in one process (W sleeps
five seconds per call; it is not CPU-bound). One worker per replica: a replica
is the unit the gateway balances and the control plane scales.
"""

from __future__ import annotations

from typing import Any

import gunicorn.app.base
import gunicorn.glogging

from runner import logs
from runner.function import Function
from runner.limits import limit_memory


def log_config(function: str, version: str) -> dict[str, Any]:
    """gunicorn's own log lines as JSON, like every other line of the replica."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "runner.logs.JsonFormatter", "identity": {"function": function, "version": version}},
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": logs.level(), "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": {"level": logs.level(), "handlers": ["stderr"], "propagate": False}},
    }


class ReplicaLogger(gunicorn.glogging.Logger):
    """gunicorn's logger without its access line: runner.app.RequestLog writes one, as JSON, with the request id."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Nothing: gunicorn would format its atoms for every request only to drop them."""


class HttpReplica(gunicorn.app.base.BaseApplication):
    """A gunicorn master with one gevent worker serving ``function``."""

    def __init__(self, function: Function, host: str, port: int, version: str) -> None:
        self.function = function
        self.bind = f"{host}:{port}"
        self.version = version
        super().__init__()

    def load_config(self) -> None:
        limits = self.function.manifest.limits
        memory_mb = limits.memory_mb
        self.cfg.set("bind", [self.bind])
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gevent")
        self.cfg.set("worker_connections", limits.concurrency + 64)
        self.cfg.set("backlog", 2048)
        # Shorter than a replica's graceful stop, longer than the gateway's pooled idle time (2 s):
        # idle keep-alive connections then never delay a stop by more than a few seconds.
        self.cfg.set("keepalive", 4)
        self.cfg.set("timeout", max(30, int(limits.timeout * 2)))
        self.cfg.set("graceful_timeout", int(limits.timeout) + 5)
        self.cfg.set("control_socket_disable", True)  # replicas are controlled by signals, not a shared socket
        self.cfg.set("proc_name", f"tombola-{self.function.name}")
        self.cfg.set("logconfig_dict", log_config(self.function.name, self.version))
        logs.skip_unused_fields()
        self.cfg.set("logger_class", ReplicaLogger)
        self.cfg.set("post_fork", lambda server, worker: limit_memory(memory_mb))

    def load(self) -> Any:
        # Runs in the worker, after gevent's monkey-patching and the fork: pools open here.
        from runner.app import create_app
        from runner.context import Context
        from runner.settings import Settings

        return create_app(self.function, Context(Settings.from_environ(), self.function.manifest), self.version)
