"""``python -m runner serve FUNCTION_DIR --port N``: start one replica of a function.

An HTTP function runs under gunicorn's gevent worker; a queue function runs as
a Kombu consumer in a gevent-patched process that also serves its app over HTTP
(``/healthz`` and direct invocation of the message route).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.function import Function
from runner.manifest import ManifestError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runner", description="Run one replica of a tombola function.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve FUNCTION_DIR as one replica")
    serve.add_argument("function_dir", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--version", default="local")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        function = Function.load(args.function_dir)
    except ManifestError as error:
        print(f"runner: {error}", file=sys.stderr)
        return 2
    if function.manifest.is_http:
        from runner.http import HttpReplica

        HttpReplica(function, args.host, args.port, args.version).run()
        return 0
    from gevent import monkey

    monkey.patch_all()
    from runner.queue import serve_queue

    return serve_queue(function, args.host, args.port, args.version)


if __name__ == "__main__":
    sys.exit(main())
