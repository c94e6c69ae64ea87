"""The blue-green upgrade's containers on a compose stack (`make local`): `BrokerContainers` over the Docker CLI.

Blue is the compose service `rabbitmq` on the old image. Green is a container of the project's own
(`<project>-upgrade-green`, volume `<project>-upgrade-green-data`, its ports picked free on the publish
address), created from the new render's broker service: the same image, entry point, files and host name
(so its node is `rabbit@rabbitmq` too and its data can become the service's), on the stack's network as
`rabbitmq-green`. The switch moves the network alias `rabbitmq`, the name every app service connects to,
from blue to green: the app's containers are not re-created. Green takes blue's place by a copy of its data
volume into the service's volume, then compose starts the service on the new image: the end state is what a
fresh `make local` on the new version makes. Everything is read back from Docker (`docker inspect`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import quote

from infra.ops.broker_api import BrokerAPIError, ManagementClient
from infra.plan.plan import Plan
from infra.plan.services import BROKER_DATA_DIR, broker_hosts, client_host

READY_TIMEOUT_S = 180


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {result.stderr.strip()}")
    return result.stdout.strip()


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@dataclass
class ComposeContainers:
    project: str
    out: Path  # the new version's render directory: docker-compose.yml and the files it mounts
    plan: Plan  # the new version's
    admin_password: str
    compose: Callable[..., object]  # LocalStack.compose: docker-compose on the project's file

    @property
    def host(self) -> str:
        return broker_hosts(1)[0]  # `rabbitmq`: the name the app connects to

    @property
    def network(self) -> str:
        return f"{self.project}_stack"

    @property
    def green_name(self) -> str:
        return f"{self.project}-upgrade-green"

    @property
    def green_volume(self) -> str:
        return f"{self.project}-upgrade-green-data"

    @property
    def service_volume(self) -> str:
        return f"{self.project}_{self.host}-data"

    # -- reading Docker
    def _inspect(self, name: str) -> Optional[dict]:
        out = docker("inspect", name, check=False)
        found = json.loads(out) if out.startswith("[") else []  # a missing container: "[]" and an error
        return found[0] if found else None

    def _service_id(self) -> Optional[str]:
        ids = docker(
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={self.host}",
        ).split()
        return ids[0] if ids else None

    def _blue_id(self) -> str:
        found = self._service_id()
        if found is None:
            raise RuntimeError(f"{self.project} has no {self.host} container")
        return found

    def service(self) -> Optional[tuple[bool, bool]]:
        found = self._service_id()
        c = self._inspect(found) if found else None
        if c is None:
            return None
        return c["Config"]["Image"] == self.plan.broker.image, not c["State"]["StartedAt"].startswith("0001-")

    def green(self) -> Optional[tuple[bool, bool]]:
        c = self._inspect(self.green_name)
        return None if c is None else (True, bool(c["State"]["Running"]))

    def _aliases(self, name: str) -> Optional[list[str]]:
        c = self._inspect(name)
        network = (c or {}).get("NetworkSettings", {}).get("Networks", {}).get(self.network)
        return None if network is None else list(network.get("Aliases") or [])

    def switched(self) -> bool:
        return self.host in (self._aliases(self.green_name) or [])

    def _green_port(self, container_port: int) -> int:
        c = self._inspect(self.green_name) or {}
        bindings = c.get("HostConfig", {}).get("PortBindings", {}).get(f"{container_port}/tcp") or []
        if not bindings:
            raise RuntimeError(f"{self.green_name} publishes no port {container_port}")
        return int(bindings[0]["HostPort"])

    # -- the brokers' APIs, as the admin
    def blue_api(self) -> ManagementClient:
        b = self.plan.broker
        return ManagementClient(b.management_url, b.admin_user, self.admin_password)

    def green_api(self) -> ManagementClient:
        b = self.plan.broker
        port = self._green_port(b.management_port)
        return ManagementClient(f"http://{client_host(b.publish_ip)}:{port}", b.admin_user, self.admin_password)

    def green_amqp_uri(self) -> str:
        b = self.plan.broker
        return f"amqp://{quote(b.admin_user, safe='')}:{quote(self.admin_password, safe='')}@{self.host}-green:{b.amqp_port}"

    def blue_queue_messages(self) -> dict[tuple[str, str], int]:
        """From the queues themselves (`rabbitmqctl list_queues`), whatever management metrics collection is;
        the durable queues, which the shovels empty (a transient one goes with its connection)."""
        blue = self._blue_id()
        counts = {}
        for vhost, _ in self.plan.topology.vhosts:
            try:
                listed = docker(
                    "exec", blue, "rabbitmqctl", "list_queues", "-q", "-p", vhost, "--formatter", "json",
                    "name", "messages", "durable", "auto_delete",
                )  # fmt: skip
            except RuntimeError as exc:  # blue restarting: the executor waits for it, as for its API
                raise BrokerAPIError(f"blue's queues could not be listed: {exc}") from None
            for q in json.loads(listed or "[]"):
                if q.get("durable") and not q.get("auto_delete"):
                    counts[(vhost, q["name"])] = int(q.get("messages") or 0)
        return counts

    # -- acting
    def _wait_ready(self, api: ManagementClient, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                api.get("overview", columns="rabbitmq_version")
                return
            except (BrokerAPIError, RuntimeError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what} not answering after {READY_TIMEOUT_S} s") from None
                time.sleep(1)

    def start_green(self) -> None:
        green = self.green()
        if green is None:
            self._create_green()
        elif not green[1]:
            docker("start", self.green_name)
        self._wait_ready(self.green_api(), "green")

    def _create_green(self) -> None:
        """`docker run` of the new render's broker service, with green's volume, ports and network alias."""
        service = _compose_document(self.out)["services"][self.host]
        b = self.plan.broker
        argv = ["run", "-d", "--name", self.green_name, "--hostname", self.host, "--restart", "unless-stopped"]
        argv += ["--label", "org.rabbitmq-celery.upgrade=green", "--network", self.network]
        argv += ["--network-alias", f"{self.host}-green", "-v", f"{self.green_volume}:{BROKER_DATA_DIR}"]
        for mount in service["volumes"]:
            source, rest = mount.split(":", 1)
            if source.startswith("./"):
                argv += ["-v", f"{(self.out / source).resolve()}:{rest}"]
        for port in (b.amqp_port, b.management_port):
            argv += ["-p", f"{b.publish_ip}:{_free_port(b.publish_ip)}:{port}"]
        entrypoint, *command = service["entrypoint"]
        argv += ["--entrypoint", entrypoint, service["image"], *command]
        docker(*argv)

    def switch(self) -> None:
        """Blue in maintenance mode (`rabbitmq-upgrade drain`: its client connections closed with
        CONNECTION_FORCED, its listeners suspended, so no client reconnects there), the name `rabbitmq` moved
        to green, where the app's clients reconnect, then blue's listeners back (`revive`): its management API
        for the shovels and the drain, and nothing in the stack reaches it by name any more."""
        blue = self._blue_id()
        aliases = self._aliases(blue) or []
        if self.host in aliases:
            docker("exec", blue, "rabbitmq-upgrade", "drain", timeout=120)
        if aliases and f"{self.host}-blue" not in aliases:
            docker("network", "disconnect", self.network, blue)
        if self._aliases(blue) is None:
            docker("network", "connect", "--alias", f"{self.host}-blue", self.network, blue)
        if not self.switched():
            if self._aliases(self.green_name) is not None:
                docker("network", "disconnect", self.network, self.green_name)
            docker(
                "network",
                "connect",
                "--alias",
                self.host,
                "--alias",
                f"{self.host}-green",
                self.network,
                self.green_name,
            )
        docker("exec", blue, "rabbitmq-upgrade", "revive", timeout=120)

    def reopen_blue(self) -> None:
        try:
            self.blue_api().get("overview", columns="rabbitmq_version")
        except BrokerAPIError:
            blue = self._service_id()
            if blue and (self._inspect(blue) or {}).get("State", {}).get("Running"):
                docker("exec", blue, "rabbitmq-upgrade", "revive", timeout=120, check=False)

    def remove_blue(self) -> None:
        blue = self._service_id()
        if blue and not (self.service() or (False, False))[0]:
            docker("rm", "-f", blue)
        docker("volume", "rm", self.service_volume, check=False)

    def take_place(self) -> None:
        """Green stopped; the service's container created on the new image (not started) with a fresh volume;
        green's data copied into it; the service started. Repeated from the start until the service has run
        once: a copy cut short is made again."""
        service = self.service()
        if service is not None and service[1]:
            return
        if (self.green() or (False, False))[1]:
            docker("stop", "-t", "60", self.green_name, timeout=120)
        self.compose("up", "--no-start", "--no-deps", self.host)
        copy = "find /to -mindepth 1 -delete && cp -a /from/. /to/"
        docker(
            "run", "--rm", "--entrypoint", "sh", "-v", f"{self.green_volume}:/from:ro",
            "-v", f"{self.service_volume}:/to", self.plan.broker.image, "-c", copy,
        )  # fmt: skip
        self.compose("up", "-d", "--no-deps", self.host)
        self._wait_ready(self.blue_api(), "the upgraded broker")

    def remove_green(self) -> None:
        docker("rm", "-f", self.green_name, check=False)
        docker("volume", "rm", self.green_volume, check=False)


def _compose_document(out: Path) -> dict:
    import yaml

    from infra.render.compose import COMPOSE_FILE

    return yaml.safe_load((out / COMPOSE_FILE).read_text())
