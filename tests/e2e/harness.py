"""The `local` stack on the real Docker engine, for tests/e2e and bench/: images from
scripts/build-local-images, the compose file `render --compose` writes, a fake Riot API container on the
stack's own network. The runner talks only to the 127.0.0.1 ports the stack publishes; the containers talk
only to each other."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pika
import requests
import yaml

from infra.cli.localstack import LocalStack, sample_overlay
from infra.definition.load import load_definition, require
from infra.plan.services import broker_hosts
from infra.render.images import app_image_name
from tests.support.rabbit_node import ManagementAPI, free_ports, own_port
from tests.support.rabbit_series import current as current_series
from tests.support.stacks import TEST_SECRETS
from tests.support.waiting import WaitTimeout, wait_for

REPO = Path(__file__).resolve().parents[2]
# RABBITMQ_SERIES=4.0: the local stack's broker on the trixie image (scripts/build-local-images builds it)
SERIES_OVERLAYS = {"4.0": (REPO / "stacks" / "overlays" / "rabbitmq-4.0.yaml",)}
PLAYERS = [  # every match id is unique across players: the fake serves the fixture under each id
    {
        "game_name": "Flow",
        "tag_line": "EUW",
        "puuid": "puuid-e2e-flow",
        "match_ids": [f"EUW1_1{i:03d}" for i in range(6)],
    },
    {
        "game_name": "Crash",
        "tag_line": "EUW",
        "puuid": "puuid-e2e-crash",
        "match_ids": [f"EUW1_2{i:03d}" for i in range(8)],
    },
    {
        "game_name": "Kill",
        "tag_line": "EUW",
        "puuid": "puuid-e2e-kill",
        "match_ids": [f"EUW1_3{i:03d}" for i in range(8)],
    },
    {
        "game_name": "Restart",
        "tag_line": "EUW",
        "puuid": "puuid-e2e-restart",
        "match_ids": [f"EUW1_4{i:03d}" for i in range(8)],
    },
]


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr}")
    return result.stdout.strip()


DIST_PORT = 25672  # Erlang distribution inside the broker containers: RabbitMQ's default (5672 + 20000)


def docker_exec(container: str, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`argv` run in `container` (with its environment, plus `env`), its result whatever the exit status."""
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return subprocess.run(["docker", "exec", *flags, container, *argv], capture_output=True, text=True, timeout=180)


DIST_FAILED = "Erlang distribution failed"  # a CLI tool's diagnostics when its connection to the node failed


def cli_run(container: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A RabbitMQ CLI tool run in `container`, again every 2 s while its connection to the node fails, for up to
    `timeout`: a loaded machine can hold a TLS distribution handshake past the tool's setup time (seen once in
    a clean-clone run, right after the node's own health check, the same tool, had passed). Its last result."""
    runs: list[subprocess.CompletedProcess] = []

    def connected() -> bool:
        runs.append(docker_exec(container, *argv))
        return DIST_FAILED not in runs[-1].stderr

    try:
        wait_for(connected, timeout, f"{argv[0]} connected in {container}", interval=2)
    except WaitTimeout:
        pass  # the caller asserts on the last run, which says why
    return runs[-1]


def amqps_parameters(local: LocalStack, port: int) -> pika.ConnectionParameters:
    """A TLS stack's AMQPS port as its admin: the rendered CA trusted, the app's client certificate presented."""
    tls = local.out / "tls"
    context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    context.load_cert_chain(str(tls / "client.pem"), str(tls / "client.key"))
    admin = local.plan.broker.admin_user
    password = yaml.safe_load(local.secrets.read_text())[local.plan.topology.password_key(admin)]
    return pika.ConnectionParameters(
        "127.0.0.1",
        port,
        "/",
        pika.PlainCredentials(admin, password),
        ssl_options=pika.SSLOptions(context, "127.0.0.1"),
    )


def bridge_of(network: str) -> str:
    """The Linux bridge of Docker network `network`: `br-` and the network id's first 12 characters."""
    return "br-" + docker("network", "inspect", "-f", "{{.Id}}", network)[:12]


@dataclass
class E2EStack:
    local: LocalStack
    work: Path
    ports: dict
    secrets: dict
    fake_riot: str  # the fake Riot API's container
    up_seconds: float = 0.0  # from nothing to every service healthy

    @property
    def project(self) -> str:
        return self.local.project

    def container(self, service: str) -> str:
        return self.local.container(service)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['web']}{path}"

    @property
    def management(self) -> ManagementAPI:
        return ManagementAPI(
            f"http://127.0.0.1:{self.ports['management']}/api", "admin", self.secrets["rabbitmqAdminPassword"]
        )

    def sync(self, player: dict) -> str:
        response = requests.post(
            self.url("/api/players/sync"),
            timeout=30,
            json={"game_name": player["game_name"], "tag_line": player["tag_line"], "region": "euw1"},
        )
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    def job(self, job_id: str) -> dict:
        return requests.get(self.url(f"/api/jobs/{job_id}"), timeout=30).json()

    def wait_job(self, job_id: str, timeout: float = 240) -> dict:
        def done():
            try:
                job = self.job(job_id)
            except requests.RequestException:  # the web may be reconnecting to a restarting broker
                return None
            return job if job["status"] in ("complete", "failed") else None

        return wait_for(done, timeout, f"job {job_id} settled", interval=1.0)

    def sql(self, query: str) -> list[str]:
        out = docker("exec", self.container("postgres"), "psql", "-U", "app", "-d", "app", "-tAc", query)
        return out.splitlines()

    def count(self, table: str, where: str = "") -> int:
        return int(self.sql(f"SELECT COUNT(*) FROM {table} {where}")[0])


