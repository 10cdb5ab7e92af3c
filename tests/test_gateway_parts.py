"""The gateway's small parts on their own: configuration, registry, balancer, token, catalog."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.balancer import Balancer
from gateway.catalog import load_functions
from gateway.coalescing import CoalescingTransport
from gateway.config import GatewayConfig
from gateway.control_token import ensure_token
from gateway.registry import Registry, RegistryError, Replica
from gateway.supervisor import _started_by, replica_environment
from runner import manifest
from runner.manifest import ManifestError
from runner.settings import Settings, SettingsError


def http_manifest(name: str, prefix: str | None = None) -> manifest.Manifest:
    trigger = f'public_prefix = "{prefix}"' if prefix else ""
    return manifest.loads(f'name = "{name}"\n[trigger]\ntype = "http"\n{trigger}\n')


def replica(n: int, function: str = "i", **state: object) -> Replica:
    return Replica(id=f"{function}-{n}", function=function, version="local", url=f"http://127.0.0.1:{9000 + n}", **state)


class TestConfig:
    def test_defaults(self) -> None:
        config = GatewayConfig.from_environ({})
        assert (config.host, config.port, config.internal_host, config.internal_port) == ("127.0.0.1", 8080, "127.0.0.1", 8081)
        assert config.functions_dir == Path(__file__).resolve().parent.parent / "functions"
        assert (config.token, config.control_public, config.max_body) == ("", True, 65536)

    def test_values(self) -> None:
        config = GatewayConfig.from_environ(
            {"TOMBOLA_HOST": "0.0.0.0", "TOMBOLA_PORT": "80", "TOMBOLA_CONTROL_PUBLIC": "false", "TOMBOLA_MAX_BODY": "1024"}
        )
        assert (config.port, config.control_public, config.max_body) == (80, False, 1024)
        assert config.public_url == "http://127.0.0.1:80/"
        assert config.internal_url == "http://127.0.0.1:8081"

    @pytest.mark.parametrize(
        "env",
        [{"TOMBOLA_PORT": "http"}, {"TOMBOLA_PORT": "70000"}, {"TOMBOLA_CONTROL_PUBLIC": "maybe"}, {"TOMBOLA_MAX_BODY": "-1"}],
    )
    def test_bad_values_are_named(self, env: dict[str, str]) -> None:
        with pytest.raises(SettingsError, match=next(iter(env))):
            GatewayConfig.from_environ(env)

    def test_replica_environment(self, tmp_path: Path) -> None:
        config = GatewayConfig.from_environ({"TOMBOLA_INTERNAL_PORT": "9181"})
        settings = Settings.from_environ({"TOMBOLA_HOME": str(tmp_path)})
        env = replica_environment(config, settings, {"TOMBOLA_TOKEN": "secret", "PATH": "/bin"})
        assert env == {"PATH": "/bin", "TOMBOLA_HOME": str(tmp_path), "TOMBOLA_W_URL": "http://127.0.0.1:9181/fn/w"}
        own = replica_environment(config, settings, {"TOMBOLA_W_URL": "http://w.example/w"})
        assert own["TOMBOLA_W_URL"] == "http://w.example/w"


class TestRegistry:
    def test_functions_by_name_and_prefix(self) -> None:
        registry = Registry()
        registry.add_function(http_manifest("i", "/srvi"))
        registry.add_function(http_manifest("w"))
        assert [m.name for m in registry.functions()] == ["i", "w"]
        assert registry.published("/srvi").name == "i"  # type: ignore[union-attr]
        assert registry.published("/srvw") is None
        assert registry.function("w") is not None and registry.function("x") is None

    @pytest.mark.parametrize("prefix", ["/healthz", "/static", "/v1", "/fn"])
    def test_reserved_prefixes(self, prefix: str) -> None:
        with pytest.raises(RegistryError, match="reserved"):
            Registry().add_function(http_manifest("x", prefix))

    def test_a_prefix_belongs_to_one_function(self) -> None:
        registry = Registry()
        registry.add_function(http_manifest("i", "/srvi"))
        registry.add_function(http_manifest("i", "/srvi"))
        with pytest.raises(RegistryError, match="already belongs to i"):
            registry.add_function(http_manifest("j", "/srvi"))

    def test_replicas_and_status(self, caplog: pytest.LogCaptureFixture) -> None:
        registry = Registry()
        registry.add_function(http_manifest("i", "/srvi"))
        registry.add_function(http_manifest("s", "/srvs"))
        first, second = replica(1), replica(2)
        registry.add_replica(first)
        registry.add_replica(second)
        with pytest.raises(RegistryError):
            registry.add_replica(replica(3, function="nothing"))
        with caplog.at_level(logging.INFO, logger="tombola.gateway"):
            registry.set_health(first, False, "refused")
            registry.set_health(first, False, "refused")
        assert [r.getMessage() for r in caplog.records].count("replica unhealthy") == 1
        assert registry.status() == {"i": {"replicas": 2, "healthy": 1}, "s": {"replicas": 0, "healthy": 0}}
        registry.remove_replica(first)
        registry.remove_replica(first)
        assert registry.replicas("i") == [second] and registry.replicas() == [second]


class TestBalancer:
    def test_least_in_flight_first(self) -> None:
        replicas = [replica(1, in_flight=3), replica(2, in_flight=1), replica(3, in_flight=2)]
        assert Balancer().choose(replicas) is replicas[1]

    def test_ties_go_round_robin(self) -> None:
        balancer = Balancer()
        replicas = [replica(1), replica(2), replica(3, in_flight=1)]
        chosen = [balancer.choose(replicas) for _ in range(4)]
        assert chosen == [replicas[0], replicas[1], replicas[0], replicas[1]]

    def test_skips_unavailable_and_excluded(self) -> None:
        sick, draining, well = replica(1, healthy=False), replica(2, draining=True), replica(3, in_flight=9)
        balancer = Balancer()
        assert balancer.choose([sick, draining, well]) is well
        assert balancer.choose([sick, draining, well], exclude=[well]) is None
        assert balancer.choose([]) is None


class TestToken:
    def test_created_private_then_reused(self, tmp_path: Path) -> None:
        token, path = ensure_token(tmp_path / "home")
        assert path == tmp_path / "home" / "token" and len(token) >= 40
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.chmod(0o644)
        assert ensure_token(tmp_path / "home") == (token, path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_an_empty_file_gets_a_token(self, tmp_path: Path) -> None:
        (tmp_path / "token").write_text("")
        token, path = ensure_token(tmp_path)
        assert token and path.read_text().strip() == token


class TestCatalog:
    def write(self, root: Path, folder: str, text: str) -> None:
        (root / folder).mkdir(parents=True)
        (root / folder / "manifest.toml").write_text(text)
        (root / folder / "handler.py").write_text("def routes(ctx):\n    return {}\n")

    def test_every_folder_with_a_manifest(self, tmp_path: Path) -> None:
        self.write(tmp_path, "b", 'name = "b"\n[trigger]\ntype = "http"\n')
        self.write(tmp_path, "a", 'name = "a"\n[trigger]\ntype = "http"\n')
        (tmp_path / "notes").mkdir()
        assert [function.name for function in load_functions(tmp_path)] == ["a", "b"]

    def test_problems_name_the_folder(self, tmp_path: Path) -> None:
        self.write(tmp_path, "a", 'name = "a"\n[trigger]\ntype = "http"\n')
        self.write(tmp_path, "copy", 'name = "a"\n[trigger]\ntype = "http"\n')
        with pytest.raises(ManifestError, match="copy: the function name a is already used"):
            load_functions(tmp_path)
        with pytest.raises(ManifestError, match="not a folder of functions"):
            load_functions(tmp_path / "missing")

    def test_a_bad_manifest(self, tmp_path: Path) -> None:
        self.write(tmp_path, "bad", 'name = "bad"\n[trigger]\ntype = "ftp"\n')
        with pytest.raises(ManifestError, match=r"bad: trigger\.type"):
            load_functions(tmp_path)


class RecordingTransport:
    """The transport side of a socket, as far as CoalescingTransport uses it: what was sent, and in how many sends."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.sends.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


