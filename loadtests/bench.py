"""The benchmark: the pack under load, phase by phase, against its targets and beside an nginx reference.

    python -m loadtests.bench                       # the full run (about 8 minutes), embedded backends
    python -m loadtests.bench --backends services   # RabbitMQ + MariaDB + Swift (run python -m tests.services first)
    python -m loadtests.bench --smoke               # under a minute: checks the machinery, not the numbers

It starts its own pack (``tombola up``, as tests/pack.py's Pack runs it, in a
temporary home with W's tempo and enough seeded customers for fresh ids) and
measures, in order:

1. W pinned at 1, 2, 4 and 8 replicas through the control plane, each a phase of
   Player users (Locust, headless): sustained plays/s, play latency, time to
   prize, the Player's reads per path, and CPU per play across every process of
   the pack (utime + stime from /proc, over the phase, per play completed);
2. autoscaling: W free between 1 and 8 replicas, SlowWorker users stepping from
   10 to 100 (loadtests/shapes.py); how long after the step the play rate
   (over the last 2 s) reaches 75 % of what 100 back-to-back players ask for
   (15 plays/s at a tempo of 5 s), and W's replicas meanwhile;
3. reads with wrk, 32 connections: I and S on random customers and the prize
   picture with conditional GETs (304), through the gateway and through nginx in
   front of the very same replicas, side by side.

Outputs, in reports/bench-<UTC time>/ (or --output): results.csv, results.json,
report.md (the table, each target measured and met or not, the machine),
plot.png, and per Locust phase locust-<phase>.html with its CSV files and log.
wrk and nginx are installed from Debian when missing (as root).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.client import ClientError
from loadtests import cpu, headless, report, wrk
from loadtests.backends import KINDS, backends
from loadtests.headless import PLAY, PRIZE, TOTAL, LocustError, Result, Run
from loadtests.nginx import Nginx, NginxError
from loadtests.scaling import ReplicaWatch, Scaling, ScalingError
from loadtests.wrk import WrkError, WrkLoad, WrkResult
from tests.pack import Pack
from tests.services import Apt, ServiceError

ROOT = Path(__file__).resolve().parent.parent
PLAY_POST = ("POST", "/srvb/user/[id]")
LOCUST_READS = {"i": "/srvi/user/[id]", "s": "/srvs/user/[id]", "p": "/srvp/user/[id]"}
BROWSE_IDS = 10_000  # wrk reads customers 1..10000
PICTURES = 200  # at most this many played customers' pictures in the conditional load
STEP_SHARE = 0.75  # the step's target: this share of what step_to back-to-back players ask for
GATEWAY_SHARE = 70.0  # the gateway must reach this % of nginx's throughput
TOOLS = (("wrk", "wrk"), ("nginx", "nginx-light"))


class BenchError(RuntimeError):
    """The benchmark cannot go on (its message says why)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """The loads and durations of one run."""

    tempo: float = 5.0
    players: int = 120
    phase_seconds: float = 60.0
    replicas: tuple[int, ...] = (1, 2, 4, 8)
    max_replicas: int = 8
    step_from: int = 10
    step_to: int = 100
    step_at: float = 20.0
    step_hold: float = 40.0
    window: float = 2.0
    wrk_seconds: float = 15.0
    connections: int = 32
    read_replicas: int = 1
    nginx_workers: int = 1

    def __post_init__(self) -> None:
        if self.step_to <= self.step_from:
            raise BenchError("--step-to must be larger than --step-from")
        if max(self.replicas) > self.max_replicas:
            raise BenchError("--replicas may not exceed --max-replicas")

    @property
    def ramp(self) -> float:
        """Seconds over which a phase's players start (one tempo, at least a second)."""
        return max(1.0, self.tempo)

    @property
    def warmup(self) -> float:
        """Seconds of a phase left out of its sustained rate: the ramp, then the first plays."""
        return self.ramp + self.tempo + 1.0

    @property
    def stop_timeout(self) -> float:
        """Seconds Locust lets a user finish its task (a play and its prize) when a phase ends."""
        return self.tempo + 2.0

    @property
    def target_rate(self) -> float:
        """The play rate the step must reach (plays/s)."""
        return STEP_SHARE * self.step_to / self.tempo

    @property
    def seed(self) -> int:
        """Customers to seed: every fresh id the phases may play, with room to spare."""
        fixed = len(self.replicas) * (self.players * (self.phase_seconds + self.stop_timeout) / self.tempo + self.players)
        step = self.step_to * (self.step_at + self.step_hold + self.stop_timeout) / self.tempo + self.step_to
        return max(BROWSE_IDS, math.ceil(1.5 * (fixed + step)))


