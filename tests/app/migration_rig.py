"""Real parts for the migration tests: a RabbitMQ node booted from the dev stack with
tests/app/data/migration.yaml over it, the app's Celery workers with the `effects` pool's own command line
(plus `-I migrationtasks`), a publisher, and `python -m infra migrate` run as a process of its own, so it can
be SIGKILLed. Every wait is bounded."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

from config.topology import celery_settings
from infra.render.secrets import write_secrets_file
from tests.app.deployment import REPO, Deployment, Process, TunedNode
from tests.support.rabbit_node import Ports
from tests.support.stacks import TEST_SECRETS, Rendered, render_for_node
from tests.support.waiting import wait_for

OVERLAY = Path(__file__).resolve().parent / "data" / "migration.yaml"
TASKS_DIR = Path(__file__).resolve().parent  # migrationtasks.py
QUEUE = "effects"


class _NoRiot:
    base_url = "http://127.0.0.1:9/{routing}"  # the effects pool never calls Riot


class Rig:
    """One broker, rendered once per definition variant (`variant`: YAML laid over migration.yaml)."""

    def __init__(self, workdir: Path, variant: str, ports: Ports | None = None):
        self.workdir = workdir
        self.ports = ports or Ports.pick()
        self.db = workdir / "effects.sqlite3"
        self.secrets = workdir / "secrets.yaml"
        write_secrets_file(self.secrets, {**TEST_SECRETS, "workerEffectsPassword": "worker-effects-password"})
        self.rendered = self.render(variant)
        self.node = TunedNode(self.rendered.config_dir, self.ports)
        self.app = Deployment(self.node, self.rendered, _NoRiot(), workdir)
        self.app.env.update({"PYTHONPATH": str(TASKS_DIR), "MIGRATION_DB": str(self.db)})
        self.processes: list[Process] = []

    def variant_file(self, variant: str) -> Path:
        path = Path(tempfile.mkstemp(prefix="variant-", suffix=".yaml", dir=self.workdir)[1])
        path.write_text(variant)
        return path

    def render(self, variant: str) -> Rendered:
        passwords = {**TEST_SECRETS, "workerEffectsPassword": "worker-effects-password"}
        return render_for_node(
            self.ports, stack="dev", overlays=(OVERLAY, self.variant_file(variant)), passwords=passwords
        )

    # -- processes
    def stop_workers(self) -> None:
        for process in self.processes:
            if "worker-" in process.log.name:
                process.stop()

    def start_workers(self, rendered: Rendered, pool: str = QUEUE) -> Process:
        """The pool's worker with `rendered`'s celery.json (a deploy re-creates workers with the new one)."""
        self.app.env["CELERY_TOPOLOGY_FILE"] = str(rendered.config_dir / "celery.json")
        command = next(w for w in rendered.plan.workers if w.name == pool).command
        worker = self.app.start_celery(
            (*command, "-I", "migrationtasks"), f"worker-{pool}", " ready.", service=f"worker-{pool}"
        )
        self.processes.append(worker)
        return worker

    def overlays(self, variant: str) -> tuple[Path, ...]:
        """What lies over the dev stack for `variant` on this node: its ports, migration.yaml, the variant."""
        return self.rendered.config_dir.parent / "ports.yaml", OVERLAY, self.variant_file(variant)

    def migrate_process(self, variant: str, *extra: str) -> Process:
        argv = [
            sys.executable,
            "-m",
            "infra",
            "migrate",
            "--stack",
            "dev",
            *(arg for path in self.overlays(variant) for arg in ("--overlay", str(path))),
            "--secrets",
            str(self.secrets),
            *extra,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = Process(argv, env, self.workdir / f"migrate-{time.monotonic_ns()}.log", cwd=REPO)
        self.processes.append(process)
        return process

    def migrate(self, variant: str, timeout: float = 240, *extra: str) -> str:
        process = self.migrate_process(variant, *extra)
        wait_for(lambda: not process.alive(), timeout, "migrate finished", interval=0.5)
        assert process.popen.returncode == 0, process.output()[-4000:]
        return process.output()

    def apply_topology(self, rendered: Rendered) -> None:
        """`rendered`'s definitions.json POSTed to the broker: what `pulumi up` (or `make local`) does after
        migrating, e.g. the pool's user allowed to read its renamed queue."""
        api = self.api
        response = api.session.post(
            f"{api.base}/definitions",
            timeout=120,
            headers={"Content-Type": "application/json"},
            data=(rendered.config_dir / "definitions.json").read_bytes(),
        )
        assert response.status_code in (200, 201, 204), response.text

    def close(self) -> None:
        for process in self.processes:
            process.stop(timeout=10)
        self.node.close()

    # -- the broker, read as the admin
    @property
    def api(self):
        return self.node.api("admin", TEST_SECRETS["rabbitmqAdminPassword"])

    def queue(self, name: str, vhost: str = "%2F") -> dict | None:
        response = self.api.session.get(f"{self.api.base}/queues/{vhost}/{name}", timeout=30)
        return response.json() if response.status_code == 200 else None

    def queue_names(self) -> set[str]:
        return {q["name"] for q in self.api.get("queues")}

    def bindings(self, name: str) -> set[tuple[str, str]]:
        return {(b["source"], b["routing_key"]) for b in self.api.get(f"queues/%2F/{name}/bindings") if b["source"]}

    def parked(self) -> int:
        """The parking queue's messages, exact (AMQP passive declare; the management statistics lag)."""
        with pika.BlockingConnection(self.node.amqp_params("/", "admin", TEST_SECRETS["rabbitmqAdminPassword"])) as c:
            return c.channel().queue_declare("dead_letters", passive=True).method.message_count

    # -- tasks and their effects
    def client(self, rendered: Rendered):
        app = self.app.client_app()
        app.conf.update(celery_settings(rendered.celery))  # `rendered`'s, not the deployment's first render
        app.conf.broker_transport_options = {"confirm_publish": True}
        return app

    def publish(self, rendered: Rendered, tags, seconds: float = 0.0, queue: str = QUEUE) -> None:
        app = self.client(rendered)
        with app.producer_or_acquire() as producer:
            for tag in tags:
                app.send_task("migration.record", args=[tag, seconds], queue=queue, producer=producer)

    def effects(self) -> tuple[set[str], int]:
        """(the tags whose effect is written, how many runs there were)."""
        if not self.db.exists():
            return set(), 0
        connection = sqlite3.connect(self.db, timeout=60)
        try:
            try:
                return (
                    {tag for (tag,) in connection.execute("SELECT tag FROM effects")},
                    connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                )
            except sqlite3.OperationalError:  # no worker has created the tables yet
                return set(), 0
        finally:
            connection.close()

    def longest_pause(self, after: float) -> float:
        """The longest gap between two consecutive runs since `after` (time.time()): the consumers' pause."""
        connection = sqlite3.connect(self.db, timeout=60)
        try:
            times = [t for (t,) in connection.execute("SELECT at FROM runs WHERE at >= ? ORDER BY at", (after,))]
        finally:
            connection.close()
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


