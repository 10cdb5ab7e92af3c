"""Private instances of the services a fault test breaks: never the machine's shared ones.

Each one runs from the installed server, in a temporary folder, on free
loopback ports. ``stop()`` then ``start()`` is a restart: the same ports and
the same data. Use them as context managers: the folder and every process are
gone afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import kombu
import sqlalchemy as sa

from tests.support import free_port

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
POSTGRES_BIN = Path("/usr/lib/postgresql")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


class ServiceError(RuntimeError):
    """A private service did not start or stop."""


def _wait_until(ready: Callable[[], bool], what: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``ready`` until it holds; fail when ``timeout`` passes or ``alive`` says the server died."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise ServiceError(f"{what} exited while starting")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


class PrivateRabbitMQ:
    """A RabbitMQ node of its own: own node name, AMQP and distribution ports, Mnesia and logs.

    Its configuration lives in its folder, so it reads neither ``/etc/rabbitmq``
    (whose listener is the shared 5672) nor any plugin. ``guest`` may log in
    from loopback, on the default vhost.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tombola-rabbitmq-"))
        self.node = f"tombola-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "disk_free_limit.absolute = 10MB\n"
        )
        (self.folder / "rabbitmq-env.conf").write_text("")
        (self.folder / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.folder),  # the node's Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = START_TIMEOUT) -> PrivateRabbitMQ:
        """Start the node (again) and return once ``guest`` can open a channel."""
        with open(self.folder / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(RABBITMQ_SERVER)],
                cwd=self.folder,
                env=self.environment(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        _wait_until(self.accepts, f"RabbitMQ {self.node}", timeout, alive=lambda: self.process.poll() is None)
        return self

    def accepts(self) -> bool:
        """Whether ``guest`` can log in and open a channel now."""
        try:
            with kombu.Connection(self.url, connect_timeout=1) as connection:
                connection.default_channel
            return True
        except Exception:  # any refusal or half-started broker means "not yet"
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the node as its service does (SIGTERM: a clean shutdown); SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap_group()

    def kill(self) -> None:
        """Kill the node at once, as a crash would."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def pause(self) -> None:
        """Freeze the node: connections stay open, nothing is answered (no confirm either)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def rabbitmqctl(self, *args: str) -> None:
        """Run ``rabbitmqctl`` against this node."""
        done = subprocess.run(
            [str(RABBITMQCTL), "-n", self.node, *args], env=self.environment(), capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise ServiceError(f"rabbitmqctl {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")

    @contextlib.contextmanager
    def publishers_blocked(self) -> Iterator[None]:
        """A memory alarm (high watermark 0): the node stops reading from every publishing connection."""
        self.rabbitmqctl("set_vm_memory_high_watermark", "0")
        try:
            yield
        finally:
            self.rabbitmqctl("set_vm_memory_high_watermark", "0.4")

    def _reap_group(self) -> None:
        """Erlang's helpers (erl_child_setup, inet_gethost) leave with the node; make sure of it."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> PrivateRabbitMQ:
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _postgres_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian's layout)."""
    versions = sorted(POSTGRES_BIN.glob("*/bin/pg_ctl"), key=lambda path: float(path.parent.parent.name))
    if not versions:
        raise ServiceError(f"no PostgreSQL under {POSTGRES_BIN}")
    return versions[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster of its own: trust authentication, loopback only, its socket in its folder.

    ``initdb`` refuses to run as root, so as root (the tests' usual user) the
    cluster belongs to the ``postgres`` OS user.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tombola-postgres-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.bin = _postgres_bin()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.folder, self.user)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.folder,
            user=self.user,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(f"{' '.join(args[:2])} exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")

    def start(self, timeout: float = START_TIMEOUT) -> PrivatePostgres:
        """Create the cluster on first start, start it, return once it accepts connections."""
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "start", "-D", str(self.data), "-w", "-t", str(int(timeout)), "-l", str(self.folder / "server.log"), "-o", options)
        _wait_until(self.accepts, f"PostgreSQL on {self.port}", timeout)
        return self

    def accepts(self) -> bool:
        engine = sa.create_engine(self.url, poolclass=sa.NullPool, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.OperationalError:
            return False
        finally:
            engine.dispose()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the cluster, ending its connections (``pg_ctl stop -m fast``)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", str(int(timeout)), timeout=timeout + 5)

    def __enter__(self) -> PrivatePostgres:
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
