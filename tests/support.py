"""Helpers for tests that run one function in process or as a replica."""

from __future__ import annotations

import dataclasses
import threading
import wsgiref.simple_server
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import falcon
import falcon.testing
import pytest

from gateway.cli import main
from runner import database
from runner.app import create_app
from runner.context import Context
from runner.function import Function
from runner.settings import Settings

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def make_settings(home: Path, **env: str) -> Settings:
    """Settings on embedded defaults under ``home``, with ``env`` overriding."""
    return Settings.from_environ({"TOMBOLA_HOME": str(home), "TOMBOLA_W_TEMPO": "0", **env})


def migrated(settings: Settings, seed: int = 100) -> Settings:
    """Create the schema and a small seed of customers; return the same settings."""
    database.migrate(database.create_engine(settings.database_url), seed=seed)
    return settings


def function_app(name: str, settings: Settings) -> falcon.App:
    function = Function.load(FUNCTIONS / name)
    return create_app(function, Context(settings, function.manifest))


def function_client(name: str, settings: Settings) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(function_app(name, settings))


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        pass


class _ThreadingServer(wsgiref.simple_server.WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True).start()

    def _serve_one(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


@contextmanager
def serving(app: falcon.App) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yield its base URL."""
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def environment(settings: Settings, **extra: str) -> Mapping[str, str]:
    """The TOMBOLA_* variables that reproduce ``settings`` in another process."""
    return {"TOMBOLA_HOME": str(settings.home), "TOMBOLA_DATABASE_URL": settings.database_url, **extra}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def replica(name: str, env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """Run one replica of function ``name`` as its own process; yield its base URL."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import requests

    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runner", "serve", str(FUNCTIONS / name), "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica {name} did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclasses.dataclass(frozen=True)
class Run:
    """What one ``tombola`` command did: its exit status, stdout and stderr."""

    code: int
    out: str
    err: str


Tombola = Callable[..., Run]


def tombola_against(
    url: str, token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Tombola:
    """Run ``tombola ARGS`` in this process against the gateway at ``url``; never a traceback."""
    monkeypatch.setenv("TOMBOLA_URL", url)
    monkeypatch.setenv("TOMBOLA_TOKEN", token)

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Run(code, captured.out, captured.err)

    return run
