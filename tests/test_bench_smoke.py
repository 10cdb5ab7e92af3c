"""The benchmark's smoke run writes every output, with the table's columns and every target."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.report import COLUMNS, KEYS

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_smoke_run_writes_the_report(tmp_path):
    output = tmp_path / "bench"
    finished = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--smoke", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,  # with installing wrk and nginx on a fresh machine
    )
    assert finished.returncode == 0, finished.stderr[-4000:]

    with open(output / "results.csv", newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames or ()) == KEYS
        rows = list(reader)
    assert [(row["phase"], row["via"]) for row in rows] == [
        ("W=1", "gateway"), ("W=2", "gateway"), ("autoscale", "gateway"), ("reads", "gateway"), ("reads", "nginx"),
    ]
    for row in rows[:3]:
        assert int(row["plays"]) > 0 and row["plays_per_s"] and row["cpu_ms_per_play"]
    for row in rows[3:]:
        assert all(row[f"{path}_rps"] for path in ("i", "s", "img"))

    document = json.loads((output / "results.json").read_text())
    assert [row["phase"] for row in document["rows"]] == [row["phase"] for row in rows]
    assert {"nproc", "cpu_model", "python"} <= set(document["machine"])
    assert len(document["targets"]) == 14
    assert all({"name", "measured", "bound", "met"} <= set(target) for target in document["targets"])
    assert document["autoscale"]["rate_series"] and document["autoscale"]["replica_series"]

    report = (output / "report.md").read_text()
    assert "| " + " | ".join(label for _, label in COLUMNS) + " |" in report
    assert "## Targets" in report and document["machine"]["python"] in report

    assert sorted(path.name for path in output.glob("locust-*.html")) == [
        "locust-autoscale.html", "locust-w1.html", "locust-w2.html",
    ]
    assert (output / "plot.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    logs = output / "pack-logs"
    assert "tombola is up" in (logs / "pack.log").read_text()
    assert {path.name for path in (logs / "replicas").iterdir()} >= {"b", "i", "s", "w", "w1", "w2"}
