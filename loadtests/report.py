"""The benchmark's outputs: one table (results.csv, results.json, report.md), the targets, and plot.png.

Every phase is one row of the same columns: Locust phases fill the play, time
to prize and per-path read columns, the wrk rows (through the gateway and
through nginx) the raw read columns of I, S and the picture. Latencies are in
milliseconds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Row = dict[str, Any]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("phase", "phase"),
    ("via", "via"),
    ("w_replicas", "W replicas"),
    ("load", "load"),
    ("seconds", "s"),
    ("plays", "plays"),
    ("plays_per_s", "plays/s"),
    ("play_p50_ms", "play p50"),
    ("play_p95_ms", "play p95"),
    ("play_p99_ms", "play p99"),
    ("prize_p50_ms", "prize p50"),
    ("prize_p95_ms", "prize p95"),
    ("prize_p99_ms", "prize p99"),
    ("i_rps", "I req/s"),
    ("i_p50_ms", "I p50"),
    ("i_p99_ms", "I p99"),
    ("s_rps", "S req/s"),
    ("s_p50_ms", "S p50"),
    ("s_p99_ms", "S p99"),
    ("p_rps", "P req/s"),
    ("p_p50_ms", "P p50"),
    ("p_p99_ms", "P p99"),
    ("img_rps", "picture req/s"),
    ("img_p50_ms", "picture p50"),
    ("img_p99_ms", "picture p99"),
    ("cpu_ms_per_play", "CPU ms/play"),
    ("errors", "errors"),
)
KEYS = tuple(key for key, _ in COLUMNS)


@dataclasses.dataclass(frozen=True)
class Target:
    """One target of the issue: a measured value against a bound."""

    name: str
    measured: float | None
    bound: float
    at_least: bool  # True: measured >= bound; False: measured <= bound
    unit: str
    where: str = ""

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "met": self.met}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(rows: Sequence[Row]) -> str:
    """The one table: a row per phase, every column of COLUMNS."""
    return markdown_table([label for _, label in COLUMNS], [[row.get(key) for key in KEYS] for row in rows])


def targets_table(targets: Sequence[Target]) -> str:
    return markdown_table(
        ["target", "measured", "bound", "met", "where"],
        [
            [
                target.name,
                "—" if target.measured is None else f"{_cell(target.measured)} {target.unit}".strip(),
                f"{'≥' if target.at_least else '≤'} {_cell(target.bound)} {target.unit}".strip(),
                "yes" if target.met else "NO",
                target.where,
            ]
            for target in targets
        ],
    )


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write(directory: Path, meta: Mapping[str, Any], rows: Sequence[Row], targets: Sequence[Target], notes: Sequence[str]) -> str:
    """Write results.csv, results.json and report.md into ``directory``; the report's text."""
    with open(directory / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=KEYS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    document = {**meta, "columns": dict(COLUMNS), "rows": list(rows), "targets": [target.as_dict() for target in targets]}
    (directory / "results.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    host = meta["machine"]
    report = "\n\n".join(
        [
            f"# tombola benchmark, {meta['date']}",
            f"Machine: {host['nproc']} × {host['cpu_model']}, Python {host['python']}, {host['platform']}.  \n"
            f"Run: {meta['summary']}",
            "## Results\n\nLatencies in milliseconds. Locust phases: plays and reads of the Player scenario; "
            "`reads` rows: wrk through the gateway and through nginx in front of the same replicas.",
            results_table(rows),
            "## Targets",
            targets_table(targets),
            "## Notes",
            "\n".join(f"- {note}" for note in notes),
        ]
    )
    (directory / "report.md").write_text(report + "\n")
    return report


def plot(path: Path, rows: Sequence[Row], step: Mapping[str, Any]) -> None:
    """plot.png: throughput and latency against W's replicas, and the autoscaler following the step."""
    fixed = [row for row in rows if isinstance(row.get("w_replicas"), int)]
    figure = Figure(figsize=(16, 4.8), layout="tight")
    rate, latency, follow = figure.subplots(1, 3)
    replicas = [row["w_replicas"] for row in fixed]
    rate.plot(replicas, [row["plays_per_s"] for row in fixed], "o-", label="plays/s (sustained)")
    rate.set(title="Throughput against W replicas", xlabel="W replicas", ylabel="plays/s", xticks=replicas)
    rate.set_ylim(bottom=0)
    rate.legend()
    for key, label in (
        ("play_p50_ms", "play p50"), ("play_p99_ms", "play p99"), ("prize_p99_ms", "time to prize p99"),
    ):
        latency.plot(replicas, [(row.get(key) or 0) / 1000 for row in fixed], "o-", label=label)
    latency.set(title="Latency against W replicas", xlabel="W replicas", ylabel="seconds", xticks=replicas)
    latency.set_ylim(bottom=0)
    latency.legend()
    start = step.get("step_at_unix") or 0
    series = step.get("rate_series") or []
    follow.plot([t - start for t, _ in series], [value for _, value in series], label="plays/s")
    follow.axhline(step.get("target_rate") or 0, linestyle="--", color="grey", label="target")
    follow.set(title="Step: play rate and W replicas", xlabel="seconds from the step", ylabel="plays/s")
    follow.set_ylim(bottom=0)
    counts = step.get("replica_series") or []
    twin = follow.twinx()
    twin.step([t - start for t, _ in counts], [count for _, count in counts], where="post", color="tab:red", label="W replicas")
    twin.set(ylabel="W replicas")
    twin.set_ylim(0, max((count for _, count in counts), default=1) + 1)
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))
    follow.legend(loc="upper left")
    twin.legend(loc="lower right")
    figure.savefig(path, dpi=100)
