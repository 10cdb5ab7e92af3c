"""The whole pack as a user runs it: ``tombola up`` in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


class Pack:
    """``tombola up`` with its own home, ports and backends."""

    def __init__(self, home: Path, env: Mapping[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.internal_port = free_port()
        self.env = {
            **os.environ,
            "TOMBOLA_HOME": str(home),
            "TOMBOLA_PORT": str(self.port),
            "TOMBOLA_INTERNAL_PORT": str(self.internal_port),
            "TOMBOLA_TOKEN": "test-token-" + os.urandom(8).hex(),
            "TOMBOLA_PLAY_RATE": "0",  # tests play from one address; tests/test_security.py turns the limit on
            **env,
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.internal_url = f"http://127.0.0.1:{self.internal_port}"
        self.log_path = home / "pack.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Pack:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("tombola")), "up"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tombola up exited: {self.log()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).json().get("status") == "ok":
                    return self
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tombola up not healthy in {timeout} s: {self.log()}")

    def stop(self) -> int | None:
        """Ctrl-C, as a user would; then make sure no process of the group is left."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