SMOKE = Plan(
    tempo=0.5, players=6, phase_seconds=4, replicas=(1, 2), step_from=2, step_to=6, step_at=2, step_hold=3,
    wrk_seconds=1, connections=8,
)


def locust_row(
    phase: str, replicas: Any, users: str, seconds: float, result: Result, rate: float | None, cpu_seconds: float
) -> report.Row:
    """The table's row of a Locust phase."""
    play, prize = result.entry(PLAY), result.entry(PRIZE)
    row: report.Row = {
        "phase": phase,
        "via": "gateway",
        "w_replicas": replicas,
        "load": users,
        "seconds": seconds,
        "plays": play.count,
        "plays_per_s": rate,
        "play_p50_ms": play.p50,
        "play_p95_ms": play.p95,
        "play_p99_ms": play.p99,
        "prize_p50_ms": prize.p50,
        "prize_p95_ms": prize.p95,
        "prize_p99_ms": prize.p99,
        "cpu_ms_per_play": 1000 * cpu_seconds / play.count if play.count else None,
        "errors": result.entry(TOTAL).failures,
    }
    for key, name in LOCUST_READS.items():
        entry = result.entry(("GET", name))
        if entry.count:
            row.update({f"{key}_rps": entry.rate, f"{key}_p50_ms": entry.p50, f"{key}_p99_ms": entry.p99})
    return row


def not_304(result: WrkResult) -> int:
    """Conditional GETs answered otherwise than 304."""
    return result.requests - result.statuses.get(304, 0)


