"""Bring up what the tests talk to: MariaDB, PostgreSQL, RabbitMQ on loopback, and Chromium.

Run as ``python -m tests.services`` (``make test`` does, as root, with no
prompt). A service whose port answers is left alone. One that is down is
started with the machine's own command. One that is not installed is first
installed from Debian and set up the way the tests reach it: MariaDB's root
without password, PostgreSQL trusting loopback TCP, RabbitMQ on 127.0.0.1
(its ``guest`` may log in from loopback by default). Prints one line per
service; exits 1 with the reason when one cannot be brought up.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT = 120.0
INSTALL_TIMEOUT = 1200.0
CHROMIUM = Path("/usr/bin/chromium")


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached."""


def answers(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_answers(name: str, port: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not answers(port):
        if time.monotonic() > deadline:
            raise ServiceError(f"{name} does not answer on {HOST}:{port} after {timeout:.0f} s")
        time.sleep(0.5)


def run(command: Sequence[str], timeout: float = START_TIMEOUT, stdin: str | None = None) -> None:
    """Run ``command`` from ``/`` (a crashing broker leaves its dump there, not in the repo).

    On failure raise ServiceError with the end of its output.
    """
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ServiceError(f"`{' '.join(command)}` failed: {error}") from None
    if done.returncode != 0:
        tail = "\n".join(line[:300] for line in (done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ServiceError(f"`{' '.join(command)}` exited {done.returncode}:\n{tail}")


class Apt:
    """Installs Debian packages, running ``apt-get update`` once per process."""

    def __init__(self) -> None:
        self.updated = False

    def install(self, *packages: str) -> None:
        if os.geteuid() != 0:
            raise ServiceError(f"{', '.join(packages)} missing, and only root can install it")
        print(f"installing {' '.join(packages)} from Debian ...", flush=True)
        if not self.updated:
            run(["apt-get", "update", "-q"], timeout=INSTALL_TIMEOUT)
            self.updated = True
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], timeout=INSTALL_TIMEOUT)


def _already_up(name: str, port: int) -> str:
    return f"{name}: up on {HOST}:{port}"


def ensure_mariadb(apt: Apt) -> str:
    name, port, daemon = "MariaDB", 3306, "/usr/sbin/mariadbd"
    if answers(port):
        return _already_up(name, port)
    installed = not Path(daemon).exists()
    if installed:
        apt.install("mariadb-server", "mariadb-client")
    if not answers(port):
        socket_dir = Path("/run/mysqld")
        socket_dir.mkdir(exist_ok=True)
        shutil.chown(socket_dir, "mysql", "mysql")
        run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", daemon, "--", "--user=mysql"])
        wait_until_answers(name, port)
    if installed:
        run(
            ["mariadb", "--protocol=socket", "-uroot"],
            stdin=(
                "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('')"
                " OR unix_socket;\n"
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';\n"
                "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
            ),
        )
        return f"{name}: installed, root without password, up on {HOST}:{port}"
    return f"{name}: started, up on {HOST}:{port}"


def _trust_loopback(pg_hba: Path) -> None:
    """Let every user in over loopback TCP without a password (tests only)."""
    loopback = re.compile(r"^(host\s+all\s+all\s+(?:127\.0\.0\.1/32|::1/128)\s+)\S+", re.MULTILINE)
    pg_hba.write_text(loopback.sub(r"\1trust", pg_hba.read_text()))


def ensure_postgresql(apt: Apt) -> str:
    name, port = "PostgreSQL", 5432
    if answers(port):
        return _already_up(name, port)
    installed = shutil.which("pg_ctlcluster") is None
    if installed:
        apt.install("postgresql")
    versions = sorted((main.parent.name for main in Path("/etc/postgresql").glob("*/main")), key=float)
    if not versions:
        raise ServiceError("no cluster 'main' under /etc/postgresql")
    version = versions[-1]
    if installed:
        _trust_loopback(Path("/etc/postgresql", version, "main", "pg_hba.conf"))
    action = "reload" if answers(port) else "start"
    run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action])
    wait_until_answers(name, port)
    return f"{name} {version}: {'installed, trusting loopback' if installed else 'started'}, up on {HOST}:{port}"


def ensure_rabbitmq(apt: Apt) -> str:
    name, port = "RabbitMQ", 5672
    if answers(port):
        return _already_up(name, port)
    installed = shutil.which("rabbitmq-server") is None
    if installed:
        apt.install("rabbitmq-server")
    if not answers(port):
        if installed:
            Path("/etc/rabbitmq/rabbitmq-env.conf").write_text(f"NODENAME=rabbit@localhost\nERL_EPMD_ADDRESS={HOST}\n")
            Path("/etc/rabbitmq/rabbitmq.conf").write_text(f"listeners.tcp.local = {HOST}:{port}\n")
        run(["rabbitmq-server", "-detached"])
        wait_until_answers(name, port)
    return f"{name}: {'installed' if installed else 'started'}, up on {HOST}:{port}"


def ensure_chromium(apt: Apt) -> str:
    if CHROMIUM.exists():
        return f"Chromium: {CHROMIUM}"
    apt.install("chromium", "fonts-liberation", "fonts-dejavu-core")
    if not CHROMIUM.exists():
        raise ServiceError(f"Chromium installed, but {CHROMIUM} is not there")
    return f"Chromium: installed {CHROMIUM}"


SERVICES: tuple[tuple[str, Callable[[Apt], str]], ...] = (
    ("MariaDB", ensure_mariadb),
    ("PostgreSQL", ensure_postgresql),
    ("RabbitMQ", ensure_rabbitmq),
    ("Chromium", ensure_chromium),
)


def main() -> int:
    apt = Apt()
    failed = 0
    for name, ensure in SERVICES:
        try:
            print(ensure(apt), flush=True)
        except (ServiceError, OSError) as error:
            print(f"{name}: cannot be brought up: {error}", file=sys.stderr, flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
