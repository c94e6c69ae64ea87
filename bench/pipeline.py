"""Broker ceiling vs pipeline, on one node in one run (issue 7).

Ceiling: pika, persistent messages with publisher confirms (one at a time, as Celery's confirm_publish
waits for each) into a quorum queue like the task queues, then drained by one consumer with manual acks at
prefetch 1, at the pools' prefetch and at 16. Pipeline: the benchmark's tasks sent by a client configured
as the app is (celery.json, confirms, persistent) and run by the app's real workers (the plan's command
lines, the app's settings: acks late, reject on worker lost). A no-op task on the `background` pool's queue
`default`, and an I/O-bound task (one GET to the fake Riot API answering after 50 ms) on the `matches`
pool's queue `match_processing`, each with the stack's pool settings and with the variants measured (prefetch, and for the no-op
the threads pool beside prefork).

Each variant's worker runs for the whole benchmark with its consumer cancelled; a round publishes n tasks,
then `add_consumer` lets it drain them and `cancel_consumer` stops it again (Celery's remote control).
Rates: publish = messages / time of the publish loop; consume = (n - 1) / (last - first completion),
completions read from the worker's log (ms) or taken at the raw consumer's acks. Every run measures the
ceiling and each variant once, interleaved; the figures are medians of --runs runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pika  # noqa: E402
from harness import FakeRiot, deploy, machine, start_worker, wait_successes, worker_command  # noqa: E402
from stats import median, table  # noqa: E402

RAW_QUEUE = "bench_raw"
LATENCY_S = 0.05


def raw_connection(deployment) -> pika.BlockingConnection:
    user = deployment.rendered.plan.broker.admin_user  # it declares and deletes its own queue
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            deployment.node.ports.amqp,
            deployment.rendered.celery["broker_vhost"],
            pika.PlainCredentials(user, deployment.rendered.password(user)),
        )
    )


def raw_publish(channel, count: int) -> float:
    """msgs/s: persistent, each publish waiting for its confirm."""
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    body = b'{"bench": true}' + b" " * 300  # about a Celery message's body size
    start = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("", RAW_QUEUE, body, props, mandatory=True)
    return count / (time.perf_counter() - start)


def raw_consume(channel, count: int, prefetch: int) -> float:
    """msgs/s from first delivery to last ack, manual acks, one consumer."""
    channel.basic_qos(prefetch_count=prefetch)
    first = last = None
    got = 0
    for method, _, _ in channel.consume(RAW_QUEUE, inactivity_timeout=30):
        if method is None:
            raise RuntimeError(f"raw consume stalled after {got} of {count}")
        if first is None:
            first = time.perf_counter()
        channel.basic_ack(method.delivery_tag)
        got += 1
        if got == count:
            last = time.perf_counter()
            break
    channel.cancel()
    return (count - 1) / (last - first)


def celery_publish(client, task: str, queue: str, count: int, args) -> float:
    start = time.perf_counter()
    with client.producer_or_acquire() as producer:
        for _ in range(count):
            client.send_task(task, args=args, queue=queue, producer=producer)
    return count / (time.perf_counter() - start)


def start_variant(deployment, client, variant: dict):
    """The variant's worker, started once and idle: its consumer is cancelled until a round needs it."""
    name = f"{variant['label']}@bench"
    argv = worker_command(deployment, variant["pool_name"], queues=variant["queue"], name=name, **variant["options"])
    worker = start_worker(deployment, argv, variant["label"])
    control(client, "cancel_consumer", variant["queue"], name)
    return worker


def control(client, command: str, queue: str, name: str) -> None:
    replies = getattr(client.control, command)(queue, destination=[name], reply=True, timeout=20, limit=1)
    if not replies:
        raise RuntimeError(f"{command} {queue}: no reply from {name}")