class Benchmark:
    """The phases of one run against one pack; rows and measurements pile up as they run."""

    def __init__(self, plan: Plan, pack: Pack, directory: Path) -> None:
        assert pack.process is not None, "start the pack first"
        self.plan = plan
        self.pack = pack
        self.session = pack.process.pid  # tombola up leads its own session
        self.directory = directory
        self.scaling = Scaling(pack.internal_url, pack.env["TOMBOLA_TOKEN"])
        self.next_id = 1
        self.rows: list[report.Row] = []
        self.step: dict[str, Any] = {}
        self.reads: dict[str, dict[str, WrkResult]] = {}
        self.upstreams: dict[str, list[str]] = {}

    def run(self) -> None:
        for count in self.plan.replicas:
            self.fixed(count)
        self.autoscaled()
        self.read_path()

    def _locust(self, run: Run) -> tuple[Result, float]:
        """Run Locust; its result and the pack's CPU seconds meanwhile."""
        before = cpu.sample(self.session).seconds
        limit = run.seconds + run.stop_timeout + 120
        result = headless.execute(run, self.pack.url, self.directory, limit)
        used = cpu.sample(self.session).seconds - before
        # Each user may have taken one id it did not play yet when the phase ended.
        self.next_id = run.first_id + result.entry(PLAY_POST).count + run.users + 1
        return result, used

    def fixed(self, count: int) -> None:
        """A phase of Player users with W pinned at ``count`` replicas."""
        plan = self.plan
        print(f"phase W={count}: {plan.players} players for {plan.phase_seconds:g} s", flush=True)
        self.scaling.pin("w", count)
        spawn_rate = plan.players / plan.ramp
        run = Run(f"w{count}", ("Player",), plan.players, spawn_rate, plan.phase_seconds, self.next_id, plan.stop_timeout)
        result, cpu_seconds = self._locust(run)
        start = result.started()
        rate = result.rate_between(PLAY, start + plan.warmup, start + plan.phase_seconds)
        users = f"{plan.players} users"
        self.rows.append(locust_row(f"W={count}", count, users, plan.phase_seconds, result, rate, cpu_seconds))

    def autoscaled(self) -> None:
        """The step from step_from to step_to SlowWorker users, W autoscaled between 1 and max_replicas."""
        plan = self.plan
        print(f"phase autoscale: {plan.step_from} → {plan.step_to} users, W 1–{plan.max_replicas}", flush=True)
        self.scaling.scale("w", 1, 1, plan.max_replicas)
        step = [
            "--step-from", str(plan.step_from), "--step-to", str(plan.step_to),
            "--step-at", f"{plan.step_at:g}", "--step-hold", f"{plan.step_hold:g}",
        ]
        seconds = plan.step_at + plan.step_hold
        run = Run("autoscale", ("SlowWorker",), plan.step_to, plan.step_to, seconds, self.next_id, plan.stop_timeout, step)
        with ReplicaWatch(self.scaling, "w") as watch:
            result, cpu_seconds = self._locust(run)
        moment = result.step_moment(plan.step_from)
        series = result.rate_series(PLAY, plan.window)
        reached = rate = None
        if moment is not None:
            reached = next((t - moment for t, value in series if t > moment and value >= plan.target_rate), None)
            rate = result.rate_between(PLAY, moment + plan.tempo + plan.window, moment + plan.step_hold)
        peak = max((count for _, count in watch.counts), default=None)
        self.step = {
            "step_at_unix": moment,
            "target_rate": plan.target_rate,
            "reached_after_s": reached,
            "peak_replicas": peak,
            "rate_series": series,
            "replica_series": watch.counts,
        }
        replicas = f"1–{plan.max_replicas} (peak {peak})"
        users = f"{plan.step_from} → {plan.step_to} users"
        self.rows.append(locust_row("autoscale", replicas, users, seconds, result, rate, cpu_seconds))

    def read_path(self) -> None:
        """wrk on I, S and the picture, through the gateway and through nginx, path by path."""
        plan = self.plan
        print(f"phase reads: wrk, {plan.connections} connections, gateway and nginx", flush=True)
        for function in ("i", "s", "p"):
            self.scaling.pin(function, plan.read_replicas)
        loads = {
            "i": WrkLoad.random_ids("i", "/srvi/user/%d", BROWSE_IDS),
            "s": WrkLoad.random_ids("s", "/srvs/user/%d", BROWSE_IDS),
            "img": WrkLoad.conditional("img", self.pictures()),
        }
        self.upstreams = {f"/srv{function}": self.scaling.urls(function) for function in ("i", "s", "p")}
        results: dict[str, dict[str, WrkResult]] = {"gateway": {}, "nginx": {}}
        with Nginx(self.upstreams, plan.nginx_workers) as nginx:
            self.check_same(nginx.url)
            for key, load in loads.items():
                # Unmeasured: fills the replicas' pools and I's cache, so whichever goes first is not penalised.
                wrk.run(self.pack.url, load, self.directory, plan.connections, min(5.0, plan.wrk_seconds))
                for via, url in (("gateway", self.pack.url), ("nginx", nginx.url)):
                    results[via][key] = wrk.run(url, load, self.directory, plan.connections, plan.wrk_seconds)
        for via, measured in results.items():
            row: report.Row = {
                "phase": "reads", "via": via, "load": f"{plan.connections} connections", "seconds": plan.wrk_seconds,
                "errors": sum(result.errors for result in measured.values()) + not_304(measured["img"]),
            }
            for key, result in measured.items():
                row.update({f"{key}_rps": result.rate, f"{key}_p50_ms": result.p50_ms, f"{key}_p99_ms": result.p99_ms})
            self.rows.append(row)
        self.reads = results

    def pictures(self) -> list[tuple[str, str]]:
        """(path, ETag) of the pictures of customers who played, for the conditional load."""
        found: list[tuple[str, str]] = []
        with requests.Session() as session:
            for customer in range(1, self.next_id):
                path = f"/srvp/user/{customer}/image"
                answer = session.get(self.pack.url + path, timeout=10)
                if answer.status_code == 200 and answer.headers.get("ETag"):
                    found.append((path, answer.headers["ETag"]))
                    if len(found) == PICTURES:
                        break
        if not found:
            raise BenchError("no customer has a prize picture: no play completed")
        return found

    def check_same(self, nginx_url: str) -> None:
        """nginx must answer what the gateway answers, or the comparison means nothing."""
        for path in ("/srvi/user/1", "/srvs/user/1"):
            through = [requests.get(base + path, timeout=10) for base in (self.pack.url, nginx_url)]
            if any(answer.status_code != 200 for answer in through) or through[0].json() != through[1].json():
                raise BenchError(f"nginx and the gateway answer {path} differently: {[a.text[:200] for a in through]}")