def fake_riot(project: str, name: str, config_dir: Path, config: dict) -> None:
    """The sample Riot API serving `config`'s players (and delays) as a container on the stack's network."""
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps(config))
    config_dir.chmod(0o755)
    (config_dir / "config.json").chmod(0o644)
    app_image = app_image_name(require(load_definition(stack="local")).app, REPO)
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        f"{project}_stack",
        "--network-alias",
        "fake-riot",
        "-v",
        f"{config_dir}:/e2e-config:ro",
        app_image,
        "python",
        "-m",
        "sample_riot",
        "--config",
        "/e2e-config/config.json",
    )


class ImagesMissing(Exception):
    pass


def require_images(stack: str, overlays: tuple = ()) -> None:
    definition = require(load_definition(stack=stack, overlays=overlays))
    images = [
        definition.broker.image,
        definition.app.database.image,
        definition.app.base_image,
        app_image_name(definition.app, REPO),
    ]
    missing = [i for i in images if subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode]
    if missing:  # fail loudly: a skipped end-to-end test proves nothing
        raise ImagesMissing(f"local images missing ({', '.join(missing)}): run `make images` (make test does)")


def free_port_blocks(count: int, width: int, attempts: int = 200) -> list[int]:
    """`count` ports p whose p .. p + width - 1 are all free on 127.0.0.1 (node i of a cluster publishes
    each port + i), and distinct blocks."""
    found: list[int] = []
    for _ in range(attempts):
        if len(found) == count:
            return found
        (start,) = free_ports(1)
        block = range(start, start + width)
        if (
            block[-1] < 65536
            and all(own_port(p) for p in block)
            and not any(p in range(f, f + width) for f in found for p in block)
            and all(_bindable(p) for p in block)
        ):
            found.append(start)
    raise RuntimeError(f"no {count} free blocks of {width} ports after {attempts} attempts")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@contextlib.contextmanager
def running_stack(
    players: list[dict] | None, slow: dict[str, float], project: str, nodes: int = 1, prepare=None, overlays=()
):
    """The local stack up and healthy, with a fake Riot API serving `players`; everything removed after.
    `nodes`: the broker's nodes (`broker.nodes`). `players=None`: as on a fresh clone, no Riot key, and the
    stack's own sample Riot API service (`make local`'s default). `prepare(local)`: runs between the render
    and the start (bench/local_stack.py changes the compose file there). `overlays`: laid over the stack
    after the test's own."""
    series_overlays = SERIES_OVERLAYS.get(current_series().name, ())
    require_images("local", series_overlays)
    amqp, management, prometheus = free_port_blocks(3, nodes)
    taken = {start + i for start in (amqp, management, prometheus) for i in range(nodes)}
    web = next(p for p in free_ports(len(taken) + 1) if p not in taken)
    ports = {"amqp": amqp, "management": management, "prometheus": prometheus, "web": web}
    work = Path(tempfile.mkdtemp(prefix="e2e-"))
    work.chmod(0o755)
    overlay = work / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "broker": {
                    "nodes": nodes,
                    "listeners": {
                        "bind": "127.0.0.1",
                        "amqp": amqp,
                        "management": management,
                        "prometheus": prometheus,
                    },
                },
                "app": {
                    "web": {"port": web},
                    **({} if players is None else {"riot_api_base_url": "http://fake-riot:8080/{routing}"}),
                },
            }
        )
    )
    secrets_file = work / "secrets.yaml"
    secrets_file.write_text(yaml.safe_dump({} if players is None else {"riotApiKey": TEST_SECRETS["riotApiKey"]}))
    secrets_file.chmod(0o600)
    sample = sample_overlay("local", work / "out", secrets_file)
    assert (sample is None) == (players is not None)
    local = LocalStack(
        "local",
        work / "out",
        project,
        secrets=secrets_file,
        overlays=(*series_overlays, overlay, *overlays) + ((sample,) if sample else ()),
    )
    fake = f"{project}-fake-riot"
    try:
        local.render()
        if prepare:
            prepare(local)
        secrets = yaml.safe_load(secrets_file.read_text())
        if players is not None:
            local.up(*broker_hosts(nodes), "postgres")  # creates the stack's network
            fake_riot(project, fake, work / "riot", {"players": players, "slow": slow})
        started = time.monotonic()
        local.start(progress=lambda line: print(f"[e2e up] {line}", flush=True))
        yield E2EStack(local, work, ports, secrets, fake, time.monotonic() - started)
    finally:
        if os.environ.get("E2E_KEEP_LOGS"):
            print(local.compose("logs", "--no-color", "--tail=80", check=False).stdout)
        docker("rm", "-f", fake, check=False)
        local.down(volumes=True)
        shutil.rmtree(work, ignore_errors=True)
