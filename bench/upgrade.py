"""A RabbitMQ 3.10 → 4.0 upgrade of the local stack (compose) holding a backlog: `python -m infra upgrade`
against the manual blue-green steps of RabbitMQ's upgrade guide (issue 22), for 10,000 and 100,000 tasks.

Each run brings the local stack up on 3.10 with every worker pool also running the upgrade test's idempotent
task (tests/e2e/test_upgrade.py: one row per run in a SQLite file), the task queues' max lengths raised so
100,000 tasks fit, queues N tasks across player_sync, match_processing and default, and starts a publisher
at 50 tasks/s on the stack's network. Then, on `broker.version: "4.0"`:
- toolkit: `python -m infra upgrade`, timed until it exits 0: green beside blue, the topology, the clients
  switched, blue shovelled to green and removed, the stack's broker again on 4.0, the clients switched back,
  green shovelled to it and removed. The consumers' longest pause is the longest gap between two task runs.
- manual: the guide's steps through the same primitives: green started, the definitions imported, a
  shovel per queue blue → green (on-confirm), timed until blue is empty. The publisher is stopped first (the
  guide moves publishers to green before the drain; done by hand, not timed); the workers stay on blue,
  competing with the shovels. Moving them, and putting green under the stack's name and ports, is left to
  the operator and not timed, so this is a floor, not the same end state.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine  # noqa: E402
from stats import median, table  # noqa: E402

from infra.cli.localstack import LocalStack  # noqa: E402
from infra.ops.upgrade import Step  # noqa: E402
from tests.e2e.harness import REPO, docker, running_stack  # noqa: E402
from tests.e2e.test_upgrade import FOUR, client, effect_workers, start_publisher, upgrade_argv  # noqa: E402
from tests.support.upgrade_load import TASK_QUEUES, backlog_queue, longest_pause, stop_publisher  # noqa: E402

PROJECT = "upgrade-bench"
MANUAL_STEPS = (Step.START_GREEN, Step.TOPOLOGY, Step.SHOVEL, Step.DRAIN)


def big_queues(work: Path) -> Path:
    """The backlog's queues holding 200,000 each (the seed's 1,000 / 5,000 / 10,000 refuse a larger one)."""
    overlay = work / "big-queues.yaml"
    overlay.write_text(
        'vhosts:\n  "/":\n    queues:\n' + "".join(f"      {q}: {{max_length: 200000}}\n" for q in TASK_QUEUES)
    )
    return overlay


def queue_backlog(stack, size: int) -> None:
    app = client(stack)
    with app.producer_or_acquire() as producer:
        for i in range(size):
            app.send_task("migration.record", args=[f"backlog-{i}"], queue=backlog_queue(i), producer=producer)


def toolkit(stack) -> dict[str, float]:
    """`python -m infra upgrade`, run to the end; each step's seconds, from its progress lines."""
    process = subprocess.Popen(
        upgrade_argv(stack),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return step_times(process, "python -m infra upgrade")


def step_times(process: subprocess.Popen, what: str) -> dict[str, float]:
    """Each step's seconds from the progress lines (`upgrade: STEP`) of `process`, run until it exits 0."""
    steps: dict[str, float] = {}
    lines, step, since = [], None, time.monotonic()
    for line in process.stdout:
        lines.append(line)
        if line.startswith(("upgrade: ", "upgraded: ")):
            now = time.monotonic()
            if step:
                steps[step] = now - since
            step, since = line.removeprefix("upgrade: ").strip(), now
    if process.wait(timeout=60) != 0:
        raise RuntimeError(f"{what} failed:\n" + "".join(lines[-40:]))
    return steps


def manual(stack) -> dict[str, float]:
    """The guide's steps, with the toolkit's primitives (each what `docker run`, an import and `rabbitmqctl
    set_parameter shovel` would do by hand); the publisher already moved."""
    local = LocalStack(
        "local",
        stack.local.out,
        stack.project,
        secrets=stack.work / "secrets.yaml",
        overlays=(FOUR, *stack.local.overlays),
    )
    local.render()  # green's files: the new version's
    upgrader = local.upgrader(progress=lambda line: None, timeout_s=3600)
    deadline, steps = time.monotonic() + 3600, {}
    for step in MANUAL_STEPS:
        since = time.monotonic()
        upgrader.do(step, deadline)
        steps[step.value] = time.monotonic() - since
    return steps


def one_run(size: int, how: str) -> tuple[float, float, dict[str, float]]:
    """(seconds, consumers' longest pause, the toolkit's seconds per step) of one upgrade of a stack holding
    `size` tasks."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    effects = tmp / f"{PROJECT}-effects"
    shutil.rmtree(effects, ignore_errors=True)
    effects.mkdir(mode=0o777)
    effects.chmod(0o777)  # the workers' user writes there
    with running_stack(None, {}, PROJECT, prepare=effect_workers(effects), overlays=(big_queues(tmp),)) as stack:
        publisher = None
        try:
            queue_backlog(stack, size)
            publisher = start_publisher(stack, effects)
            if how == "manual":
                stop_publisher(publisher, effects)
            started = time.time()
            steps = toolkit(stack) if how == "toolkit" else manual(stack)
            finished = time.time()
            return finished - started, longest_pause(effects / "db", started, finished), steps
        finally:
            if publisher:
                docker("rm", "-f", publisher, check=False)
            docker("rm", "-f", f"{PROJECT}-upgrade-green", check=False)  # the manual run leaves green
            docker("volume", "rm", f"{PROJECT}-upgrade-green-data", check=False)
            docker("network", "rm", f"{PROJECT}-upgrade", check=False)
            shutil.rmtree(effects, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print(f"{machine()}; {args.runs} run(s) per figure\n")
    rows = []
    for size in args.sizes:
        figures: dict[str, list[tuple[float, float]]] = {"toolkit": [], "manual": []}
        for run in range(args.runs):
            for how in figures:  # interleaved, run by run
                seconds, pause, steps = one_run(size, how)
                each = ", ".join(f"{name} {t:.1f}" for name, t in steps.items())
                print(f"{size:,} {how} run {run + 1}: {seconds:.1f} s, longest pause {pause:.1f} s ({each})")
                figures[how].append((seconds, pause))
        tk, mn = figures["toolkit"], figures["manual"]
        rows.append(
            [
                f"{size:,}",
                f"{median([s for s, _ in tk]):.1f} s",
                f"{median([p for _, p in tk]):.1f} s (max {max(p for _, p in tk):.1f})",
                f"{median([s for s, _ in mn]):.1f} s",
                f"{median([s for s, _ in tk]) / median([s for s, _ in mn]):.1f}×",
            ]
        )
    print(
        table(
            ["tasks queued", "toolkit: upgrade", "toolkit: consumers' longest pause", "manual: blue drained", "ratio"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
