"""Load shapes for the Locust scenarios: load this file beside the locustfile.

A step from 10 to 100 users, to watch the autoscaler follow::

    locust -f loadtests/locustfile.py,loadtests/shapes.py --headless --host http://127.0.0.1:8080 \\
        --step-from 10 --step-to 100 --step-at 20 --step-hold 60 SlowWorker
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape, events


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("step shape")
    group.add_argument("--step-from", type=int, default=10, help="users before the step")
    group.add_argument("--step-to", type=int, default=100, help="users after the step")
    group.add_argument("--step-at", type=float, default=20.0, help="seconds before the step")
    group.add_argument("--step-hold", type=float, default=60.0, help="seconds the load stays at --step-to")


class StepShape(LoadTestShape):
    """``--step-from`` users for ``--step-at`` seconds, then ``--step-to`` users for ``--step-hold`` seconds.

    Each level's users are all started within a second; the run ends after the hold.
    """

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        if options is None:
            return None
        elapsed = self.get_run_time()
        if elapsed < options.step_at:
            return options.step_from, float(options.step_from)
        if elapsed < options.step_at + options.step_hold:
            return options.step_to, float(options.step_to)
        return None