class Publisher(threading.Thread):
    """`rate` tasks a second, tagged `prefix`-<n>, until stopped; each one confirmed by the broker."""

    def __init__(self, rig: Rig, rendered: Rendered, prefix: str, rate: float = 50, queue: str = QUEUE):
        super().__init__(daemon=True)
        self.rig, self.rendered, self.prefix, self.rate, self.queue = rig, rendered, prefix, rate, queue
        self.sent: list[str] = []  # confirmed by the broker
        self.errors: list[str] = []
        self.unconfirmed: set[str] = set()  # failed, maybe enqueued all the same; sent again until confirmed
        self._halt = threading.Event()

    def run(self) -> None:
        app = self.rig.client(self.rendered)
        start = time.monotonic()
        with app.producer_or_acquire() as producer:
            while not self._halt.is_set():
                tag = f"{self.prefix}-{len(self.sent)}"
                try:
                    app.send_task("migration.record", args=[tag], queue=self.queue, producer=producer)
                    self.sent.append(tag)
                except Exception as exc:  # noqa: BLE001 — a publish that failed is not counted as sent
                    self.errors.append(repr(exc))
                    self.unconfirmed.add(tag)
                    time.sleep(0.5)
                delay = start + len(self.sent) / self.rate - time.monotonic()
                if delay > 0:
                    self._halt.wait(delay)

    def stop(self) -> list[str]:
        self._halt.set()
        self.join(timeout=60)
        return self.sent


def kill_when(process: Process, marker: str, timeout: float = 120) -> None:
    """SIGKILL `process` (its group) once `marker` is in its output."""
    wait_for(
        lambda: marker in process.output() or not process.alive(),
        timeout,
        f"{marker!r} in migrate's output",
        interval=0.05,
    )
    assert process.alive(), process.output()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=30)
