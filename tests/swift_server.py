"""A real OpenStack Swift all-in-one on loopback, for the tests.

The account, container and object servers and a proxy (tempauth and s3api) of
pip's ``swift`` run as four processes of this interpreter with ``workers = 0``
(more workers would make Swift switch to a user ``swift``). Configuration,
rings and the one device live in a fresh folder under /dev/shm: tmpfs keeps
the user xattrs in which Swift stores object metadata. The proxy has no
``cache`` filter: without a memcached it only adds failed connections, and
tempauth issues Fernet tokens that need no cache.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from swift.common.ring import RingBuilder

USER = "test:tester"
KEY = "testing"
HOST = "127.0.0.1"
SERVERS = {
    "account": "swift.account.server",
    "container": "swift.container.server",
    "object": "swift.obj.server",
    "proxy": "swift.proxy.server",
}
PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging listing_formats bulk s3api tempauth"
    " copy slo dlo versioned_writes symlink proxy-logging proxy-server"
)
# Runs a server module as __main__ once Linux was asked to SIGTERM it when the thread that started it
# ends (prctl PR_SET_PDEATHSIG), so that a killed test run leaves no Swift server behind.
LAUNCHER = (
    "import ctypes, runpy, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); "
    "sys.argv = sys.argv[1:]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class SwiftServer:
    """Swift's four servers in a throwaway folder; ``pause()``/``resume()`` take them down and back.

    ``freeze()``/``thaw()`` make the proxy hang and go on again (a store that is slow, not down).
    """

    user = USER
    key = KEY

    def __init__(self, log_level: str = "WARNING", startup_timeout: float = 30.0) -> None:
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.root: Path | None = None
        self.ports: dict[str, int] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def auth_url(self) -> str:
        return f"http://{HOST}:{self.ports['proxy']}/auth/v1.0"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['proxy']}"

    def settings_env(self, kind: str) -> dict[str, str]:
        """The TOMBOLA_* variables that point a store of ``kind`` ("swift" or "s3") at this server.

        Both kinds reach the same account: the S3 bucket ``x`` is the Swift container ``x``. A test
        that must not see another's objects sets its own ``TOMBOLA_CONTAINER`` too.
        """
        if kind == "swift":
            return {
                "TOMBOLA_STORE": "swift",
                "TOMBOLA_SWIFT_AUTH_URL": self.auth_url,
                "TOMBOLA_SWIFT_AUTH_VERSION": "1",
                "TOMBOLA_SWIFT_USER": self.user,
                "TOMBOLA_SWIFT_KEY": self.key,
            }
        if kind == "s3":
            return {
                "TOMBOLA_STORE": "s3",
                "TOMBOLA_S3_ENDPOINT_URL": self.s3_endpoint,
                "TOMBOLA_S3_ACCESS_KEY": self.user,
                "TOMBOLA_S3_SECRET_KEY": self.key,
                "TOMBOLA_S3_REGION": "us-east-1",
            }
        raise ValueError(f"kind must be swift or s3, not {kind!r}")

    def start(self) -> None:
        """Write configuration and rings into a new folder, then start the four servers."""
        if self.root is not None:
            raise RuntimeError("this Swift server was already started")
        shm = Path("/dev/shm")
        self.root = Path(tempfile.mkdtemp(prefix="tombola-swift-", dir=shm if shm.is_dir() else None))
        self.ports = {name: _free_port() for name in SERVERS}
        (self.root / "node" / "d1").mkdir(parents=True)
        self._write_configuration()
        self._build_rings()
        try:
            self.resume()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the servers and remove the folder with everything they stored."""
        self.pause()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def pause(self) -> None:
        """Stop the four servers, keeping their folder and ports for ``resume()``."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.send_signal(signal.SIGCONT)  # a frozen one too
        for process in self._processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()

    def resume(self) -> None:
        """Start the four servers on the same ports and folder; return once the proxy authenticates."""
        assert self.root is not None, "start() the server first"
        if self._processes:
            return
        for name, module in SERVERS.items():
            with open(self.root / f"{name}.log", "ab") as log:
                self._processes[name] = subprocess.Popen(
                    [sys.executable, "-c", LAUNCHER, module, str(self.root / f"{name}-server.conf"), "-v"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                )
        try:
            self._wait_ready()
        except BaseException:
            self.pause()
            raise

    def freeze(self) -> None:
        """Stop the proxy in its tracks (SIGSTOP): connections are still accepted, nothing is answered until thaw()."""
        self._processes["proxy"].send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen proxy go on (SIGCONT): it answers what waited."""
        self._processes["proxy"].send_signal(signal.SIGCONT)

    def __enter__(self) -> SwiftServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = [name for name in SERVERS if name != "proxy"]
        while time.monotonic() < deadline:
            self._check_alive()
            pending = [name for name in pending if not _accepts(self.ports[name])]
            if not pending and self._authenticates():
                return
            time.sleep(0.05)
        raise RuntimeError(f"Swift did not start within {self.startup_timeout} s; see the logs in {self.root}")

    def _check_alive(self) -> None:
        assert self.root is not None
        for name, process in self._processes.items():
            if process.poll() is not None:
                log = (self.root / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"swift {name} server exited with {process.returncode}:\n{log}")

    def _authenticates(self) -> bool:
        try:
            answer = requests.get(self.auth_url, headers={"X-Auth-User": self.user, "X-Auth-Key": self.key}, timeout=1)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def _write_configuration(self) -> None:
        assert self.root is not None
        (self.root / "swift.conf").write_text(
            "[swift-hash]\n"
            f"swift_hash_path_suffix = {os.urandom(8).hex()}\n"
            "[storage-policy:0]\n"
            "name = gold\n"
            "policy_type = replication\n"
            "default = yes\n"
        )
        for name in SERVERS:
            (self.root / f"{name}-server.conf").write_text(self._defaults(name) + self._pipeline(name))

    def _defaults(self, name: str) -> str:
        assert self.root is not None
        return (
            "[DEFAULT]\n"
            f"bind_ip = {HOST}\n"
            f"bind_port = {self.ports[name]}\n"
            "workers = 0\n"
            f"swift_dir = {self.root}\n"
            f"devices = {self.root / 'node'}\n"
            "mount_check = false\n"
            f"log_name = swift-{name}\n"
            f"log_level = {self.log_level}\n"
        )

    def _pipeline(self, name: str) -> str:
        if name != "proxy":
            return f"[pipeline:main]\npipeline = {name}-server\n[app:{name}-server]\nuse = egg:swift#{name}\n"
        fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
        options = {
            "tempauth": f"user_test_tester = {KEY} .admin\nfernet_key_1 = {fernet_key}\nactive_fernet_key_id = 1\n",
            "s3api": "location = us-east-1\n",
        }
        filters = dict.fromkeys(item for item in PROXY_PIPELINE.split() if item != "proxy-server")
        sections = "".join(
            f"[filter:{item}]\nuse = egg:swift#{item.replace('-', '_')}\n{options.get(item, '')}" for item in filters
        )
        return (
            f"[pipeline:main]\npipeline = {PROXY_PIPELINE}\n"
            "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n" + sections
        )

    def _build_rings(self) -> None:
        assert self.root is not None
        for kind in ("account", "container", "object"):
            builder = RingBuilder(6, 1, 1)
            builder.add_dev(
                {"id": 0, "region": 1, "zone": 1, "ip": HOST, "port": self.ports[kind], "device": "d1", "weight": 1.0}
            )
            builder.rebalance()
            builder.get_ring().save(str(self.root / f"{kind}.ring.gz"))


@pytest.fixture(scope="session")
def swift_server() -> Iterator[SwiftServer]:
    """One Swift all-in-one for the whole test session (register it in conftest.py)."""
    server = SwiftServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
