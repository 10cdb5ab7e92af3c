"""Systemd units and cloud-config for a server of the pack: ``python -m gateway.units``.

A server of the pack has one of two roles:

- ``gateway``: ``tombola up`` as one unit: the public and private listeners,
  the control plane, and the replicas of its local functions
  (``TOMBOLA_LOCAL_FUNCTIONS``);
- ``replicas``: one unit per replica (``python -m runner serve``) on ports
  from 9100 up, and one unit that announces them to the gateway
  (``python -m gateway.remote announce``).

``tombola.target`` wants every unit, so ``systemctl enable --now
tombola.target`` starts the server's share of the pack. The units read the
settings and secrets from one environment file (root only), run as a dynamic
user with a private state directory, and stop gracefully (SIGTERM to the main
process, in-flight work finishes). ``cloud-config`` prints the cloud-init
document that installs the pack from git on a fresh server and writes and
starts these units: the same one that heat/host.yaml hands to OpenStack.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner import manifest
from runner.manifest import ManifestError

ROLES = ("gateway", "replicas")
BASE_PORT = 9100
MAX_REPLICAS = 16
STOP_GRACE = 10
TARGET = "tombola.target"
SAFE_ARGUMENT = re.compile(r"[\w@%+=:,./-]+")
HOST_PATTERN = re.compile(r"[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:.]{2,45}")
# The install steps of cloud-config: $1 git URL, $2 git ref, then the arguments of ``write``.
INSTALL_SCRIPT = """\
git clone --quiet --no-checkout "$1" /opt/tombola/app
git -C /opt/tombola/app fetch --quiet origin "$2"
git -C /opt/tombola/app checkout --quiet --detach FETCH_HEAD
python3 -m venv /opt/tombola/venv
/opt/tombola/venv/bin/pip install --quiet --requirement /opt/tombola/app/requirements.txt
/opt/tombola/venv/bin/pip install --quiet --no-deps --editable /opt/tombola/app
version="$2"
shift 2
/opt/tombola/venv/bin/python -m gateway.units write --version "$version" "$@"
systemctl daemon-reload
systemctl enable --now tombola.target
"""


class UnitsError(ValueError):
    """Arguments that cannot make a server's units, with a message that says why."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the pack lives on a server."""

    app: Path = Path("/opt/tombola/app")
    python: Path = Path("/opt/tombola/venv/bin/python")
    env_file: Path = Path("/etc/tombola/tombola.env")
    user: str = "tombola"

    @property
    def functions(self) -> Path:
        return self.app / "functions"

    def manifest(self, function: str) -> manifest.Manifest:
        """The manifest of one of the pack's functions."""
        try:
            return manifest.load(self.functions / function)
        except ManifestError as error:
            raise UnitsError(f"{function}: {error}") from None


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit file: its name and its text."""

    name: str
    text: str


@dataclasses.dataclass(frozen=True)
class Replica:
    """One replica a replicas server runs."""

    function: str
    number: int
    port: int

    @property
    def unit(self) -> str:
        return f"tombola-{self.function}-{self.number}.service"


def parse_replicas(spec: str) -> dict[str, int]:
    """``"w1=2,w2=1"`` → ``{"w1": 2, "w2": 1}``; functions with 0 replicas are left out."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        if not manifest.NAME_PATTERN.fullmatch(name) or not count.isdigit():
            raise UnitsError(f"replicas must read like w1=2,w2=1, not {item!r}")
        if name in counts:
            raise UnitsError(f"replicas names {name} twice")
        if int(count) > MAX_REPLICAS:
            raise UnitsError(f"at most {MAX_REPLICAS} replicas of a function on one server, not {count}")
        counts[name] = int(count)
    return {name: count for name, count in counts.items() if count}


