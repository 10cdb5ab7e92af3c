"""Headless Locust runs of loadtests/locustfile.py, and what their CSV files say.

One run writes ``locust-<name>_stats.csv`` (totals and percentiles per request
name), ``locust-<name>_stats_history.csv`` (one row per name and second, with
``--csv-full-history``), ``locust-<name>.html`` and ``locust-<name>.log``.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import itertools
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
SHAPES = HERE / "shapes.py"
PLAY = ("METRIC", "play completed")
PRIZE = ("METRIC", "time to prize")
TOTAL = ("", "Aggregated")


class LocustError(RuntimeError):
    """Locust did not run, or left no statistics."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One headless run: users of ``classes`` against ``host``, a fixed load or the step shape."""

    name: str
    classes: Sequence[str]
    users: int
    spawn_rate: float
    seconds: float
    first_id: int
    stop_timeout: float
    step: Sequence[str] = ()  # the step shape's options (shapes.py); the run then ignores users and seconds


@dataclasses.dataclass(frozen=True)
class Entry:
    """Totals of one request name."""

    count: int
    failures: int
    rate: float
    p50: float | None
    p95: float | None
    p99: float | None


@dataclasses.dataclass(frozen=True)
class Sample:
    """One row of the full history: a name's cumulative count at a second, and the users running."""

    timestamp: int
    users: int
    count: int


def _number(raw: str) -> float | None:
    return None if raw in ("", "N/A") else float(raw)


@dataclasses.dataclass(frozen=True)
class Result:
    """The statistics of one run."""

    entries: dict[tuple[str, str], Entry]
    history: dict[tuple[str, str], list[Sample]]

    @classmethod
    def load(cls, prefix: Path) -> Result:
        entries: dict[tuple[str, str], Entry] = {}
        with open(f"{prefix}_stats.csv", newline="") as file:
            for row in csv.DictReader(file):
                entries[(row["Type"], row["Name"])] = Entry(
                    count=int(row["Request Count"]),
                    failures=int(row["Failure Count"]),
                    rate=float(row["Requests/s"]),
                    p50=_number(row["50%"]),
                    p95=_number(row["95%"]),
                    p99=_number(row["99%"]),
                )
        history: dict[tuple[str, str], list[Sample]] = {}
        with open(f"{prefix}_stats_history.csv", newline="") as file:
            for row in csv.DictReader(file):
                history.setdefault((row["Type"], row["Name"]), []).append(
                    Sample(int(row["Timestamp"]), int(row["User Count"]), int(row["Total Request Count"]))
                )
        return cls(entries, history)

    def entry(self, key: tuple[str, str]) -> Entry:
        """The totals of ``key`` (zero when Locust never saw it)."""
        return self.entries.get(key, Entry(0, 0, 0.0, None, None, None))

    def started(self) -> int:
        """The first second of the history."""
        return min(samples[0].timestamp for samples in self.history.values() if samples)

    def _at(self, key: tuple[str, str], timestamp: float) -> Sample | None:
        """``key``'s last sample taken at or before ``timestamp``."""
        samples = self.history.get(key, [])
        index = bisect.bisect_right([sample.timestamp for sample in samples], timestamp)
        return samples[index - 1] if index else None

    def rate_between(self, key: tuple[str, str], start: float, end: float) -> float:
        """``key``'s completions per second between the samples nearest before ``start`` and ``end``."""
        # Before its first sample, a name had no completion yet.
        first = self._at(key, start) or Sample(math.floor(start), 0, 0)
        last = self._at(key, end)
        if last is None or last.timestamp <= first.timestamp:
            return 0.0
        return (last.count - first.count) / (last.timestamp - first.timestamp)

    def step_moment(self, before: int) -> int | None:
        """The last second at which at most ``before`` users ran, before more ran (a step's start)."""
        samples = self.history.get(TOTAL, [])
        for previous, sample in itertools.pairwise(samples):
            if sample.users > before >= previous.users:
                return previous.timestamp
        return None

    def rate_series(self, key: tuple[str, str], window: float) -> list[tuple[int, float]]:
        """``key``'s rate at each second of the history, over the trailing ``window`` seconds."""
        samples = self.history.get(key, [])
        return [(sample.timestamp, self.rate_between(key, sample.timestamp - window, sample.timestamp)) for sample in samples]


def command(run: Run, host: str, prefix: Path) -> list[str]:
    """The Locust command line of ``run``."""
    files = f"{LOCUSTFILE},{SHAPES}" if run.step else str(LOCUSTFILE)
    fixed = ["-u", str(run.users), "-r", f"{run.spawn_rate:g}", "-t", f"{max(1, round(run.seconds))}s"]
    load = list(run.step) if run.step else fixed
    return [
        str(Path(sys.executable).with_name("locust")), "-f", files, "--headless", "--host", host, *load,
        "--stop-timeout", str(math.ceil(run.stop_timeout)), "--first-id", str(run.first_id),
        "--csv", str(prefix), "--csv-full-history", "--html", f"{prefix}.html",
        "--only-summary", "--loglevel", "WARNING", *run.classes,
    ]


def execute(run: Run, host: str, directory: Path, limit: float) -> Result:
    """Run Locust until it ends (at most ``limit`` seconds); its statistics."""
    prefix = directory / f"locust-{run.name}"
    with open(f"{prefix}.log", "wb") as log:
        try:
            # Locust exits 1 when any request failed: the statistics say which, so that is no error here.
            subprocess.run(command(run, host, prefix), stdout=log, stderr=subprocess.STDOUT, timeout=limit, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise LocustError(f"Locust run {run.name} failed: {error}") from None
    try:
        return Result.load(prefix)
    except (OSError, KeyError, ValueError) as error:
        tail = Path(f"{prefix}.log").read_text(errors="replace")[-2000:]
        raise LocustError(f"Locust run {run.name} left no statistics ({error}):\n{tail}") from None