def targets(plan: Plan, bench: Benchmark) -> list[report.Target]:
    """The issue's targets, measured; play targets on the fixed phase with the most plays/s."""
    fixed = [row for row in bench.rows if isinstance(row.get("w_replicas"), int)]
    best = max(fixed, key=lambda row: row["plays_per_s"] or 0.0)
    where = f"{best['phase']}, {best['load']}"
    gateway, nginx = bench.reads["gateway"], bench.reads["nginx"]

    def share(key: str) -> float | None:
        return 100 * gateway[key].rate / nginx[key].rate if nginx[key].rate else None

    picture = gateway["img"]
    answered_304 = 100 * picture.statuses.get(304, 0) / picture.requests if picture.requests else None
    reads = f"wrk, {plan.connections} connections"
    Target = report.Target
    return [
        Target("plays sustained", best["plays_per_s"], 15, True, "plays/s", where),
        Target("errors while playing", best["errors"], 0, False, "", where),
        Target("play latency p99", best["play_p99_ms"], 1000 * (plan.tempo + 1), False, "ms", where),
        Target("time to prize p99", best["prize_p99_ms"], 1000 * (plan.tempo + 1.5), False, "ms", where),
        Target("CPU per play, all pack processes", best["cpu_ms_per_play"], 60, False, "ms", where),
        Target("I through the gateway", gateway["i"].rate, 2500, True, "req/s", reads),
        Target("I p99 through the gateway", gateway["i"].p99_ms, 25, False, "ms", reads),
        Target("S through the gateway", gateway["s"].rate, 2500, True, "req/s", reads),
        Target("S p99 through the gateway", gateway["s"].p99_ms, 25, False, "ms", reads),
        Target("I: gateway / nginx", share("i"), GATEWAY_SHARE, True, "%", reads),
        Target("S: gateway / nginx", share("s"), GATEWAY_SHARE, True, "%", reads),
        Target("picture, conditional GET, through the gateway", picture.rate, 1000, True, "req/s", reads),
        Target("conditional GETs answered 304", answered_304, 100, True, "%", reads),
        Target(
            f"step {plan.step_from} → {plan.step_to} players: time to {plan.target_rate:.1f} plays/s",
            bench.step.get("reached_after_s"), 10, False, "s", f"W autoscaled 1–{plan.max_replicas}",
        ),
    ]