def celery_round(client, worker, variant: dict, tag: str, count: int) -> tuple[float, float]:
    """(publish msgs/s, worker tasks/s): publish `count` tasks while the worker does not consume, then let it
    consume (add_consumer) and time its drain from its first to its last completion."""
    args = (tag,) if variant["task"] == "bench.noop" else (tag, variant["url"])
    published = celery_publish(client, variant["task"], variant["queue"], count, args)
    name = f"{variant['label']}@bench"
    control(client, "add_consumer", variant["queue"], name)
    try:
        times = wait_successes(worker, variant["task"], tag, count, timeout=300)
    finally:
        control(client, "cancel_consumer", variant["queue"], name)
    times = sorted(times)[:count]
    return published, (count - 1) / (times[-1] - times[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--noop", type=int, default=1000, help="messages / no-op tasks per run")
    parser.add_argument("--io", type=int, default=200, help="I/O-bound tasks per run, stack's pool")
    args = parser.parse_args(argv)

    riot = FakeRiot().start()
    riot.slow(r"^/bench/", LATENCY_S)
    url = riot.base_url.format(routing="europe") + "/bench/ping"
    deployment, cleanup = deploy(riot)
    try:
        deployment.purge()
        background, matches = deployment.pool("background"), deployment.pool("matches")
        pool_prefetch = background.concurrency * background.prefetch_multiplier
        client = deployment.client_app()
        variants = [
            dict(
                label="noop-stack",
                task="bench.noop",
                queue="default",
                pool_name="background",
                options={},
                count=args.noop,
                what=f"no-op, stack: {background.pool} c={background.concurrency} "
                f"prefetch x{background.prefetch_multiplier}",
                prefetch=pool_prefetch,
            ),
            dict(
                label="noop-pm8",
                task="bench.noop",
                queue="default",
                pool_name="background",
                options={"prefetch_multiplier": 8},
                count=args.noop,
                what=f"no-op, {background.pool} c={background.concurrency} prefetch x8",
                prefetch=background.concurrency * 8,
            ),
            # The pool type, at the stack's prefetch: no pipe to a child process per task. (solo c=1 was
            # measured too, 0.30 of raw at its prefetch 1, and left out for the suite's 15 minutes: RESULTS.md)
            dict(
                label="noop-threads",
                task="bench.noop",
                queue="default",
                pool_name="background",
                options={"pool": "threads"},
                count=args.noop,
                what=f"no-op, threads c={background.concurrency} prefetch x{background.prefetch_multiplier}",
                prefetch=pool_prefetch,
            ),
            dict(
                label="io-stack",
                task="bench.fetch",
                queue="match_processing",
                pool_name="matches",
                options={},
                count=args.io,
                url=url,
                concurrency=matches.concurrency,
                what=f"I/O 50 ms, stack: {matches.pool} c={matches.concurrency} prefetch x{matches.prefetch_multiplier}",
            ),
            dict(
                label="io-threads8",
                task="bench.fetch",
                queue="match_processing",
                pool_name="matches",
                options={"pool": "threads", "concurrency": 8},
                count=args.io * 2,
                url=url,
                concurrency=8,
                what="I/O 50 ms, threads c=8 prefetch x1",
            ),
            dict(
                label="io-threads16",
                task="bench.fetch",
                queue="match_processing",
                pool_name="matches",
                options={"pool": "threads", "concurrency": 16},
                count=args.io * 4,
                url=url,
                concurrency=16,
                what="I/O 50 ms, threads c=16 prefetch x1",
            ),
        ]
        raw_prefetches = sorted({1, pool_prefetch, 16})
        raw = {"publish": [], **{p: [] for p in raw_prefetches}}
        results = {v["label"]: ([], []) for v in variants}
        connection = raw_connection(deployment)
        channel = connection.channel()
        channel.queue_declare(RAW_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()
        workers = {v["label"]: start_variant(deployment, client, v) for v in variants}
        started = time.monotonic()
        for run in range(args.runs):
            # Interleaved: every run measures the ceiling and each pipeline variant once, side by side.
            for prefetch in raw_prefetches:
                raw["publish"].append(raw_publish(channel, args.noop))
                raw[prefetch].append(raw_consume(channel, args.noop, prefetch))
            for variant in variants:
                published, consumed = celery_round(
                    client, workers[variant["label"]], variant, f"r{run}{variant['label']}", variant["count"]
                )
                results[variant["label"]][0].append(published)
                results[variant["label"]][1].append(consumed)
            print(f"run {run + 1}/{args.runs} done at {time.monotonic() - started:.0f} s", file=sys.stderr)
        channel.queue_delete(RAW_QUEUE)
        connection.close()
    finally:
        cleanup()
        riot.close()

    raw_pub = median(raw["publish"])
    print(
        f"## Broker ceiling vs pipeline\n\n{machine()}; {args.runs} runs, medians; node booted from the "
        f"rendered dev stack (quorum queues).\n"
    )
    rows = [["raw AMQP (pika), persistent + confirms", f"{raw_pub:.0f}", "", "", "", ""]]
    for prefetch in raw_prefetches:
        rows.append(
            [f"raw AMQP consume, manual acks, prefetch {prefetch}", "", f"{median(raw[prefetch]):.0f}", "", "", ""]
        )
    for v in variants:
        pub, con = (median(x) for x in results[v["label"]])
        if v["task"] == "bench.noop":
            ceiling = median(raw[pool_prefetch])
            vs = f"{con / ceiling:.2f} of raw at prefetch {pool_prefetch}"
            if v["prefetch"] in raw and v["prefetch"] != pool_prefetch:
                vs += f"; {con / median(raw[v['prefetch']]):.2f} of raw at prefetch {v['prefetch']}"
            goal = "≥ 0.5"
        else:
            ideal = v["concurrency"] / LATENCY_S
            vs = f"{con / ideal:.2f} of c/latency = {ideal:.0f}/s"
            goal = "≥ 0.8"
        rows.append([v["what"], f"{pub:.0f}", f"{con:.1f}", f"{pub / raw_pub:.2f}", vs, goal])
    print(table(["what", "publish msgs/s", "consume tasks/s", "publish / raw", "consume ratio", "goal"], rows))


if __name__ == "__main__":
    main()
