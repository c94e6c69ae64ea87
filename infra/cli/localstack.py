"""`make local` / `make local-down`: the rendered compose file brought up on this machine's Docker engine.

`python -m infra.cli.localstack up --stack local [--out DIR]` renders with `--compose`, starts every service
(`docker-compose up -d --no-build`: the images come from scripts/build-local-images), waits until each
container is healthy — printing progress —, applies the rendered topology to the running broker through
its management API (brokers first, then the queue migrations, then the topology, then the app; so a changed TTL or a new queue takes effect in place, without replacing the broker:
definitions.json is read at boot only), and prints the URLs. Objects removed from the definition are not
deleted this way; `pulumi up` does that. With no Riot key in the secrets file, the stack runs on the sample
Riot API (`app.riot_sample`, laid over the stack from an overlay file in the render directory), so a fresh
clone comes up without one. `down [--volumes]` stops the stack, keeping the data volumes
unless asked. The end-to-end tests drive the same functions.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import yaml

from infra.cli import main as cli
from infra.definition.load import load_definition, require
from infra.ops.join_refusals import join_refusals
from infra.paths import SAMPLE_RIOT_PLAYERS
from infra.plan.plan import Plan
from infra.plan.services import broker_hosts, client_host
from infra.plan.stack import Stack
from infra.render.compose import COMPOSE_FILE
from infra.render.secrets import SECRETS_DIR, read_secrets_file

HEALTH_TIMEOUT_S = 300


class ClusterIncomplete(Exception):
    """Not every node joined: the refusals the nodes logged, or the wait's end."""


