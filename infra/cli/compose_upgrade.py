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

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from infra.cli.docker_brokers import SHOVEL_TLS_FILES, DockerBrokers, docker, inspect
from infra.plan.services import BROKER_DATA_DIR


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@dataclass
class ComposeContainers(DockerBrokers):
    project: str
    out: Path  # the new version's render directory: docker-compose.yml and the files it mounts
    compose: Callable[..., object]  # LocalStack.compose: docker-compose on the project's file

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
        return self._state(inspect(found) if found else None)

    def _networks(self, name: str) -> set[str]:
        c = inspect(name)
        return set((c or {}).get("NetworkSettings", {}).get("Networks", {}) or {})

    def switched(self) -> bool:
        """Green is on the stack's network and serves (not in maintenance mode: its API answers). Docker answers
        a container's host name on its networks, and every broker here is `rabbitmq` (the node name its data
        goes with): a broker the app must not use is kept in maintenance mode, refusing connections, and the
        clients' next address is the serving one."""
        return self.network in self._networks(self.green_name) and self.answers("green")

    def _shovel_host(self, role: str) -> str:
        """Green by its alias, the new broker by its container name (`rabbitmq` is every broker's host name)."""
        return f"{self.host}-green" if role == "green" else (inspect(self._blue_id()) or {})["Name"].lstrip("/")

    def tls_files(self) -> dict[str, str]:
        return {name: (self.out / "tls" / name).read_text() for name in SHOVEL_TLS_FILES}

    def ca_file(self) -> Optional[str]:
        return str(self.out / "tls" / "ca.pem")

    # -- acting
    def start_green(self) -> None:
        green = self.green()
        if green is None:
            self._create_green()
        elif not green[1]:
            docker("start", self.green_name)
        self._wait_booted(self.green_name)

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
        for port in (b.client_port, b.management_client_port):
            argv += ["-p", f"{b.publish_ip}:{_free_port(b.publish_ip)}:{port}"]
        entrypoint, *command = service["entrypoint"]
        argv += ["--entrypoint", entrypoint, service["image"], *command]
        docker(*argv)

    def start_new(self) -> None:
        self.compose("up", "-d", "--no-deps", self.host)
        self._wait_ready("new")

    def switch(self, source: str, target: str) -> None:
        """`source` in maintenance mode for good; green joins the stack's network (as `rabbitmq`, its host
        name, and `rabbitmq-green`); the new broker is there from compose. The app's clients reconnect by the
        name `rabbitmq`, refused by `source` and served by `target`."""
        if target == "green" and self.network not in self._networks(self.green_name):
            docker("network", "connect", "--alias", f"{self.host}-green", self.network, self.green_name)
        self._drain(source)

    def remove(self, role: str) -> None:
        if role == "green":
            docker("rm", "-f", self.green_name, check=False)
            docker("volume", "rm", self.green_volume, check=False)
            return
        blue = self._service_id()
        if blue and not (self.service() or (False, False))[0]:
            docker("rm", "-f", blue)
        docker("volume", "rm", self.service_volume, check=False)


def _compose_document(out: Path) -> dict:
    import yaml

    from infra.render.compose import COMPOSE_FILE

    return yaml.safe_load((out / COMPOSE_FILE).read_text())