class TestCoalescingTransport:
    def test_the_writes_of_one_turn_go_out_as_one_send_at_its_end(self) -> None:
        async def respond() -> tuple[list[bytes], list[bytes]]:
            inner = RecordingTransport()
            transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
            transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
            transport.write(b"body")
            during = list(inner.sends)
            await asyncio.sleep(0)
            return during, inner.sends

        during, after = asyncio.run(respond())
        assert during == [] and after == [b"HTTP/1.1 200 OK\r\n\r\nbody"]

    def test_close_sends_what_was_written_first_and_the_rest_is_the_transports(self) -> None:
        async def close() -> RecordingTransport:
            inner = RecordingTransport()
            transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
            transport.write(b"last words")
            transport.close()
            assert transport.get_extra_info("peername") == "info:peername"
            transport.write(b"too late")
            await asyncio.sleep(0)
            return inner

        inner = asyncio.run(close())
        assert inner.sends == [b"last words"] and inner.closing


class TestReplicaIdentity:
    def test_a_replica_answers_from_its_own_process_or_its_worker(self) -> None:
        with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as worker:
            try:
                assert _started_by(os.getpid(), worker.pid)  # a worker the process started
                assert _started_by(worker.pid, worker.pid)
                assert not _started_by(worker.pid, os.getpid())  # another process holding the port
                assert not _started_by(os.getpid(), None) and not _started_by(os.getpid(), "1")
            finally:
                worker.kill()
