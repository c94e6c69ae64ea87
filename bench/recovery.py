"""Recovery (issue 7): how long a task waits after its worker is SIGKILLed, and how long after a broker
restart the first task completes, on the deployment of the reliability tests.

Worker kill: two `matches` workers (the plan's command line, two node names); a task that marks its start
and sleeps; SIGKILL to the whole group of the worker running it; time from the kill to the task's start on
the other worker (acks late + reject on worker lost: the broker requeues the unacked delivery when the
connection drops). Broker restart: `rabbitmqctl shutdown`, 0 to 8 s more of outage (varied from run to run),
boot again; from the node answering again
(await_startup) to the first task completing, sent right then. Two workers side by side: one on the app's
settings (config/consumer.py: reconnect every second) and one with Celery's stock consumer (2, 4 ... 30 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import FakeRiot, deploy, machine, start_worker, wait_for, wait_successes, worker_command  # noqa: E402
from stats import median, percentile, table  # noqa: E402


def marks(path: Path, tag: str) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    return [(w, float(t)) for line in path.read_text().splitlines() for g, w, t in [line.split()] if g == tag]


def worker_kill(deployment, client, runs: int) -> list[float]:
    mark_file = Path(tempfile.mkdtemp(prefix="bench-marks-")) / "marks"
    mark_file.touch(mode=0o666)
    workers = {}
    for label in ("matches-a", "matches-b"):
        workers[label] = start_worker(deployment, worker_command(deployment, "matches", name=f"{label}@%h"), label)
    delays = []
    for run in range(runs):
        tag = f"kill{run}"
        client.send_task("bench.hold", args=(tag, 3.0, str(mark_file)), queue="match_processing")
        first = wait_for(lambda: marks(mark_file, tag), 30, f"{tag} started")[0][0]
        killed_at = time.time()
        workers[first].kill()
        again = wait_for(lambda: marks(mark_file, tag)[1:], 60, f"{tag} restarted")[0]
        assert again[0] != first, f"{tag} restarted on the killed worker {first}?"
        delays.append(again[1] - killed_at)
        workers[first] = start_worker(deployment, worker_command(deployment, "matches", name=f"{first}@%h"), first)
    for worker in workers.values():
        worker.stop()
    return delays


# Celery's stock consumer retries at fixed offsets (0, 2, 6, 12, 20, 30 s ... after the loss), so how long
# it lags the broker depends on where the outage ends between two of them; runs add 0 to 8 s to the outage.
OUTAGE_EXTRA_S = (0, 2, 4, 6, 8)


def broker_restart(deployment, client, runs: int) -> tuple[dict, list[float], list[float]]:
    # The app's settings on `default`, Celery's stock consumer on `maintenance` (both of the background pool).
    app_worker = start_worker(
        deployment, worker_command(deployment, "background", queues="default", name="bg-app@%h"), "bg-app"
    )
    stock_worker = start_worker(
        deployment,
        worker_command(deployment, "background", queues="maintenance", name="bg-stock@%h"),
        "bg-stock",
        env={"DJANGO_SETTINGS_MODULE": "benchsettings"},
    )
    result = {"app": [], "stock": []}
    downtime, boot = [], []
    for run in range(runs):
        tag = f"restart{run}"
        down_at = time.time()
        deployment.node.stop()
        time.sleep(OUTAGE_EXTRA_S[run % len(OUTAGE_EXTRA_S)])  # outages of several lengths: see below
        booting_at = time.time()
        deployment.node.start()
        back_at = time.time()
        downtime.append(back_at - down_at)
        boot.append(back_at - booting_at)
        for queue in ("default", "maintenance"):
            client.send_task("bench.noop", args=(tag,), queue=queue)
        for key, worker in (("app", app_worker), ("stock", stock_worker)):
            done = wait_successes(worker, "bench.noop", tag, 1, timeout=120)[0]
            result[key].append(done - back_at)
    app_worker.stop()
    stock_worker.stop()
    return result, downtime, boot


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=9)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args(argv)
    riot = FakeRiot().start()
    deployment, cleanup = deploy(riot)
    try:
        deployment.purge()
        client = deployment.client_app()
        kills = worker_kill(deployment, client, args.kills)
        restarts, downtime, boot = broker_restart(deployment, deployment.client_app(), args.restarts)
    finally:
        cleanup()
        riot.close()
    matches = deployment.pool("matches")
    print(f"## Recovery\n\n{machine()}; node booted from the rendered dev stack.\n")
    rows = [
        [
            f"worker SIGKILL → task restarted on the other worker ({matches.pool} c={matches.concurrency})",
            f"{median(kills):.2f} s",
            f"{percentile(kills, 95):.2f} s",
            f"{max(kills):.2f} s",
            len(kills),
            "< 5 s",
        ],
        [
            "broker restart → first task done, app settings (reconnect every 1 s)",
            f"{median(restarts['app']):.2f} s",
            f"{percentile(restarts['app'], 95):.2f} s",
            f"{max(restarts['app']):.2f} s",
            len(restarts["app"]),
            "< 5 s",
        ],
        [
            "broker restart → first task done, Celery's stock consumer (2, 4 … 30 s)",
            f"{median(restarts['stock']):.2f} s",
            f"{percentile(restarts['stock'], 95):.2f} s",
            f"{max(restarts['stock']):.2f} s",
            len(restarts["stock"]),
            "(before)",
        ],
        [
            "broker down (shutdown, 0–8 s, boot to await_startup)",
            f"{median(downtime):.1f} s",
            f"{percentile(downtime, 95):.1f} s",
            f"{max(downtime):.1f} s",
            len(downtime),
            "",
        ],
    ]
    print(table(["measure", "median", "p95", "max", "n", "goal"], rows))
    print(
        "\nper run (s): kill "
        + ", ".join(f"{x:.2f}" for x in kills)
        + "; restart app "
        + ", ".join(f"{x:.2f}" for x in restarts["app"])
        + "; restart stock "
        + ", ".join(f"{x:.2f}" for x in restarts["stock"])
        + "; boot "
        + ", ".join(f"{x:.1f}" for x in boot)
    )


if __name__ == "__main__":
    main()
