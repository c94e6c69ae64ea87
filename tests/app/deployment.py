"""The app deployed on real parts for the reliability tests: a RabbitMQ node booted from the rendered dev
stack (with tests/app/data/reliability.yaml over it), the web process (`bin/web`: migrate + gunicorn) and
Celery workers started with exactly the plan's command lines, a fake Riot API, one SQLite file shared by all.

Every wait is bounded; every process is started in its own session and killed with its group."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import requests
from celery import Celery

from config.topology import celery_settings
from tests.support.rabbit_node import Ports, RabbitNode, free_ports
from tests.support.stacks import Rendered, render_for_node
from tests.support.waiting import WaitTimeout, wait_for  # noqa: F401 (the tests import them from here)

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "app"
OVERLAY = Path(__file__).resolve().parent / "data" / "reliability.yaml"
VENV_BIN = Path(sys.executable).parent


class TunedNode(RabbitNode):
    """The node checks consumer timeouts on its channel tick, every 60 s by default; every second here, so a
    12 s consumer timeout acts after 12-13 s."""

    @property
    def env(self) -> dict[str, str]:
        env = dict(super().env)
        env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] += " -rabbit channel_tick_interval 1000"
        return env


def render_for_tests(ports: Ports, overlays: tuple = ()) -> Rendered:
    return render_for_node(ports, stack="dev", overlays=(OVERLAY, *overlays))


def celery_argv(command: tuple[str, ...]) -> list[str]:
    """The plan's command as is; `celery` from this interpreter's venv, or `python -m celery` without one."""
    argv = list(command)
    if argv[0] == "celery" and not (VENV_BIN / "celery").exists():
        argv[:1] = [sys.executable, "-m", "celery"]
    return argv


class Process:
    """A child in its own session (process group), its output in a log file."""

    def __init__(self, argv: list[str], env: dict, log: Path, cwd: Path = APP_DIR):
        self.argv, self.log = argv, log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL to the whole group: no chance to ack, requeue or say goodbye."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (Celery's warm shutdown), SIGKILL to the group after `timeout`; never leaves a process."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # whatever is left in the group (pool children)
        except ProcessLookupError:
            pass
        if self.popen.poll() is None:
            self.popen.wait(timeout=30)


def print_logs_if_failed(request, processes) -> None:
    """After a failed test (tests/app/conftest.py records `rep_call`), the tail of each process's log."""
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for process in processes:
            print(f"--- {process.log.name}\n{process.output()[-4000:]}")