def notes(plan: Plan, kind: str, bench: Benchmark, processes: int) -> list[str]:
    gateway, nginx = bench.reads["gateway"], bench.reads["nginx"]
    overhead = ", ".join(
        f"{label} {gateway[key].rate:.0f} vs {nginx[key].rate:.0f} req/s"
        f" ({100 * gateway[key].rate / nginx[key].rate:.0f} %), p99 {gateway[key].p99_ms:.1f} vs {nginx[key].p99_ms:.1f} ms"
        for key, label in (("i", "I"), ("s", "S"), ("img", "picture"))
        if nginx[key].rate
    )
    step = bench.step
    reached = step.get("reached_after_s")
    return [
        f"Gateway against nginx (worker_processes {plan.nginx_workers}, least_conn, keep-alive) in front of the same "
        f"replicas ({', '.join(f'{prefix}: {len(urls)}' for prefix, urls in bench.upstreams.items())}): {overhead}.",
        f"Autoscale: target {step.get('target_rate', 0):.1f} plays/s ({STEP_SHARE:.0%} of {plan.step_to} back-to-back "
        f"players at a tempo of {plan.tempo:g} s, rate over the last {plan.window:g} s, measured from the last second "
        f"before the step); " + (f"reached after {reached} s" if reached is not None else "not reached")
        + f"; W peaked at {step.get('peak_replicas')} replicas (timelines in results.json and plot.png).",
        f"CPU per play: user + system time of every process of `tombola up`'s session ({processes} at the end: gateway, "
        "replicas, gunicorn workers), reaped children included, over the phase, per play completed; it includes the "
        "Player's page, reads and polling"
        + ("; MariaDB, RabbitMQ and Swift are other processes, not counted." if kind == "services" else "."),
        f"Plays/s is sustained: plays completed per second once the players started and played once "
        f"(the first {plan.warmup:g} s of a phase left out). Locust's own reads are the Player's; raw read throughput "
        "is the `reads` rows.",
        "Upstream on this machine, for reference: 0.18 plays/s with 20 clients, p99 104 s; ~310 ms CPU per play; "
        "reads ~560–890 req/s at p99 60–160 ms; picture ~160 req/s.",
    ]


def ensure_tools() -> None:
    """wrk and nginx, installed from Debian when missing."""
    apt = Apt()
    for command, package in TOOLS:
        if shutil.which(command) is None and shutil.which(command, path="/usr/sbin:/usr/local/sbin") is None:
            apt.install(package)


def summary(plan: Plan, kind: str) -> str:
    return (
        f"{kind} backends, W tempo {plan.tempo:g} s, {plan.seed} customers; W pinned at "
        f"{', '.join(map(str, plan.replicas))} replicas: {plan.players} Player users for {plan.phase_seconds:g} s each; "
        f"autoscale: W 1–{plan.max_replicas}, {plan.step_from} → {plan.step_to} SlowWorker users after "
        f"{plan.step_at:g} s, held {plan.step_hold:g} s; reads: wrk, {plan.connections} connections, "
        f"{plan.wrk_seconds:g} s per path, I/S/P at {plan.read_replicas} replica(s)."
    )


def keep_logs(home: Path, into: Path) -> None:
    """Copy the pack's own log and every replica's log out of its temporary home, to explain any error."""
    into.mkdir(parents=True, exist_ok=True)
    if (home / "pack.log").exists():
        shutil.copy2(home / "pack.log", into / "pack.log")
    if (home / "logs").is_dir():
        shutil.copytree(home / "logs", into / "replicas", dirs_exist_ok=True)