@dataclass
class LocalStack:
    stack: str
    out: Path  # the render directory: docker-compose.yml and the files it mounts
    project: str  # docker-compose project name: containers are <project>_<service>_1
    secrets: Path | None = None
    overlays: tuple[Path, ...] = ()

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker-compose", "-p", self.project, "-f", str(self.out / COMPOSE_FILE), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def render(self) -> None:
        argv = ["render", "--stack", self.stack, "--out", str(self.out), "--compose"]
        if self.secrets:
            argv += ["--secrets", str(self.secrets)]
        for overlay in self.overlays:
            argv += ["--overlay", str(overlay)]
        status = cli.main(argv)
        if status != cli.ExitStatus.OK:
            raise SystemExit(status)
        for cached in ("loaded", "_admin_password"):  # what was loaded before describes the last render, not this one
            self.__dict__.pop(cached, None)

    def up(self, *services: str) -> None:
        self.compose("up", "-d", "--no-build", "--remove-orphans", *services)  # e.g. riot-sample once a key is set

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def health(self) -> dict[str, str]:
        """service → Docker's health status (or the container state when it has no health check)."""
        ids = self.compose("ps", "-q").stdout.split()
        if not ids:
            return {}
        inspected = json.loads(
            subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True, timeout=60).stdout
        )
        return {
            c["Config"]["Labels"]["com.docker.compose.service"]: (c["State"].get("Health") or {}).get(
                "Status", c["State"]["Status"]
            )
            for c in inspected
        }

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S, progress=print) -> dict[str, str]:
        """Until every service is healthy; bounded. Prints a line whenever a status changes."""
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        last: dict[str, str] = {}
        while True:
            status = self.health()
            if status != last:
                pending = sorted(s for s, h in status.items() if h != "healthy")
                progress(
                    f"[{time.monotonic() - started:5.1f}s] {len(status) - len(pending)}/{len(status)} healthy"
                    + (f"; waiting for {', '.join(f'{s} ({status[s]})' for s in pending)}" if pending else "")
                )
                last = status
            if status and all(h == "healthy" for h in status.values()):
                return status
            if any(h == "unhealthy" for h in status.values()) or time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {time.monotonic() - started:.0f}s: {status}")
            time.sleep(2)

    def start(self, progress=print) -> dict[str, str]:
        """The brokers (and the database, which needs none) first, healthy, then the topology, then everything
        else: a cluster's nodes boot with the admin alone, and the app's users must exist before its services
        log in."""
        nodes = self.plan.broker.nodes
        databases = [s.name for s in self.plan.services if s.role == "database"]
        self.upgrade_broker(progress=progress)  # before `up` re-creates the broker on an image its data refuses
        self.up(*broker_hosts(nodes), *databases)  # the nodes one after another on a cluster (depends_on)
        self.wait_healthy(progress=progress)
        self.wait_cluster(nodes)
        self.migrate_queues()
        self.apply_topology()
        self.up()
        return self.wait_healthy(progress=progress)

    @cached_property
    def loaded(self) -> Stack:
        """The stack as last rendered (`render` forgets the one loaded before)."""
        return Stack.load(stack=self.stack, overlays=self.overlays)

    @property
    def plan(self) -> Plan:
        return self.loaded.plan

    @cached_property
    def _admin_password(self) -> str:
        """The deployer's password, from the secrets file `render` wrote."""
        known = read_secrets_file(self.secrets or SECRETS_DIR / f"{self.plan.environment}.yaml")
        return known[self.plan.topology.password_key(self.plan.broker.admin_user)]

    @property
    def _admin_auth(self) -> str:
        """The deployer's Basic authorization."""
        credentials = f"{self.plan.broker.admin_user}:{self._admin_password}"
        return "Basic " + base64.b64encode(credentials.encode()).decode()

    def migrate_queues(self) -> list:
        """Before the topology is applied: the queues whose type changed or that were renamed get their
        messages moved (`python -m infra migrate`); a definitions import would refuse the new type."""
        from infra.ops.broker_api import ManagementClient

        b = self.plan.broker
        client = ManagementClient(
            b.management_url,
            b.admin_user,
            self._admin_password,
            ca_cert=str(self.out / "tls" / "ca.pem") if b.tls else None,
        )
        return cli.run_migrations(self.plan, client)

    def upgrader(self, progress=print, timeout_s: float = 3600):
        """The blue-green upgrade of this stack's broker (`python -m infra upgrade`), on the last render."""
        from infra.cli.compose_upgrade import ComposeContainers
        from infra.ops.upgrader import Upgrader

        containers = ComposeContainers(
            self.plan, self._admin_password, project=self.project, out=self.out, compose=self.compose
        )
        rendered = self.out / "definitions.json"
        definitions = rendered.read_bytes() if rendered.exists() else b"{}"  # a dry run renders nothing
        return Upgrader(containers, self.plan, definitions, progress=progress, timeout_s=timeout_s)

    def upgrade_broker(self, progress=print) -> list:
        """A version the running broker cannot take in place, carried out blue-green; nothing otherwise (a
        single node: a cluster stack is not upgraded this way yet)."""
        if self.plan.broker.nodes != 1:
            return []
        return self.upgrader(progress).run()

    def management(self, path: str, data: bytes | None = None) -> bytes:
        """A management API call as the admin user (HTTPS verified against the stack's CA with TLS)."""
        b = self.plan.broker
        request = urllib.request.Request(
            f"{b.management_url}/api/{path}",
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json", "Authorization": self._admin_auth},
        )
        context = ssl.create_default_context(cafile=str(self.out / "tls" / "ca.pem")) if b.tls else None
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            if response.status not in (200, 201, 204):
                raise RuntimeError(f"{path} answered {response.status}")
            return response.read()

    def wait_cluster(self, nodes: int, timeout: float = 60) -> None:
        """Until the first node sees every node running: a quorum queue gets its members when it is
        declared, so the topology waits for the whole cluster. Bounded; a node that formed a cluster of
        its own never shows up here, and that is an error, not a wait."""
        deadline = time.monotonic() + timeout
        while True:
            running = sorted(n["name"] for n in json.loads(self.management("nodes")) if n.get("running"))
            if len(running) == nodes:
                return
            # a node refused in the TLS handshake never joins: say why now rather than time out
            refusals = self.join_refusals(nodes)
            if refusals or time.monotonic() > deadline:
                raise ClusterIncomplete(
                    f"the cluster has {len(running)} of {nodes} nodes running"
                    + (": a node was refused:\n  " + "\n  ".join(refusals) if refusals else f" after {timeout:.0f}s")
                    + f" ({', '.join(running)})"
                )
            time.sleep(2)

    def join_refusals(self, nodes: int) -> list[str]:
        """The TLS alerts in the broker containers' logs (`infra.ops.join_refusals`)."""
        logs = {}
        for service in broker_hosts(nodes):
            found = subprocess.run(
                ["docker", "logs", self.container(service)], capture_output=True, text=True, timeout=60, check=False
            )
            logs[service] = found.stdout + found.stderr
        return join_refusals(logs)

    def apply_topology(self) -> None:
        """POST the rendered definitions.json to the broker: creates and updates in place (RabbitMQ's
        definitions import), as the admin user."""
        self.management("definitions", data=(self.out / "definitions.json").read_bytes())

    def down(self, volumes: bool = False) -> None:
        self.compose("down", *(["--volumes"] if volumes else []), "--remove-orphans", timeout=300, check=False)


