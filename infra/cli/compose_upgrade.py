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
        """Green is on the stack's network and serves (not in maintenance mode: its API answers). Docker answers
        a container's host name on its networks, and every broker here is `rabbitmq` (the node name its data
        goes with): a broker the app must not use is kept in maintenance mode, refusing connections, and the
        clients' next address is the serving one."""
        if self.network not in self._networks(self.green_name):
            return False
        try:
            self.api("green").get("overview", columns="rabbitmq_version")
            return True
        except BrokerAPIError:
            return False

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
        """Green by its alias, the new broker by its container name, on the stack's network (`rabbitmq` is
        every broker's own host name)."""
        b = self.plan.broker
        host = f"{self.host}-green" if role == "green" else (self._inspect(self._blue_id()) or {})["Name"].lstrip("/")
        return f"amqp://{quote(b.admin_user, safe='')}:{quote(self.admin_password, safe='')}@{host}:{b.amqp_port}"

    def _ctl(self, role: str, *argv: str, timeout: float = 120) -> str:
        """A RabbitMQ CLI command in `role`'s container (works in maintenance mode); a broker that cannot be
        reached (restarting) is reported as the API would be, and waited for."""
        try:
            return docker("exec", self._container(role), *argv, timeout=timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            raise BrokerAPIError(f"{role}: {' '.join(argv[:2])}: {exc}") from None

    def version(self, role: str) -> str:
        return self._ctl(role, "rabbitmqctl", "version").strip().splitlines()[-1]

    def export(self, role: str) -> dict:
        return json.loads(self._ctl(role, "rabbitmqctl", "export_definitions", "-", "--format", "json", "-q"))

    def set_shovels(self, role: str, shovels: list[tuple[str, str, dict]]) -> None:
        """One definitions import of runtime parameters (one CLI call, not one per queue), from a file in the
        container: Debian's 4.0 `rabbitmqctl` runs the tool through `su`, and an import from standard input
        never sees its end there. The file (the shovels' URIs hold the admin's password) is the node user's
        alone and removed after."""
        parameters = [{"vhost": v, "component": "shovel", "name": n, "value": value} for v, n, value in shovels]
        try:
            subprocess.run(
                ["docker", "exec", "-i", self._container(role), "sh", "-c", IMPORT_FROM_STDIN_VIA_FILE],
                input=json.dumps({"parameters": parameters}),
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise BrokerAPIError(f"{role}: the shovels could not be set: {getattr(exc, 'stderr', exc)}") from None

    def queue_messages(self, role: str) -> dict[tuple[str, str], int]:
        """From the queues themselves (`rabbitmqctl list_queues`), whatever management metrics collection is;
        the durable queues, which the shovels empty (a transient one goes with its connection)."""
        counts = {}
        for vhost, _ in self.plan.topology.vhosts:
            listed = self._ctl(
                role, "rabbitmqctl", "list_queues", "-q", "-p", vhost, "--formatter", "json",
                "name", "messages", "durable", "auto_delete",
            )  # fmt: skip
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
        deadline = time.monotonic() + READY_TIMEOUT_S  # booted, even in maintenance mode (no API then)
        while docker("exec", self.green_name, "rabbitmq-diagnostics", "-q", "check_running", check=False) == "":
            if time.monotonic() > deadline:
                raise TimeoutError(f"green not running after {READY_TIMEOUT_S} s")
            time.sleep(2)

    def _create_green(self) -> None:
        """`docker run` of the new render's broker service, with green's volume, ports and network alias."""
        service = _compose_document(self.out)["services"][self.host]
        b = self.plan.broker
        argv = ["run", "-d", "--name", self.green_name, "--hostname", self.host, "--restart", "unless-stopped"]
        argv += ["--label", "org.rabbitmq-celery.upgrade=green", "-v", f"{self.green_volume}:{BROKER_DATA_DIR}"]
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
        CONNECTION_FORCED, its listeners suspended, management's too) for the rest of its life; green joins
        the stack's network (as `rabbitmq`, its host name, and `rabbitmq-green`); the new broker is there from
        compose. The app's clients reconnect by the name `rabbitmq`, refused by `source` and served by `target`.
        `source`'s shovels (and its CLI tools) keep working in maintenance mode."""
        if target == "green" and self.network not in self._networks(self.green_name):
            docker("network", "connect", "--alias", f"{self.host}-green", self.network, self.green_name)
        self._ctl(source, "rabbitmq-upgrade", "drain")

    def remove(self, role: str) -> None:
        if role == "green":
            docker("rm", "-f", self.green_name, check=False)
            docker("volume", "rm", self.green_volume, check=False)
            return
        blue = self._service_id()
        if blue and not (self.service() or (False, False))[0]:
            docker("rm", "-f", blue)
        docker("volume", "rm", self.service_volume, check=False)


# Standard input into a private file the node's user reads, imported, then removed whatever the import did.
IMPORT_FROM_STDIN_VIA_FILE = (
    'f=$(mktemp) && cat > "$f" && chown rabbitmq "$f" && rabbitmqctl import_definitions -q "$f"; '
    'rc=$?; rm -f "$f"; exit $rc'
)


def _compose_document(out: Path) -> dict:
    import yaml

    from infra.render.compose import COMPOSE_FILE

    return yaml.safe_load((out / COMPOSE_FILE).read_text())
