"""The subcommands of ``tombola`` that operate a running pack through its control plane.

``ls``, ``deploy``, ``rollback``, ``scale``, ``invoke``, ``logs``,
``executions``, ``execution``, ``dead-letters``, ``replay`` and ``purge``: each one a function ``command(args) -> exit
status`` that calls ``/v1`` with gateway.client. Progress goes to stderr as it
happens, results and the final summary to stdout; any failure raises
ClientError, which ``tombola`` prints as one line before exiting with 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway import packages
from gateway.client import ZIP, Client, ClientError

POLL_INTERVAL = 0.5
CELL = 60


def _segment(value: str) -> str:
    """A user-given name as one path segment."""
    return quote(value, safe="")


def progress(message: str) -> None:
    """One line of progress, on stderr."""
    print(f"- {message}", file=sys.stderr, flush=True)


def _table(rows: Sequence[Sequence[object]]) -> str:
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)


def _split(target: dict[str, Any] | None) -> str:
    """``3``, ``3 + 10% on 4`` or ``-`` for an alias (or a function's live)."""
    if not target:
        return "-"
    canary = target.get("canary")
    if canary:
        return f"{target['version']} + {canary['weight']}% on {canary['version']}"
    return str(target["version"])


def _healthy(client: Client, function: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The replicas of each function (of ``function`` only if given)."""
    replicas: dict[str, list[dict[str, Any]]] = {}
    for replica in client.get("/v1/replicas", function=function)["replicas"]:
        replicas.setdefault(replica["function"], []).append(replica)
    return replicas


def _count(replicas: list[dict[str, Any]]) -> str:
    healthy = sum(1 for replica in replicas if replica.get("healthy") and not replica.get("draining"))
    return f"{healthy} healthy" if healthy == len(replicas) else f"{healthy} healthy of {len(replicas)}"


def ls(args: argparse.Namespace) -> int:
    """Every function: live version (and canary), replicas, scaling bounds, versions."""
    client = Client.from_environ()
    functions = client.get("/v1/functions")["functions"]
    if not functions:
        print("no functions")
        return 0
    replicas = _healthy(client)
    rows: list[Sequence[object]] = [("FUNCTION", "TRIGGER", "PUBLIC", "LIVE", "HEALTHY", "MIN", "MAX", "VERSIONS")]
    for function in functions:
        mine = replicas.get(function["name"], [])
        up = sum(1 for replica in mine if replica.get("healthy") and not replica.get("draining"))
        scaling = function.get("scaling") or {}
        rows.append((
            function["name"],
            function.get("trigger") or "-",
            function.get("public_prefix") or "-",
            _split(function.get("live")),
            f"{up}/{len(mine)}",
            scaling.get("min", "-"),
            scaling.get("max", "-"),
            function["versions"],
        ))
    print(_table(rows))
    return 0


def _current(client: Client, function: str, alias: str) -> dict[str, Any] | None:
    """Where ``alias`` points now, or None if it does not exist yet."""
    try:
        current: dict[str, Any] = client.get(f"/v1/functions/{_segment(function)}/aliases/{_segment(alias)}")
    except ClientError as error:
        if error.status == 404:
            return None
        raise
    return current


def _rolling(client: Client, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """Call a deploy (alias update, rollback), printing the control plane's progress as it comes; answer the alias."""
    for line in client.stream(method, path, body):
        if "progress" in line:
            progress(line["progress"])
        elif "error" in line:
            error = line["error"]
            raise ClientError(f"{error['description'].rstrip('.')} (HTTP {error['status']})", status=error["status"])
        elif "result" in line:
            result: dict[str, Any] = line["result"]
            return result
    raise ClientError("the gateway ended the deploy without a result: see tombola logs and the gateway's log")


def deploy(args: argparse.Namespace) -> int:
    """Package a function folder, upload it as a version, point the alias at it (or split traffic)."""
    client = Client.from_environ()
    folder = Path(args.dir) if args.dir else Path("functions") / args.function
    progress(f"packaging {folder}")
    try:
        package = packages.inspect(packages.build(folder), args.function)
    except packages.PackageError as error:
        hint = "" if args.dir else " (--dir names the function's folder)"
        raise ClientError(f"cannot package {folder}: {error}{hint}") from None
    digest = hashlib.sha256(package.data).hexdigest()
    progress(f"uploading {package.size / 1024:.1f} KiB (sha256 {digest[:12]})")
    version = client.request(
        "POST",
        f"/v1/functions/{_segment(args.function)}/versions",
        data=package.data,
        content_type=ZIP,
        params={"description": args.description},
    )
    number = version["version"]
    progress(f"version {number} stored" if version.get("created", True) else f"same package as version {number}")
    current = _current(client, args.function, args.alias)
    if args.weight is not None:
        if current is None:
            raise ClientError(f"{args.function} has no {args.alias} version to split traffic with: deploy without --weight first")
        if current["version"] == number:
            raise ClientError(f"version {number} already serves {args.alias}: nothing to split")
        body: dict[str, Any] = {"version": current["version"], "canary": {"version": number, "weight": args.weight}}
        progress(f"{args.alias}: sending {args.weight}% of requests to version {number}, the rest to {current['version']}")
    else:
        body = {"version": number}
        progress(f"{args.alias}: rolling out version {number}")
    result = _rolling(client, "PUT", f"/v1/functions/{_segment(args.function)}/aliases/{_segment(args.alias)}", body)
    replicas = result.get("replicas") or []
    count = f"; replicas: {_count(replicas)}" if replicas else ""
    if current and _split(current) == _split(result):
        print(f"{args.function}: {args.alias} already on version {_split(result)}{count}")
    else:
        before = f" (was {_split(current)})" if current else ""
        print(f"{args.function}: {args.alias} -> version {_split(result)}{before}{count}")
    return 0


def rollback(args: argparse.Namespace) -> int:
    """Point live back at the version it served before."""
    client = Client.from_environ()
    current = _current(client, args.function, "live")
    progress(f"rolling {args.function} back from version {_split(current)}")
    result = _rolling(client, "POST", f"/v1/functions/{_segment(args.function)}/rollback", None)
    replicas = result.get("replicas") or []
    count = f"; replicas: {_count(replicas)}" if replicas else ""
    print(f"{args.function}: live -> version {_split(result)} (was {_split(current)}){count}")
    return 0


def scale(args: argparse.Namespace) -> int:
    """Set how many replicas run (and the autoscaler's bounds); wait until they are healthy."""
    if args.replicas is None and args.min is None and args.max is None:
        raise ClientError("give a number of replicas, --min or --max")
    client = Client.from_environ()
    if args.replicas is not None:
        progress(f"scaling {args.function} to {args.replicas} replica(s)")
    body = {"replicas": args.replicas, "min": args.min, "max": args.max}
    scaling = client.request("PUT", f"/v1/functions/{_segment(args.function)}/scaling", json_body=body)
    replicas = _healthy(client, args.function).get(args.function, [])
    print(
        f"{args.function}: {scaling['replicas']} replica(s), {_count(replicas)} "
        f"(autoscaling between {scaling['min']} and {scaling['max']})"
    )
    return 0


def _show_result(execution: dict[str, Any]) -> int:
    """Print an execution's answer (stdout) and summary (stderr); 1 if it failed."""
    result = execution.get("result") or {}
    body = result.get("body")
    if body is not None:
        print(body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False))
    duration = execution.get("duration")
    took = f" in {duration * 1000:.0f} ms" if isinstance(duration, (int, float)) else ""
    version = f" on version {execution['version']}" if execution.get("version") is not None else ""
    summary = f"execution {execution['id']} {execution['status']}: HTTP {result.get('status')}{took}{version}"
    if execution["status"] == "failed":
        raise ClientError(summary)
    progress(summary)
    return 0


def invoke(args: argparse.Namespace) -> int:
    """Run one request on a function through the control plane, now or in the background."""
    body = None
    if args.data is not None:
        try:
            body = json.loads(args.data)
        except ValueError as error:
            raise ClientError(f"--data must be JSON: {error}") from None
    request: dict[str, Any] = {"body": body, "async": args.background}
    if args.method:
        request["method"] = args.method
    if args.path:
        request["path"] = args.path
    client = Client.from_environ()
    progress(f"invoking {args.function}{' in the background' if args.background else ''}")
    execution = client.request("POST", f"/v1/functions/{_segment(args.function)}/executions", json_body=request)
    if args.background:
        print(execution["id"])
        progress(f"execution {execution['id']} running: tombola execution {execution['id']} --wait shows its result")
        return 0
    return _show_result(execution)


def execution(args: argparse.Namespace) -> int:
    """Show one execution (``--wait``: once it has finished)."""
    client = Client.from_environ()
    record = client.get(f"/v1/executions/{_segment(args.id)}")
    if args.wait and record["status"] == "running":
        progress(f"waiting for execution {args.id}")
        while record["status"] == "running":
            time.sleep(POLL_INTERVAL)
            record = client.get(f"/v1/executions/{_segment(args.id)}")
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    for line in record.get("logs", []):
        progress(f"[{line['replica']}] {line['line']}")
    if record["status"] == "running":
        print(f"execution {args.id} is still running (started {record['created_at']})")
        return 0
    return _show_result(record)


def executions(args: argparse.Namespace) -> int:
    """The latest executions, newest first."""
    client = Client.from_environ()
    records = client.get("/v1/executions", function=args.function, limit=args.limit)["executions"]
    if not records:
        print("no executions")
        return 0
    rows: list[Sequence[object]] = [("ID", "FUNCTION", "VERSION", "STATUS", "HTTP", "MS", "REQUEST", "CREATED")]
    for record in records:
        duration = record.get("duration")
        rows.append((
            record["id"],
            record["function"],
            record.get("version") or "-",
            record["status"],
            record.get("result_status") or "-",
            f"{duration * 1000:.0f}" if isinstance(duration, (int, float)) else "-",
            f"{record['request']['method']} {record['request']['path']}",
            record["created_at"],
        ))
    print(_table(rows))
    return 0


def logs(args: argparse.Namespace) -> int:
    """The last lines logged by a function's replicas, oldest first."""
    client = Client.from_environ()
    lines = client.get(f"/v1/functions/{_segment(args.function)}/logs", lines=args.lines)["lines"]
    for line in lines:
        print(f"[{line['replica']}] {line['line']}")
    if not lines:
        progress(f"{args.function} has logged nothing yet")
    return 0


def _cell(text: str) -> str:
    """``text`` on one line, at most CELL characters."""
    line = " ".join(text.split())
    return line if len(line) <= CELL else line[: CELL - 1] + "…"


def dead_letters(args: argparse.Namespace) -> int:
    """The messages a queue function gave up on, oldest first (none is removed)."""
    client = Client.from_environ()
    listing = client.get(f"/v1/functions/{_segment(args.function)}/dead-letters", limit=args.limit)
    letters = listing["dead_letters"]
    if not letters:
        print(f"no dead letters in {listing['queue']}")
        return 0
    rows: list[Sequence[object]] = [("ID", "ATTEMPTS", "REPLAYS", "FIRST_FAILED", "ERROR", "MESSAGE")]
    for letter in letters:
        rows.append((
            letter["id"],
            letter["attempts"],
            letter["replays"],
            letter["first_failed_at"] or "-",
            _cell(letter["error"]) or "-",
            _cell(letter["summary"]),
        ))
    print(_table(rows))
    shown = f"{len(letters)} of {listing['count']} shown (--limit shows more)" if listing["count"] > len(letters) else "all shown"
    progress(f"{listing['count']} dead letter(s) in {listing['queue']}: {shown}")
    return 0


def _take(args: argparse.Namespace, action: str, done: str) -> int:
    """Replay or purge the dead letters named by ``args`` (ids, or --all); 1 if an id was not there."""
    if bool(args.ids) == args.all:
        raise ClientError("give the ids of the dead letters (tombola dead-letters lists them), or --all")
    client = Client.from_environ()
    what = "every dead letter" if args.all else f"{len(args.ids)} dead letter(s)"
    progress(f"asking the gateway to {action} {what} of {args.function}")
    body: dict[str, Any] = {"all": True} if args.all else {"ids": args.ids}
    outcome = client.request("POST", f"/v1/functions/{_segment(args.function)}/dead-letters/{action}", json_body=body)
    print(f"{args.function}: {outcome[done]} dead letter(s) {done}")
    if outcome["missing"]:
        raise ClientError(f"not in {outcome['queue']}: {', '.join(outcome['missing'])}")
    return 0


def replay(args: argparse.Namespace) -> int:
    """Send dead letters back to their function's queue, their attempts reset."""
    return _take(args, "replay", "replayed")


def purge(args: argparse.Namespace) -> int:
    """Delete dead letters."""
    return _take(args, "purge", "purged")


def _positive(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}")
        return value

    return parse


def add_subcommands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the control-plane subcommands on ``tombola``'s parser."""

    def command(name: str, run: Callable[[argparse.Namespace], int], summary: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=summary, description=summary)
        parser.set_defaults(run=run)
        return parser

    command("ls", ls, "list the functions: live version, canary, replicas, scaling")

    parser = command("deploy", deploy, "package a function folder, upload it as a new version and roll it out")
    parser.add_argument("function", metavar="FUNCTION")
    parser.add_argument("--alias", default="live", help="the alias to point at the new version (default: live)")
    parser.add_argument(
        "--weight",
        type=_positive(1, 99),
        metavar="N",
        help="canary: send N%% of requests to the new version, the rest to the current one",
    )
    parser.add_argument("--dir", metavar="FOLDER", help="the function's folder (default: functions/FUNCTION)")
    parser.add_argument("--description", help="what this version changes")

    parser = command("rollback", rollback, "point live back at the version it served before")
    parser.add_argument("function", metavar="FUNCTION")

    parser = command("scale", scale, "set a function's replicas (and the autoscaler's bounds)")
    parser.add_argument("function", metavar="FUNCTION")
    parser.add_argument("replicas", metavar="N", nargs="?", type=_positive(0, 64), help="replicas to run now")
    parser.add_argument("--min", type=_positive(0, 64), metavar="A", help="the autoscaler's lower bound (0: scale to zero)")
    parser.add_argument("--max", type=_positive(1, 64), metavar="B", help="the autoscaler's upper bound")

    parser = command("invoke", invoke, "run one request on a function and show its answer")
    parser.add_argument("function", metavar="FUNCTION")
    parser.add_argument("--async", dest="background", action="store_true", help="run in the background; print the execution id")
    parser.add_argument("--data", metavar="JSON", help="the request's JSON body")
    parser.add_argument("--method", choices=("GET", "POST"), help="default: GET, or POST with --data")
    parser.add_argument("--path", help="the function's path, e.g. /user/42 (default: a queue function's message path, else /)")

    parser = command("logs", logs, "show the last lines logged by a function's replicas")
    parser.add_argument("function", metavar="FUNCTION")
    parser.add_argument("--lines", "-n", type=_positive(1, 10_000), default=50, metavar="N", help="how many (default: 50)")

    parser = command("executions", executions, "list the latest executions")
    parser.add_argument("--function", metavar="FUNCTION", help="only this function's")
    parser.add_argument("--limit", type=_positive(1, 500), default=20, metavar="N", help="how many (default: 20)")

    parser = command("execution", execution, "show one execution: status, answer, duration and logs")
    parser.add_argument("id", metavar="ID")
    parser.add_argument("--wait", action="store_true", help="wait until it has finished")
    parser.add_argument("--json", action="store_true", help="print the whole record as JSON")

    parser = command("dead-letters", dead_letters, "list the messages a queue function gave up on (none is removed)")
    parser.add_argument("function", metavar="FUNCTION")
    parser.add_argument("--limit", type=_positive(1, 500), default=50, metavar="N", help="how many (default: 50)")

    for name, run, summary in (
        ("replay", replay, "send dead letters back to their function's queue, their attempts reset"),
        ("purge", purge, "delete dead letters"),
    ):
        parser = command(name, run, summary)
        parser.add_argument("function", metavar="FUNCTION")
        parser.add_argument("ids", metavar="ID", nargs="*", help="the dead letters' ids (tombola dead-letters lists them)")
        parser.add_argument("--all", action="store_true", help="every dead letter of the function")
