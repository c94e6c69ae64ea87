"""What the pipeline and recovery benchmarks share: the reliability tests' deployment (tests/app/deployment.py:
a node booted from the rendered dev stack, the web, workers started with the plan's command lines, the fake
Riot API, SQLite), with the benchmark's tasks loaded into the workers, and the workers' logs read back."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
for path in (REPO, REPO / "app"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from sample_riot.server import FakeRiot  # noqa: E402
from tests.app.deployment import Deployment, Process, celery_argv, deploy, wait_for  # noqa: E402

__all__ = ["Deployment", "FakeRiot", "deploy", "wait_for", "start_worker", "worker_command", "successes", "machine"]

# The app's log format (config/settings/base.py LOGGING): "2026-11-29 05:01:02,345 INFO celery.app.trace Task
# bench.noop[id] succeeded in 0.001s: 'tag'".
SUCCESS = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+ Task (\S+)\[[^\]]+\] succeeded in "
    r"[0-9.e-]+s: '([^']*)'",
    re.M,
)


def worker_command(
    deployment: Deployment, pool_name: str, *, queues: str | None = None, name: str | None = None, **options
) -> list[str]:
    """The plan's command line for the pool `pool_name`, with the benchmark's tasks included and, where given, other
    `--pool`, `--concurrency`, `--prefetch-multiplier`, `-Q` or `-n` values (the variants measured)."""
    argv = celery_argv(deployment.pool(pool_name).command)
    replace = {
        "-Q": queues,
        "-n": name,
        "--pool": options.get("pool"),
        "--concurrency": options.get("concurrency"),
        "--prefetch-multiplier": options.get("prefetch_multiplier"),
    }
    for flag, value in replace.items():
        if value is not None:
            argv[argv.index(flag) + 1] = str(value)
    return argv + ["-I", "benchtasks"]


def start_worker(deployment: Deployment, argv: list[str], label: str, env: dict | None = None) -> Process:
    """A worker with bench/ on its PYTHONPATH, running once it logs ' ready.'. As the admin: the variants
    measured consume other queues and take other node names than a pool's own user may (docs/security.md)."""
    saved = deployment.env
    deployment.env = {
        **saved,
        "PYTHONPATH": str(BENCH),
        "BENCH_WORKER": label,
        "CELERY_BROKER_URL": deployment.admin_url,
        **(env or {}),
    }
    try:
        return deployment.start_celery(argv, label, " ready.")
    finally:
        deployment.env = saved


def successes(process: Process, task: str, tag: str) -> list[float]:
    """Epoch times (ms precision, local time as logged) of the worker's successes of `task` with this tag."""
    return [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for stamp, name, got in SUCCESS.findall(process.output())
        if name == task and got == tag
    ]


def wait_successes(process: Process, task: str, tag: str, count: int, timeout: float) -> list[float]:
    return wait_for(
        lambda: (lambda s: s if len(s) >= count else None)(successes(process, task, tag)),
        timeout,
        f"{count} successes of {task} {tag}",
        interval=0.1,
    )


def machine() -> str:
    import os
    import platform

    return (
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def now() -> float:
    return time.time()