def parse_functions(spec: str) -> list[str]:
    """``"i,s,b"`` → ``["i", "s", "b"]``; ``"none"`` → ``[]``."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if names == ["none"]:
        return []
    for name in names:
        if not manifest.NAME_PATTERN.fullmatch(name) or name == "none":
            raise UnitsError(f"{name!r} is not a function name")
    return names


def plan_replicas(counts: Mapping[str, int], base_port: int = BASE_PORT) -> list[Replica]:
    """Number the replicas and give them consecutive ports from ``base_port``."""
    replicas = []
    port = base_port
    for function, count in counts.items():
        for number in range(1, count + 1):
            replicas.append(Replica(function, number, port))
            port += 1
    if port - 1 > 65535:
        raise UnitsError("the replicas' ports run past 65535")
    return replicas


def quote(argument: str) -> str:
    """An argument as systemd reads it back: specifiers and variables escaped, quoted when needed."""
    escaped = argument.replace("%", "%%").replace("$", "$$")
    if SAFE_ARGUMENT.fullmatch(argument):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _service(
    layout: Layout,
    description: str,
    command: Sequence[str],
    environment: Mapping[str, str],
    stop_timeout: float,
    extra: Sequence[str] = (),
    after: Sequence[str] = (),
) -> str:
    """The text of one service unit of the pack."""
    lines = [
        "[Unit]",
        "Description=" + description.replace("%", "%%"),
        f"PartOf={TARGET}",
        "Wants=network-online.target",
        "After=" + " ".join(["network-online.target", *after]),
        "",
        "[Service]",
        "Type=exec",
        "DynamicUser=yes",
        f"User={layout.user}",
        "StateDirectory=tombola",
        f"WorkingDirectory={quote(str(layout.app))}",
        f"EnvironmentFile={quote(str(layout.env_file))}",
        *(f"Environment={quote(f'{name}={value}')}" for name, value in environment.items()),
        "ExecStart=" + " ".join(quote(argument) for argument in command),
        "KillMode=mixed",
        f"TimeoutStopSec={stop_timeout:g}",
        "Restart=on-failure",
        "RestartSec=2",
        "NoNewPrivileges=yes",
        "ProtectHome=yes",
        *extra,
        "",
    ]
    return "\n".join(lines)


def gateway_units(
    layout: Layout, host: str, local_functions: Sequence[str], port: int = 80, internal_port: int = 8081
) -> list[Unit]:
    """The gateway server's unit: ``tombola up``, public on every address, private on ``host`` only."""
    for function in local_functions:
        layout.manifest(function)
    timeouts = [layout.manifest(folder.name).limits.timeout for folder in _function_folders(layout)]
    environment = {
        "TOMBOLA_HOME": "/var/lib/tombola",
        "TOMBOLA_FUNCTIONS_DIR": str(layout.functions),
        "TOMBOLA_HOST": "0.0.0.0",
        "TOMBOLA_PORT": str(port),
        "TOMBOLA_INTERNAL_HOST": host,
        "TOMBOLA_INTERNAL_PORT": str(internal_port),
        "TOMBOLA_CONTROL_PUBLIC": "false",
        "TOMBOLA_LOCAL_FUNCTIONS": ",".join(local_functions) or "none",
    }
    text = _service(
        layout,
        f"tombola gateway (public :{port}, private {host}:{internal_port})",
        [str(layout.python), "-m", "gateway", "up"],
        environment,
        max(timeouts, default=10.0) + 2 * STOP_GRACE,
        extra=["AmbientCapabilities=CAP_NET_BIND_SERVICE"],
    )
    return [Unit("tombola-gateway.service", text)]


def replica_units(
    layout: Layout, host: str, counts: Mapping[str, int], gateway_url: str, version: str, base_port: int = BASE_PORT
) -> list[Unit]:
    """One unit per replica, and the unit that announces them to the gateway at ``gateway_url``."""
    if not counts:
        raise UnitsError("a replicas server needs at least one replica (--replicas)")
    if not re.fullmatch(r"https?://[^\s/]+", gateway_url):
        raise UnitsError(
            f"--gateway-url must be the gateway's private listener, like http://10.0.0.5:8081, not {gateway_url!r}"
        )
    replicas = plan_replicas(counts, base_port)
    units = []
    for replica in replicas:
        limits = layout.manifest(replica.function).limits
        command = [
            str(layout.python),
            "-m",
            "runner",
            "serve",
            str(layout.functions / replica.function),
            "--host",
            host,
            "--port",
            str(replica.port),
            "--version",
            version,
        ]
        description = f"tombola {replica.function} replica {replica.number} ({host}:{replica.port})"
        text = _service(layout, description, command, {"TOMBOLA_HOME": "/var/lib/tombola"}, limits.timeout + STOP_GRACE)
        units.append(Unit(replica.unit, text))
    command = [str(layout.python), "-m", "gateway.remote", "announce", "--gateway", gateway_url, "--version", version]
    command += [f"{replica.function}=http://{_url_host(host)}:{replica.port}" for replica in replicas]
    text = _service(
        layout,
        f"tombola: announces this server's replicas to {gateway_url}",
        command,
        {"TOMBOLA_HOME": "/var/lib/tombola"},
        STOP_GRACE,
        after=[replica.unit for replica in replicas],
    )
    units.append(Unit("tombola-announce.service", text))
    return units


