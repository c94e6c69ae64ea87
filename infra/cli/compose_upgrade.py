"""The blue-green upgrade's containers on a compose stack (`make local`): `BrokerContainers` over the Docker CLI.

Blue is the compose service `rabbitmq` on the old image. Green is a container of the project's own
(`<project>-upgrade-green`, volume `<project>-upgrade-green-data`, its ports picked free on the publish
address), created from the new render's broker service (the same image, entry point and files), on the
stack's network as `rabbitmq-green`. A switch moves the network alias `rabbitmq`, the name every app service
connects to: from blue to green, then from green to the new broker, which compose starts as the service
`rabbitmq` on the new image with a new volume (the end state is what a fresh `make local` on the new version
makes). The app's containers are never re-created. Everything is read back from Docker (`docker inspect`).
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
    def upgrade_network(self) -> str:
        """Where the brokers of an upgrade reach each other (the shovels), and the app does not."""
        return f"{self.project}-upgrade"

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

    def _container(self, role: str) -> str:
        return self.green_name if role == "green" else self._blue_id()

    def service(self) -> Optional[tuple[bool, bool]]:
        found = self._service_id()
        c = self._inspect(found) if found else None
        if c is None:
            return None
        return c["Config"]["Image"] == self.plan.broker.image, bool(c["State"]["Running"])

    def green(self) -> Optional[tuple[bool, bool]]:
        c = self._inspect(self.green_name)
        return None if c is None else (True, bool(c["State"]["Running"]))

    def _networks(self, name: str) -> set[str]:
        c = self._inspect(name)
        return set((c or {}).get("NetworkSettings", {}).get("Networks", {}) or {})

    def switched(self) -> bool:
        """Green is on the stack's network. Docker answers a container's host name as a name on its networks,
        and every broker here is `rabbitmq` (the node name its data goes with), so a broker the app must not
        reach is kept off that network rather than only stripped of an alias."""
        return self.network in self._networks(self.green_name)

    def _green_port(self, container_port: int) -> int:
        c = self._inspect(self.green_name) or {}
        bindings = c.get("HostConfig", {}).get("PortBindings", {}).get(f"{container_port}/tcp") or []
        if not bindings:
            raise RuntimeError(f"{self.green_name} publishes no port {container_port}")
        return int(bindings[0]["HostPort"])

    # -- the brokers' APIs, as the admin: blue and the new broker on the stack's own ports
    def api(self, role: str) -> ManagementClient:
        b = self.plan.broker
        url = b.management_url
        if role == "green":
            url = f"http://{client_host(b.publish_ip)}:{self._green_port(b.management_port)}"
        return ManagementClient(url, b.admin_user, self.admin_password)

    def amqp_uri(self, role: str) -> str:
        """`role` by its alias on the upgrade's network (every broker's host name is `rabbitmq`)."""
        b = self.plan.broker
        host = f"{self.host}-{role}"
        return f"amqp://{quote(b.admin_user, safe='')}:{quote(self.admin_password, safe='')}@{host}:{b.amqp_port}"

    def queue_messages(self, role: str) -> dict[tuple[str, str], int]:
        """From the queues themselves (`rabbitmqctl list_queues`), whatever management metrics collection is;
        the durable queues, which the shovels empty (a transient one goes with its connection)."""
        counts = {}
        for vhost, _ in self.plan.topology.vhosts:
            try:
                listed = docker(
                    "exec", self._container(role), "rabbitmqctl", "list_queues", "-q", "-p", vhost,
                    "--formatter", "json", "name", "messages", "durable", "auto_delete",
                )  # fmt: skip
            except RuntimeError as exc:  # restarting: the executor waits for it, as for its API
                raise BrokerAPIError(f"{role}'s queues could not be listed: {exc}") from None
            for q in json.loads(listed or "[]"):
                if q.get("durable") and not q.get("auto_delete"):
                    counts[(vhost, q["name"])] = int(q.get("messages") or 0)
        return counts

    # -- acting
    def _wait_ready(self, role: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                self.api(role).get("overview", columns="rabbitmq_version")
                return
            except (BrokerAPIError, RuntimeError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{role} not answering after {READY_TIMEOUT_S} s") from None
                time.sleep(1)

    def start_green(self) -> None:
        green = self.green()
        if green is None:
            self._create_green()
        elif not green[1]:
            docker("start", self.green_name)
        self._wait_ready("green")

    def _create_green(self) -> None:
        """`docker run` of the new render's broker service, with green's volume, ports and network alias."""
        service = _compose_document(self.out)["services"][self.host]
        b = self.plan.broker
        argv = ["run", "-d", "--name", self.green_name, "--hostname", self.host, "--restart", "unless-stopped"]
        if not docker("network", "ls", "-q", "--filter", f"name=^{self.upgrade_network}$"):
            docker("network", "create", "--label", "org.rabbitmq-celery.upgrade=network", self.upgrade_network)
        argv += ["--label", "org.rabbitmq-celery.upgrade=green", "--network", self.upgrade_network]
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

    def start_new(self) -> None:
        self.compose("up", "-d", "--no-deps", self.host)
        self._wait_ready("new")

    def switch(self, source: str, target: str) -> None:
        """`source` in maintenance mode (`rabbitmq-upgrade drain`: its client connections closed with
        CONNECTION_FORCED, its listeners suspended, so no client reconnects there) and off the stack's network;
        `target` on it (green joins it; the new broker is there from compose), where the app's clients
        reconnect by the name `rabbitmq`; both on the upgrade's own network, where `source`'s shovels reach
        `target`; then `source`'s listeners back (`revive`) for the shovels and the drain."""
        container, other = self._container(source), self._container(target)
        for name, role in ((container, source), (other, target)):
            if self.upgrade_network not in self._networks(name):
                docker("network", "connect", "--alias", f"{self.host}-{role}", self.upgrade_network, name)
        if self.network in self._networks(container):
            docker("exec", container, "rabbitmq-upgrade", "drain", timeout=120)
            docker("network", "disconnect", self.network, container)
        if self.network not in self._networks(other):
            docker("network", "connect", "--alias", self.host, self.network, other)
        docker("exec", container, "rabbitmq-upgrade", "revive", timeout=120)

    def reopen(self, role: str) -> None:
        try:
            self.api(role).get("overview", columns="rabbitmq_version")
        except BrokerAPIError:
            container = self._container(role)
            if (self._inspect(container) or {}).get("State", {}).get("Running"):
                docker("exec", container, "rabbitmq-upgrade", "revive", timeout=120, check=False)

    def remove(self, role: str) -> None:
        if role == "green":
            docker("rm", "-f", self.green_name, check=False)
            docker("volume", "rm", self.green_volume, check=False)
            new = self._service_id()
            if new and self.upgrade_network in self._networks(new):
                docker("network", "disconnect", self.upgrade_network, new)
            docker("network", "rm", self.upgrade_network, check=False)
            return
        blue = self._service_id()
        if blue and not (self.service() or (False, False))[0]:
            docker("rm", "-f", blue)
        docker("volume", "rm", self.service_volume, check=False)


def _compose_document(out: Path) -> dict:
    import yaml

    from infra.render.compose import COMPOSE_FILE

    return yaml.safe_load((out / COMPOSE_FILE).read_text())