SAMPLE_OVERLAY = "riot-sample.yaml"


def sample_overlay(
    stack: str,
    out: Path,
    secrets: Path | None = None,
    overlays: tuple[Path, ...] = (),
    key_is_set: Callable[[str], bool] | None = None,
) -> Path | None:
    """With no Riot key set for the stack: an overlay file (in `out`) that runs it on the sample Riot API
    instead. None when the key is set (in the secrets file, or as `key_is_set` says: the Pulumi stack config),
    or when the stack takes no key."""
    definition = require(load_definition(stack=stack, overlays=overlays))
    key = definition.app.riot_api_key
    if key is None:
        return None
    if key_is_set is None:
        path = secrets or SECRETS_DIR / f"{definition.environment}.yaml"
        key_is_set = read_secrets_file(path).__contains__
    if key_is_set(key.secret):
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = out / SAMPLE_OVERLAY
    path.write_text(yaml.safe_dump({"app": {"riot_sample": True, "riot_api_key": None}}))
    return path


def urls(loaded: Stack) -> list[tuple[str, str]]:
    definition, plan = require(loaded), loaded.plan
    host = client_host(plan.broker.publish_ip)
    b = plan.broker
    return [
        ("web", f"http://{host}:{definition.app.web.port}/healthz"),
        ("management", b.management_url),
        (b.client_scheme, f"{b.client_scheme}://{host}:{b.client_port}"),
    ]


def sample_note(stack: str, web: str) -> str:
    """What `make local` says when it runs on the sample Riot API: that it does, how to sync a sample
    player, follow the job and read the player back, and how to talk to Riot instead."""
    players = json.loads(SAMPLE_RIOT_PLAYERS.read_text())["players"]
    p = players[0]
    body = json.dumps({"game_name": p["game_name"], "tag_line": p["tag_line"], "region": p["region"]})
    names = ", ".join(f"{s['game_name']}#{s['tag_line']} ({s['region']})" for s in players)
    player = "/".join(quote(part, safe="") for part in (p["region"], p["game_name"], p["tag_line"]))
    return (
        f"riot-sample the sample Riot API serves the app (no Riot key set): {names}\n"
        f"            try: curl -X POST -H 'Content-Type: application/json' -d '{body}' "
        f"{web}/api/players/sync\n"
        f'            it answers {{"job_id": ...}}; follow the job: curl {web}/api/jobs/<job_id>\n'
        f"            once complete, the player and their matches: curl {web}/api/players/{player}\n"
        f"            with your key in .secrets/{stack}.yaml (riotApiKey: RGAPI-...), `make local` talks to Riot"
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m infra.cli.localstack")
    top.add_argument("command", choices=("up", "down"))
    top.add_argument("--stack", default="local")
    top.add_argument("--out", type=Path, default=None, help="render directory (default build/<stack>)")
    top.add_argument("--volumes", action="store_true", help="down: delete the data volumes too")
    top.add_argument(
        "--overlay",
        type=Path,
        action="append",
        default=[],
        help="up: a file laid over the stack (repeatable), e.g. stacks/overlays/rabbitmq-4.0.yaml",
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.out or Path("build") / args.stack
    local = LocalStack(args.stack, out, f"rabbitmq-celery-{args.stack}", overlays=tuple(args.overlay))
    if args.command == "down":
        local.down(volumes=args.volumes)
        print(f"stopped {local.project}" + ("; volumes deleted" if args.volumes else "; volumes kept"))
        return 0
    sample = sample_overlay(args.stack, out, overlays=local.overlays)
    local.overlays += (sample,) if sample else ()
    local.render()
    try:
        local.start()
    except subprocess.CalledProcessError as exc:
        print(f"python -m infra.cli.localstack: {' '.join(exc.cmd)} failed:\n{exc.stderr}", file=sys.stderr)
        return 1
    except (TimeoutError, ClusterIncomplete) as exc:
        print(
            f"python -m infra.cli.localstack: {exc}\n  see: docker-compose -p {local.project} -f "
            f"{local.out / COMPOSE_FILE} logs",
            file=sys.stderr,
        )
        return 1
    where = urls(local.loaded)
    for name, url in where:
        print(f"{name:<11} {url}")
    if sample:
        print(sample_note(args.stack, dict(where)["web"].removesuffix("/healthz")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