class Deployment:
    def __init__(self, node: RabbitNode, rendered: Rendered, riot, workdir: Path):
        self.node, self.rendered, self.riot, self.workdir = node, rendered, riot, workdir
        self.db_path = workdir / "db.sqlite3"
        self.web_port = free_ports(1)[0]
        declarations = rendered.celery
        # Each service connects as its own user (web, beat, worker-<pool>), as in the containers.
        self.broker_urls = {service: self.url_for(user) for service, user in declarations["broker_users"].items()}
        self.broker_url = self.broker_urls["web"]  # the publisher's, for the test's own client
        self.env = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": "reliability-tests-only",
            "DJANGO_ALLOWED_HOSTS": "web.test,127.0.0.1",
            "DJANGO_DATA_DIR": str(workdir),
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_TOPOLOGY_FILE": str(rendered.config_dir / "celery.json"),
            "RIOT_API_KEY": "RGAPI-test",
            "RIOT_API_BASE_URL": riot.base_url,
            "WEB_PORT": str(self.web_port),
            "WEB_CONCURRENCY": "2",
        }
        self.processes: list[Process] = []
        self._count = 0

    def url_for(self, user: str) -> str:
        b = self.rendered.plan.broker  # amqps:// on the AMQPS port when the stack turns TLS on
        return (
            f"{b.client_scheme}://{quote(user, safe='')}:{quote(self.rendered.password(user), safe='')}@"
            f"127.0.0.1:{b.client_port}/{quote(self.rendered.celery['broker_vhost'], safe='')}"
        )

    @property
    def admin_url(self) -> str:
        """The deployer's user: for the tests' own housekeeping (purging queues), never for the app."""
        return self.url_for(self.rendered.plan.broker.admin_user)

    # -- processes ---------------------------------------------------------------------------------
    def _log(self, name: str) -> Path:
        self._count += 1
        return self.workdir / f"{self._count:02d}-{name}.log"

    def start_web(self) -> Process:
        web = Process([str(APP_DIR / "bin" / "web")], self.env, self._log("web"))
        self.processes.append(web)
        wait_for(lambda: not web.alive() or self.healthcheck() == 0, 90, "bin/web healthy", interval=0.5)
        assert web.alive(), web.output()[-3000:]
        return web

    def healthcheck(self) -> int:
        return subprocess.run(
            [str(APP_DIR / "bin" / "healthcheck")], env=self.env, capture_output=True, timeout=30
        ).returncode

    def pool(self, name: str):
        return next(w for w in self.rendered.plan.workers if w.name == name)

    def start_worker(self, pool: str) -> Process:
        return self.start_celery(self.pool(pool).command, f"worker-{pool}", " ready.", service=f"worker-{pool}")

    def start_celery(self, command, name: str, ready: str, service: str | None = None) -> Process:
        """A celery command from app/ as `service`'s broker user (default: `self.env`'s, web's), running once
        `ready` is in its output."""
        env = self.env if service is None else {**self.env, "CELERY_BROKER_URL": self.broker_urls[service]}
        process = Process(celery_argv(tuple(command)), env, self._log(name))
        self.processes.append(process)
        try:
            wait_for(lambda: not process.alive() or ready in process.output(), 90, f"{name} ready", interval=0.2)
        except WaitTimeout:
            raise WaitTimeout(f"{name} not ready:\n{process.output()[-3000:]}") from None
        assert process.alive(), process.output()[-3000:]
        return process

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=APP_DIR, env=self.env, capture_output=True, text=True, timeout=120
        )

    def stop_workers(self) -> None:
        for process in self.processes:
            if process.argv[0] != str(APP_DIR / "bin" / "web"):
                process.stop()

    def after_test(self, request) -> None:
        """A test's end: its processes' logs printed if it failed, the workers it started stopped."""
        print_logs_if_failed(request, self.processes)
        self.stop_workers()
        self.processes = [p for p in self.processes if p.alive()]

    def close(self) -> None:
        for process in self.processes:
            process.stop(timeout=10)

    # -- the API -----------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def sync(self, game_name: str, tag_line: str, region: str) -> str:
        response = requests.post(
            self.url("/api/players/sync"),
            timeout=30,
            json={"game_name": game_name, "tag_line": tag_line, "region": region},
        )
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    def job(self, job_id: str) -> dict:
        return requests.get(self.url(f"/api/jobs/{job_id}"), timeout=30).json()

    def wait_job(self, job_id: str, timeout: float, **expected) -> dict:
        def settled():
            job = self.job(job_id)
            return (
                job
                if job["status"] in ("complete", "failed") and all(job[k] == v for k, v in expected.items())
                else None
            )

        try:
            return wait_for(settled, timeout, f"job {job_id} settled with {expected}", interval=0.5)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; last: {self.job(job_id)}") from None

    # -- the database and the broker, read directly ------------------------------------------------
    def query(self, sql: str, *params) -> list[tuple]:
        connection = sqlite3.connect(self.db_path, timeout=30)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def client_app(self) -> Celery:
        """A Celery client configured as the app is, from the same celery.json, for sending tasks."""
        app = Celery("reliability-client", broker=self.broker_url, set_as_current=False)
        app.conf.update(celery_settings(self.rendered.celery))
        app.conf.broker_transport_options = {"confirm_publish": True}
        return app

    def parked(self) -> list[dict]:
        result = self.manage("dead_letters", "list", "--json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def purge(self) -> None:
        app = self.client_app()
        with app.connection_for_write(url=self.admin_url) as connection:
            channel = connection.channel()
            for queue in [*self.rendered.celery["task_queues"], *self.rendered.celery["dead_letter"]["parking_queues"]]:
                channel.queue_purge(queue["name"])
            channel.close()


def deploy(riot, overlays: tuple = ()):
    """(deployment, cleanup): a booted node, the database migrated and the web up. `overlays`: laid over
    the reliability definition (e.g. TLS on)."""
    ports = Ports.pick()
    rendered = render_for_tests(ports, overlays)
    node = TunedNode(rendered.config_dir, ports, tls_only=not rendered.plan.broker.plain)
    workdir = Path(tempfile.mkdtemp(prefix="app-deployment-"))
    deployment = Deployment(node, rendered, riot, workdir)

    def cleanup():
        try:
            deployment.close()
        finally:
            node.close()
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(rendered.config_dir.parent, ignore_errors=True)  # the rendered files

    try:
        node.start()
        deployment.start_web()
    except BaseException:
        cleanup()
        raise
    return deployment, cleanup
