"""``tombola``: the command line of the pack.

Each subcommand is a function ``command(args) -> exit status``, registered in
``parser()`` with the arguments it takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable

import sqlalchemy.exc
import uvloop

from gateway import control_cli, executions, versions
from gateway.catalog import load_functions
from gateway.client import ClientError
from gateway.config import GatewayConfig
from gateway.control_token import ensure_token
from gateway.registry import RegistryError
from gateway.server import serve
from runner import logs
from runner.database import create_engine, migrate
from runner.errors import BackendUnavailable
from runner.manifest import ManifestError
from runner.objectstore import open_store
from runner.settings import Settings, SettingsError


def up(args: argparse.Namespace) -> int:
    """Prepare the backends, start every function and serve until Ctrl-C."""
    settings = Settings.from_environ()
    config = GatewayConfig.from_environ()
    logs.configure(component="gateway")
    functions = load_functions(config.functions_dir)
    where = "TOMBOLA_TOKEN"
    if not config.token:
        token, path = ensure_token(settings.home)
        config = dataclasses.replace(config, token=token)
        where = str(path)
    prepare_backends(settings)

    def ready() -> None:
        print(f"tombola is up: {config.public_url}  (control-plane token in {where})", flush=True)

    uvloop.run(serve(config, settings, functions, ready))
    return 0


def prepare_backends(settings: Settings) -> None:
    """Create the database schema (and seed), the control plane's tables and the object-store container if missing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url, settings.database_pool_size)
    try:
        migrate(engine, seed=settings.seed_customers)
        versions.metadata.create_all(engine, checkfirst=True)
        executions.metadata.create_all(engine, checkfirst=True)
    except sqlalchemy.exc.DBAPIError as error:
        raise BackendUnavailable("database", str(error.orig)) from None
    finally:
        engine.dispose()
    open_store(settings).ensure_container()


def parser() -> argparse.ArgumentParser:
    """The argument parser of the command and its subcommands."""
    root = argparse.ArgumentParser(prog="tombola", description="Run and operate the tombola function pack.")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    summary = "run the gateway and every function locally until Ctrl-C"
    commands.add_parser("up", help=summary, description=summary).set_defaults(run=up)
    control_cli.add_subcommands(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tombola`` command."""
    args = parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except (SettingsError, ManifestError, RegistryError) as error:
        print(f"tombola: {error}", file=sys.stderr)
        return 2
    except (BackendUnavailable, OSError, ClientError) as error:
        print(f"tombola: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
