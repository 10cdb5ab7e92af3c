"""The systemd units and the cloud-config a server of the pack gets (gateway.units).

The units are parsed strictly, checked by ``systemd-analyze verify`` where
systemd is installed, and run: their ExecStart lines, with the environment
the units give them, start a gateway and a replica server on loopback, and
the replica's announcement makes it serve through the gateway.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests
import yaml

from gateway import units
from gateway.units import Layout, UnitsError
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {
    "Unit": {"Description", "PartOf", "Wants", "After"},
    "Service": {
        "Type",
        "DynamicUser",
        "User",
        "StateDirectory",
        "WorkingDirectory",
        "EnvironmentFile",
        "Environment",
        "ExecStart",
        "KillMode",
        "TimeoutStopSec",
        "Restart",
        "RestartSec",
        "NoNewPrivileges",
        "ProtectHome",
        "AmbientCapabilities",
    },
    "Install": {"WantedBy"},
}
REPEATABLE = {"Environment"}
STATE_DIRECTORY = "/var/lib/tombola"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}}; fails on anything a unit of the pack should not hold."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        assert line == line.strip(), f"line {number} has stray blanks: {line!r}"
        if line.startswith("["):
            current = line.strip("[]")
            assert line == f"[{current}]" and current in SECTIONS and current not in sections, f"line {number}: {line}"
            sections[current] = {}
            continue
        key, equals, value = line.partition("=")
        assert current is not None and equals and value, f"line {number} is not Key=Value: {line!r}"
        assert key in SECTIONS[current], f"line {number}: {key} has no place in [{current}]"
        values = sections[current].setdefault(key, [])
        assert key in REPEATABLE or not values, f"line {number}: {key} is set twice"
        values.append(value)
    assert text.endswith("\n") and "Unit" in sections, "a unit ends with a newline and has a [Unit] section"
    return sections


def unescape(word: str) -> str:
    """Undo the escapes of specifiers and variables, as systemd does."""
    return word.replace("%%", "%").replace("$$", "$")


def exec_start(unit: dict[str, dict[str, list[str]]]) -> list[str]:
    """The command of a service, as systemd splits it."""
    return [unescape(word) for word in shlex.split(unit["Service"]["ExecStart"][0])]


def service_environment(unit: dict[str, dict[str, list[str]]], env_file: Path, state: Path) -> dict[str, str]:
    """The environment systemd gives a service: Environment=, then the EnvironmentFile over it."""
    environment = {}
    for line in unit["Service"].get("Environment", []):
        name, _, value = unescape(shlex.split(line)[0]).partition("=")
        environment[name] = value.replace(STATE_DIRECTORY, str(state))
    for line in env_file.read_text().splitlines():
        name, _, value = line.partition("=")
        environment[name] = value
    return environment


def layout(env_file: Path) -> Layout:
    return Layout(app=ROOT, python=Path(sys.executable), env_file=env_file)


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "tombola.env"
    path.write_text(
        f"TOMBOLA_DATABASE_URL=sqlite:///{tmp_path / 'tombola.db'}\n"
        "TOMBOLA_TOKEN=control-token-for-the-test\n"
        "TOMBOLA_REPLICA_TOKEN=replica-token-for-the-test\n"
        "TOMBOLA_W_TEMPO=0\n"
    )
    return path


def test_a_replicas_server_has_a_unit_per_replica_an_announcer_and_a_target(env_file: Path) -> None:
    made = units.server_units(
        layout(env_file),
        "replicas",
        "10.42.0.7",
        "v1.2.0",
        replicas="w1=2,w2=0,i=1",
        gateway_url="http://10.42.0.5:8081",
    )
    assert [unit.name for unit in made] == [
        "tombola-w1-1.service",
        "tombola-w1-2.service",
        "tombola-i-1.service",
        "tombola-announce.service",
        "tombola.target",
    ]
    parsed = {unit.name: parse_unit(unit.text) for unit in made}
    assert exec_start(parsed["tombola-w1-2.service"]) == [
        sys.executable,
        "-m",
        "runner",
        "serve",
        str(ROOT / "functions" / "w1"),
        "--host",
        "10.42.0.7",
        "--port",
        "9101",
        "--version",
        "v1.2.0",
    ]
    assert parsed["tombola-w1-1.service"]["Service"]["TimeoutStopSec"] == ["40"]  # w1's timeout (30 s) + 10
    assert exec_start(parsed["tombola-announce.service"])[3:] == [
        "announce",
        "--gateway",
        "http://10.42.0.5:8081",
        "--version",
        "v1.2.0",
        "w1=http://10.42.0.7:9100",
        "w1=http://10.42.0.7:9101",
        "i=http://10.42.0.7:9102",
    ]
    assert parsed["tombola.target"]["Unit"]["Wants"] == [" ".join(unit.name for unit in made[:-1])]
    assert parsed["tombola.target"]["Install"]["WantedBy"] == ["multi-user.target"]
    for name, unit in parsed.items():
        if name.endswith(".service"):
            service = unit["Service"]
            assert service["DynamicUser"] == ["yes"] and service["KillMode"] == ["mixed"], name
            assert service["EnvironmentFile"] == [str(env_file)] and unit["Unit"]["PartOf"] == ["tombola.target"]


def test_the_gateway_keeps_its_control_plane_off_the_public_listener(env_file: Path) -> None:
    made = units.server_units(layout(env_file), "gateway", "10.42.0.5", "v1", local_functions="i,s,b,p")
    assert [unit.name for unit in made] == ["tombola-gateway.service", "tombola.target"]
    gateway = parse_unit(made[0].text)
    assert exec_start(gateway) == [sys.executable, "-m", "gateway", "up"]
    environment = service_environment(gateway, env_file, Path("/state"))
    assert environment["TOMBOLA_CONTROL_PUBLIC"] == "false"
    assert (environment["TOMBOLA_HOST"], environment["TOMBOLA_PORT"]) == ("0.0.0.0", "80")
    assert (environment["TOMBOLA_INTERNAL_HOST"], environment["TOMBOLA_INTERNAL_PORT"]) == ("10.42.0.5", "8081")
    assert environment["TOMBOLA_LOCAL_FUNCTIONS"] == "i,s,b,p"
    assert environment["TOMBOLA_HOME"] == "/state"
    assert gateway["Service"]["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]  # port 80 without root


def test_arguments_are_quoted_and_escaped_as_systemd_reads_them(tmp_path: Path) -> None:
    app = tmp_path / "the pack's 100% app"
    shutil.copytree(ROOT / "functions" / "i", app / "functions" / "i")
    odd = Layout(app=app, python=Path(sys.executable), env_file=tmp_path / "env $HOME")
    made = units.server_units(odd, "replicas", "10.0.0.7", 'v"1"', replicas="i=1", gateway_url="http://10.0.0.5:8081")
    unit = parse_unit(made[0].text)
    assert exec_start(unit)[4] == str(app / "functions" / "i")
    assert exec_start(unit)[-1] == 'v"1"'
    assert unescape(shlex.split(unit["Service"]["EnvironmentFile"][0])[0]) == str(tmp_path / "env $HOME")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"role": "gateway", "replicas": "i=1"}, "are for a replicas server"),
        ({"role": "replicas", "local_functions": "i", "replicas": "i=1"}, "is for the gateway server"),
        ({"role": "replicas", "replicas": "i=one"}, "must read like w1=2"),
        ({"role": "replicas", "replicas": "i=1,i=2"}, "names i twice"),
        ({"role": "replicas", "replicas": "i=17"}, "at most 16"),
        ({"role": "replicas", "replicas": "i=0"}, "at least one replica"),
        ({"role": "replicas", "replicas": "zz=1"}, "zz: zz has no manifest.toml"),
        ({"role": "replicas", "replicas": "i=1", "gateway_url": "10.0.0.5:8081"}, "--gateway-url must be"),
        ({"role": "gateway", "local_functions": "i,S"}, "'S' is not a function name"),
        ({"role": "proxy"}, "the role must be one of gateway, replicas"),
        ({"role": "gateway", "host": "10.0.0.7 --evil"}, "--host must be this server's address"),
    ],
)
def test_arguments_that_make_no_server_are_refused(env_file: Path, arguments: dict[str, str], message: str) -> None:
    defaults = {"host": "10.0.0.7", "version": "v1"}
    if arguments["role"] == "replicas":
        defaults["gateway_url"] = "http://10.0.0.5:8081"
    with pytest.raises(UnitsError, match=message):
        units.server_units(layout(env_file), **{**defaults, **arguments})


def test_the_command_writes_the_units_and_refuses_bad_arguments(tmp_path: Path, env_file: Path) -> None:
    base = [
        sys.executable,
        "-m",
        "gateway.units",
        "write",
        "--app",
        str(ROOT),
        "--python",
        sys.executable,
        "--env-file",
        str(env_file),
        "--output",
        str(tmp_path / "units"),
        "--host",
        "127.0.0.1",
    ]
    done = subprocess.run([*base, "--role", "gateway", "--local-functions", "none"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in (tmp_path / "units").iterdir()) == ["tombola-gateway.service", "tombola.target"]
    refused = subprocess.run([*base, "--role", "replicas", "--replicas", "i=x"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.startswith("gateway.units: replicas must read like") and "Traceback" not in refused.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_every_unit(tmp_path: Path, env_file: Path) -> None:
    for role, arguments in (
        ("gateway", {"local_functions": "i,s"}),
        ("replicas", {"replicas": "i=1,s=1,b=1,p=1,w=2,w1=1,w2=1", "gateway_url": "http://10.0.0.5:8081"}),
    ):
        folder = tmp_path / role
        paths = units.write_units(units.server_units(layout(env_file), role, "10.0.0.7", "v1", **arguments), folder)
        checked = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *map(str, paths)], capture_output=True, text=True
        )
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), role


def test_the_cloud_config_installs_the_pack_and_starts_its_units(tmp_path: Path) -> None:
    arguments = [
        "--role",
        "replicas",
        "--host",
        "10.0.0.7",
        "--replicas",
        "w=2",
        "--gateway-url",
        "http://10.0.0.5:8081",
    ]
    text = units.cloud_config("https://git.example.org/tombola.git", "v1.2.0", "TOMBOLA_W_TEMPO=5\n", arguments)
    header, _, body = text.partition("\n")
    assert header == "#cloud-config"
    document = yaml.safe_load(body)
    assert set(document) == {"package_update", "packages", "write_files", "runcmd"}
    assert {"git", "python3-venv"} <= set(document["packages"])
    [settings] = document["write_files"]
    assert settings == {
        "path": "/etc/tombola/tombola.env",
        "owner": "root:root",
        "permissions": "0600",
        "content": "TOMBOLA_W_TEMPO=5\n",
    }
    [[shell, option, script, name, url, ref, *rest]] = document["runcmd"]
    assert (shell, option, name, url, ref, rest) == (
        "sh",
        "-ec",
        "tombola-install",
        "https://git.example.org/tombola.git",
        "v1.2.0",
        arguments,
    )
    assert subprocess.run(["sh", "-n", "-c", script], capture_output=True).returncode == 0
    assert "python -m gateway.units write" in script and "systemctl enable --now tombola.target" in script
    (tmp_path / "env").write_text("TOMBOLA_W_TEMPO=5\n")
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.units",
            "cloud-config",
            "--git-url",
            "https://git.example.org/tombola.git",
            "--git-ref",
            "v1.2.0",
            "--environment",
            str(tmp_path / "env"),
            "--",
            *arguments,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout == text


@contextmanager
def started(command: list[str], environment: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a unit's command in its own process group, as systemd would; stop it with SIGTERM."""
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(environment), stdout=output, stderr=output, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(check: object, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (requests.ConnectionError, requests.Timeout, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s; logs: " + "\n".join(path.read_text()[-2000:] for path in logs))


def healthz(url: str) -> dict[str, object]:
    answer: dict[str, object] = requests.get(f"{url}/healthz", timeout=2).json()
    return answer


@pytest.mark.slow
def test_the_units_start_the_pack_on_loopback(tmp_path: Path, env_file: Path) -> None:
    """A gateway server running every function but I, and a replicas server running I, from their units' commands."""
    port, internal_port, replica_port = free_port(), free_port(), free_port()
    gateway_units = units.server_units(
        layout(env_file),
        "gateway",
        "127.0.0.1",
        "v1",
        local_functions="s,b,p,w,w1,w2",
        port=port,
        internal_port=internal_port,
    )
    replica_units = units.server_units(
        layout(env_file),
        "replicas",
        "127.0.0.1",
        "v1",
        replicas="i=1",
        gateway_url=f"http://127.0.0.1:{internal_port}",
        base_port=replica_port,
    )
    parsed = {unit.name: parse_unit(unit.text) for unit in [*gateway_units, *replica_units]}
    state = tmp_path / "state"
    logs = [tmp_path / "gateway.log", tmp_path / "i.log", tmp_path / "announce.log"]
    public, internal = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{internal_port}"
    with ExitStack() as running:
        for name, log in zip(("tombola-gateway.service", "tombola-i-1.service"), logs, strict=False):
            unit = parsed[name]
            running.enter_context(started(exec_start(unit), service_environment(unit, env_file, state), log))
        wait_for(lambda: requests.get(f"{public}/srvs/user/42", timeout=5).ok, 60, "the gateway serves S", logs)
        wait_for(lambda: requests.get(f"http://127.0.0.1:{replica_port}/healthz").ok, 30, "I is up", logs)
        assert requests.get(f"{public}/srvi/user/42", timeout=10).status_code == 503  # not announced yet

        unit = parsed["tombola-announce.service"]
        announcer = running.enter_context(
            started(exec_start(unit), service_environment(unit, env_file, state), logs[2])
        )
        wait_for(lambda: healthz(public).get("status") == "ok", 20, "the announced I is healthy", logs)
        answer = requests.get(f"{public}/srvi/user/42", timeout=5)
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == 42
        assert requests.get(f"{public}/v1/functions", timeout=5).status_code == 404  # no control plane in public
        assert requests.get(f"{internal}/healthz", timeout=5).ok

        announcer.send_signal(signal.SIGTERM)
        assert announcer.wait(timeout=10) == 0
        assert requests.get(f"{public}/srvi/user/42", timeout=10).status_code == 503  # withdrawn at once
