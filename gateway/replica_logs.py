"""The replicas' log files, ``$TOMBOLA_HOME/logs/<function>/<replica>.log``, read back.

Each file holds the JSON lines of one replica (and whatever else it printed).
Only the end of each file is read: what an operator asks for is recent.
Lines of several replicas are merged by their timestamp; a line that is not
JSON (a traceback) keeps the place of the line before it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from runner.manifest import NAME_PATTERN

TAIL_BYTES = 4 * 1024 * 1024
STAMP = re.compile(r'\{"ts": "([^"]+)"')  # how runner.logs.JsonFormatter starts every line


@dataclasses.dataclass(frozen=True)
class LogLine:
    """One line of a replica's log."""

    replica: str
    line: str
    ts: str

    def as_dict(self) -> dict[str, str]:
        return {"replica": self.replica, "line": self.line}

    def field(self, name: str) -> object:
        """A field of the line's JSON object, or None."""
        try:
            entry = json.loads(self.line)
        except ValueError:
            return None
        return entry.get(name) if isinstance(entry, dict) else None


class ReplicaLogs:
    """The log files of every replica of every function, under one folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def tail(self, function: str, count: int) -> list[LogLine]:
        """The last ``count`` lines across the replicas of ``function``, oldest first."""
        lines = self._merged(function)
        return lines[-count:] if count else []

    def matching(self, function: str, request_id: str) -> list[LogLine]:
        """The lines of ``function``'s replicas logged while handling the request ``request_id``."""
        return [line for line in self._merged(function) if request_id in line.line and line.field("request_id") == request_id]

    def _merged(self, function: str) -> list[LogLine]:
        if not NAME_PATTERN.fullmatch(function):
            return []
        folder = self.directory / function
        try:
            paths = sorted(folder.glob("*.log"))
        except OSError:
            return []
        lines = [line for path in paths for line in _read_tail(path)]
        lines.sort(key=lambda line: line.ts)  # stable: each file's own order is kept among equal stamps
        return lines


def _read_tail(path: Path) -> list[LogLine]:
    """The complete lines in the last TAIL_BYTES of ``path``."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            start = max(0, size - TAIL_BYTES)
            file.seek(start)
            data = file.read(size - start)
    except OSError:
        return []
    if start:
        data = data.partition(b"\n")[2]  # the first line is cut: drop it
    replica = path.stem
    lines: list[LogLine] = []
    ts = ""
    for raw in data.decode("utf-8", "replace").splitlines():
        if not raw.strip():
            continue
        stamp = STAMP.match(raw)
        if stamp:
            ts = stamp.group(1)
        lines.append(LogLine(replica, raw, ts))
    return lines