def run(plan: Plan, kind: str, directory: Path) -> str:
    """Run every phase on a fresh pack; write the outputs; the report's text."""
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="tombola-bench-") as home, backends(kind) as env:
        variables = {**env, "TOMBOLA_W_TEMPO": f"{plan.tempo:g}", "TOMBOLA_SEED_CUSTOMERS": str(plan.seed)}
        variables["TOMBOLA_PLAY_RATE"] = "0"  # every player comes from this one address: no per-client limit
        pack = Pack(Path(home), variables)
        print(f"starting the pack ({kind} backends)", flush=True)
        try:
            pack.start()
        except RuntimeError as error:  # its message ends with the pack's log
            raise BenchError(str(error)) from None
        try:
            bench = Benchmark(plan, pack, directory)
            bench.run()
            processes = cpu.sample(bench.session).processes
        except BaseException:
            print(f"the pack's log ends with:\n{pack.log()}", file=sys.stderr)
            raise
        finally:
            pack.stop()
            keep_logs(Path(home), directory / "pack-logs")
    meta = {
        "date": date,
        "machine": report.machine(),
        "summary": summary(plan, kind),
        "backends": kind,
        "plan": dataclasses.asdict(plan),
        "autoscale": bench.step,
        "nginx_upstreams": bench.upstreams,
    }
    text = report.write(directory, meta, bench.rows, targets(plan, bench), notes(plan, kind, bench, processes))
    report.plot(directory / "plot.png", bench.rows, bench.step)
    return text


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {raw}")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {raw}")
    return value


def _counts(raw: str) -> tuple[int, ...]:
    try:
        return tuple(_positive_int(part) for part in raw.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be replica counts such as 1,2,4,8, not {raw!r}") from None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--smoke", action="store_true", help="a few seconds per phase, small load, W tempo 0.5 s")
    root.add_argument("--backends", choices=KINDS, default="embedded", help="the pack's backends (default: embedded)")
    root.add_argument("--output", type=Path, help="output folder (default: reports/bench-<UTC time>)")
    tuning = root.add_argument_group("tuning (defaults: the full run's, or --smoke's)")
    tuning.add_argument("--tempo", type=_positive_float, help=f"W's seconds per prize (full: {Plan.tempo:g})")
    tuning.add_argument("--players", type=_positive_int, help=f"Player users of a W phase (full: {Plan.players})")
    tuning.add_argument("--phase-seconds", type=_positive_float, help=f"length of a W phase (full: {Plan.phase_seconds:g})")
    tuning.add_argument("--replicas", type=_counts, help="W replicas of the pinned phases (full: 1,2,4,8)")
    tuning.add_argument("--max-replicas", type=_positive_int, help=f"autoscaling's maximum of W (full: {Plan.max_replicas})")
    tuning.add_argument("--step-from", type=_positive_int, help=f"users before the step (full: {Plan.step_from})")
    tuning.add_argument("--step-to", type=_positive_int, help=f"users after the step (full: {Plan.step_to})")
    tuning.add_argument("--step-at", type=_positive_float, help=f"seconds before the step (full: {Plan.step_at:g})")
    tuning.add_argument("--step-hold", type=_positive_float, help=f"seconds after the step (full: {Plan.step_hold:g})")
    tuning.add_argument("--wrk-seconds", type=_positive_float, help=f"length of one wrk run (full: {Plan.wrk_seconds:g})")
    tuning.add_argument("--connections", type=_positive_int, help=f"wrk's connections (full: {Plan.connections})")
    tuning.add_argument("--read-replicas", type=_positive_int, help=f"I, S and P replicas for wrk (full: {Plan.read_replicas})")
    tuning.add_argument("--nginx-workers", type=_positive_int, help=f"nginx worker processes (full: {Plan.nginx_workers})")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    given = {field.name: getattr(args, field.name, None) for field in dataclasses.fields(Plan)}
    try:
        plan = dataclasses.replace(SMOKE if args.smoke else Plan(), **{k: v for k, v in given.items() if v is not None})
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        directory = args.output or ROOT / "reports" / f"bench-{stamp}"
        directory.mkdir(parents=True, exist_ok=True)
        ensure_tools()
        text = run(plan, args.backends, directory)
    except (BenchError, ServiceError, NginxError, WrkError, LocustError, ScalingError, ClientError, OSError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except pytest.fail.Exception as error:  # a scratch database or vhost could not be made (tests/conftest.py)
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print(text)
    print(f"\nwritten to {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
