"""The blue-green upgrade, RabbitMQ 3.10 → 4.0, on the two paths the toolkit deploys by (issue 22), side by side
in one run: `python -m infra upgrade` on the compose stack (`make local`'s path) against `python -m infra deploy`
on the real Pulumi engine, whose container steps are targeted `pulumi up`s of the program's own resources.

Each run brings the local stack up on 3.10, declares a durable queue the definition does not hold and puts N
confirmed messages on it (nothing consumes it, so both paths move the same messages, blue → green → the stack's
new broker), then times the upgrade to its end, each step from its progress lines (`upgrade: STEP`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine  # noqa: E402
from stats import median, table  # noqa: E402
from upgrade import step_times, toolkit  # noqa: E402

from tests.e2e.harness import running_stack  # noqa: E402
from tests.pulumi.project import DEPLOY_TIMEOUT, new_project  # noqa: E402
from tests.pulumi.test_stack_local import admin_password  # noqa: E402
from tests.pulumi.test_stack_upgrade import FOUR  # noqa: E402

PROJECT = "upgrade-paths-bench"
PROBE = "upgrade_probe"


def fill(port: int, password: str, count: int) -> None:
    """`count` persistent messages on PROBE (declared here), each confirmed by the broker."""
    parameters = pika.ConnectionParameters("127.0.0.1", port, "/", pika.PlainCredentials("admin", password))
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        channel.queue_declare(PROBE, durable=True)
        channel.confirm_delivery()
        for i in range(count):
            channel.basic_publish("", PROBE, f"m-{i}".encode(), pika.BasicProperties(delivery_mode=2))


def timed(run) -> tuple[float, dict[str, float]]:
    started = time.monotonic()
    steps = run()
    return time.monotonic() - started, steps


def compose_run(size: int) -> tuple[float, dict[str, float]]:
    with running_stack(None, {}, PROJECT) as stack:
        fill(stack.ports["amqp"], stack.secrets["rabbitmqAdminPassword"], size)
        return timed(lambda: toolkit(stack))


def pulumi_run(size: int) -> tuple[float, dict[str, float]]:
    project = new_project(Path(tempfile.mkdtemp(prefix="bench-pulumi-upgrade-")))
    try:
        project.deploy(timeout=DEPLOY_TIMEOUT)
        fill(project.ports["amqp"], admin_password(project), size)
        project.edit_stack(FOUR)
        return timed(lambda: step_times(project.start_deploy(), "python -m infra deploy"))
    finally:
        project.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{machine()}; {args.runs} run(s) per path, {args.size:,} messages queued\n")
    paths = {"compose: python -m infra upgrade": compose_run, "Pulumi: python -m infra deploy": pulumi_run}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for run in range(args.runs):
        for name, one_run in paths.items():  # interleaved, run by run
            total, steps = one_run(args.size)
            print(f"{name} run {run + 1}: {total:.1f} s ({', '.join(f'{s} {t:.1f}' for s, t in steps.items())})")
            seconds[name].append(total)
    compose, pulumi = (median(s) for s in seconds.values())
    rows = [[name, f"{median(s):.1f} s ({min(s):.1f}–{max(s):.1f})"] for name, s in seconds.items()]
    print(table(["path", "upgrade, to exit 0"], [*rows, ["ratio Pulumi / compose", f"{pulumi / compose:.2f}"]]))


if __name__ == "__main__":
    main()
