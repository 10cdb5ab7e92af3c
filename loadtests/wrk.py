"""Raw HTTP throughput with ``wrk`` (Debian package ``wrk``), driven by a generated Lua script.

Locust spends a core on a few hundred requests a second; wrk, in C, saturates a
server with a fraction of one. Each load is a Lua script that picks the next
request (a random customer id, or the next picture with its ETag in
``If-None-Match``) and prints one JSON line when done: requests, duration,
latency percentiles, socket errors and, for conditional loads, the count of
each status.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MARKER = "WRK_RESULT "

_COMMON = """
local threads = {}
local next_seed = 1
statuses = {}

function setup(thread)
  thread:set("seed", next_seed)
  next_seed = next_seed + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(seed * 7919)
end

function done(summary, latency, requests)
  local codes = {}
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do
      codes[code] = (codes[code] or 0) + count
    end
  end
  local parts = {}
  for code, count in pairs(codes) do
    table.insert(parts, string.format('"%d": %d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d}, "latency_us": {"p50": %d, "p95": %d, "p99": %d, "max": %d}, "statuses": {%s}}\\n',
    MARKER, summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, table.concat(parts, ", ")))
end
"""


@dataclasses.dataclass(frozen=True)
class WrkLoad:
    """What wrk sends: a name for the report and the Lua script that makes each request."""

    name: str
    script: str

    @classmethod
    def random_ids(cls, name: str, template: str, count: int) -> WrkLoad:
        """GET ``template % id`` for random ids in 1..count (``template`` holds one ``%d``)."""
        request = f'function request()\n  return wrk.format("GET", string.format("{template}", math.random(1, {count})))\nend\n'
        return cls(name, f'MARKER = "{MARKER}"\n' + _COMMON + request)

    @classmethod
    def conditional(cls, name: str, validated: Sequence[tuple[str, str]]) -> WrkLoad:
        """GET each path in turn with its ETag in ``If-None-Match``, counting the statuses (304 expected)."""
        if not validated:
            raise ValueError("a conditional load needs at least one (path, ETag) pair")
        pairs = ",\n".join(f"  {{{_lua_string(path)}, {_lua_string(etag)}}}" for path, etag in validated)
        request = (
            f"local pairs_ = {{\n{pairs}\n}}\nlocal index = 0\n"
            "function request()\n"
            "  index = index % #pairs_ + 1\n"
            '  return wrk.format("GET", pairs_[index][1], {["If-None-Match"] = pairs_[index][2]})\n'
            "end\n"
            "function response(status, headers, body)\n"
            "  statuses[status] = (statuses[status] or 0) + 1\n"
            "end\n"
        )
        return cls(name, f'MARKER = "{MARKER}"\n' + _COMMON + request)


def _lua_string(text: str) -> str:
    """``text`` as a Lua string literal (JSON's escapes of quotes and backslashes are Lua's too)."""
    return json.dumps(text)


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    status_errors: int
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Socket errors, timeouts and answers other than 2xx or 3xx."""
        return self.socket_errors + self.status_errors

    @classmethod
    def parse(cls, output: str) -> WrkResult:
        """The result line the script printed; ValueError when there is none."""
        for line in output.splitlines():
            if line.startswith(MARKER):
                data: dict[str, Any] = json.loads(line[len(MARKER):])
                latency, errors = data["latency_us"], data["errors"]
                return cls(
                    requests=data["requests"],
                    seconds=data["duration_us"] / 1e6,
                    p50_ms=latency["p50"] / 1000,
                    p95_ms=latency["p95"] / 1000,
                    p99_ms=latency["p99"] / 1000,
                    max_ms=latency["max"] / 1000,
                    socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
                    status_errors=errors["status"],
                    statuses={int(code): count for code, count in data["statuses"].items()},
                )
        raise ValueError(f"wrk printed no result line:\n{output[-2000:]}")


class WrkError(RuntimeError):
    """wrk could not run or printed no result."""


def run(url: str, load: WrkLoad, workdir: Path, connections: int, seconds: float, threads: int = 2) -> WrkResult:
    """Run ``load`` against ``url`` with ``connections`` keep-alive connections for ``seconds``."""
    script = workdir / f"wrk-{load.name}.lua"
    script.write_text(load.script)
    command = [
        "wrk", "--threads", str(min(threads, connections)), "--connections", str(connections),
        "--duration", f"{max(1, round(seconds))}s", "--timeout", "5s", "--script", str(script), url,
    ]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WrkError(f"wrk failed: {error}") from None
    if finished.returncode != 0:
        raise WrkError(f"wrk exited {finished.returncode}: {finished.stderr[-2000:]}")
    try:
        return WrkResult.parse(finished.stdout)
    except ValueError as error:
        raise WrkError(str(error)) from None