def target_unit(units: Sequence[Unit]) -> Unit:
    """``tombola.target``: wants every unit of the server; enabled, it starts them at boot."""
    lines = [
        "[Unit]",
        "Description=tombola: this server's share of the pack",
        "Wants=" + " ".join(unit.name for unit in units),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return Unit(TARGET, "\n".join(lines))


def server_units(
    layout: Layout,
    role: str,
    host: str,
    version: str,
    local_functions: str = "",
    replicas: str = "",
    gateway_url: str = "",
    port: int = 80,
    internal_port: int = 8081,
    base_port: int = BASE_PORT,
) -> list[Unit]:
    """Every unit of one server, target included; arguments of the other role must be empty."""
    if not HOST_PATTERN.fullmatch(host):
        raise UnitsError(f"--host must be this server's address, not {host!r}")
    if role == "gateway":
        if replicas or gateway_url:
            raise UnitsError("--replicas and --gateway-url are for a replicas server")
        units = gateway_units(layout, host, parse_functions(local_functions or "none"), port, internal_port)
    elif role == "replicas":
        if local_functions:
            raise UnitsError("--local-functions is for the gateway server")
        units = replica_units(layout, host, parse_replicas(replicas), gateway_url, version, base_port)
    else:
        raise UnitsError(f"the role must be one of {', '.join(ROLES)}, not {role!r}")
    return [*units, target_unit(units)]


def write_units(units: Sequence[Unit], output: Path) -> list[Path]:
    """Write the units into ``output`` (e.g. /etc/systemd/system); return their paths."""
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for unit in units:
        path = output / unit.name
        path.write_text(unit.text, encoding="utf-8")
        paths.append(path)
    return paths


def cloud_config(git_url: str, git_ref: str, environment: str, arguments: Sequence[str]) -> str:
    """The cloud-init document that installs the pack at ``git_ref`` and starts the units of ``write ARGUMENTS``."""
    document = {
        "package_update": True,
        "packages": ["git", "python3-venv"],
        "write_files": [
            {"path": "/etc/tombola/tombola.env", "owner": "root:root", "permissions": "0600", "content": environment},
        ],
        "runcmd": [["sh", "-ec", INSTALL_SCRIPT, "tombola-install", git_url, git_ref, *arguments]],
    }
    # JSON is YAML too, and needs no YAML library on the server.
    return "#cloud-config\n" + json.dumps(document, indent=2) + "\n"


def _function_folders(layout: Layout) -> list[Path]:
    if not layout.functions.is_dir():
        raise UnitsError(f"{layout.functions} is not the pack's functions folder (see --app)")
    return sorted(folder for folder in layout.functions.iterdir() if (folder / "manifest.toml").is_file())


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=ROLES, required=True, help="gateway, or replicas of functions")
    parser.add_argument("--host", required=True, help="this server's private address")
    parser.add_argument("--version", default="local", help="version of the replicas (the git ref)")
    parser.add_argument("--local-functions", default="", help="gateway: functions it runs itself (i,s,b,p or none)")
    parser.add_argument("--replicas", default="", help="replicas: replicas per function, like w1=2,w2=1")
    parser.add_argument("--gateway-url", default="", help="replicas: the gateway's private listener")
    parser.add_argument("--port", type=int, default=80, help="gateway: public port")
    parser.add_argument("--internal-port", type=int, default=8081, help="gateway: private port")
    parser.add_argument("--base-port", type=int, default=BASE_PORT, help="replicas: port of the first replica")
    parser.add_argument("--app", type=Path, default=Layout.app, help="the pack's checkout")
    parser.add_argument("--python", type=Path, default=Layout.python, help="python of the pack's virtualenv")
    parser.add_argument("--env-file", type=Path, default=Layout.env_file, help="settings and secrets (root only)")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.units", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write this server's systemd units")
    _server_arguments(write)
    write.add_argument("--output", type=Path, default=Path("/etc/systemd/system"), help="folder of the units")
    config = commands.add_parser("cloud-config", help="print the cloud-config that installs the pack and its units")
    config.add_argument("--git-url", required=True)
    config.add_argument("--git-ref", required=True)
    config.add_argument("--environment", type=Path, required=True, help="file of TOMBOLA_* settings to install")
    config.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then the arguments of write on the server")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "cloud-config":
            arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
            parse_args(["write", *arguments])  # the server would refuse them: refuse them now
            environment = args.environment.read_text(encoding="utf-8")
            sys.stdout.write(cloud_config(args.git_url, args.git_ref, environment, arguments))
            return 0
        layout = Layout(args.app, args.python, args.env_file)
        units = server_units(
            layout,
            args.role,
            args.host,
            args.version,
            args.local_functions,
            args.replicas,
            args.gateway_url,
            args.port,
            args.internal_port,
            args.base_port,
        )
        for path in write_units(units, args.output):
            print(path)
    except (UnitsError, OSError) as error:
        print(f"gateway.units: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
