"""What the blue-green upgrade's two adapters (compose_upgrade.py, pulumi_upgrade.py) do the same way: the brokers'
containers read with `docker inspect`, their CLI tools run with `docker exec` (they work in maintenance mode, when
the management API is closed), green's published ports, the management API as the admin, and the switch.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlencode

from infra.ops.broker_api import BrokerAPIError, ManagementClient
from infra.plan.plan import Plan
from infra.plan.services import BROKER_DATA_DIR, broker_hosts, client_host

READY_TIMEOUT_S = 180
# With TLS, where a broker's shovels read the CA and the client certificate they present to the other broker
# (mutual TLS): on its data volume, the node user's alone; it goes with the broker.
SHOVEL_TLS_DIR = f"{BROKER_DATA_DIR}/upgrade-tls"
SHOVEL_TLS_FILES = ("ca.pem", "client.pem", "client.key")

# Standard input into a private file the node's user reads, imported, then removed whatever the import did.
IMPORT_FROM_STDIN_VIA_FILE = (
    'f=$(mktemp) && cat > "$f" && chown rabbitmq "$f" && rabbitmqctl import_definitions -q "$f"; '
    'rc=$?; rm -f "$f"; exit $rc'
)


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {result.stderr.strip()}")
    return result.stdout.strip()


def inspect(name: str) -> Optional[dict]:
    out = docker("inspect", name, check=False)
    found = json.loads(out) if out.startswith("[") else []  # a missing container: "[]" and an error
    return found[0] if found else None


@dataclass
class DockerBrokers:
    """The shared part of `BrokerContainers` (infra/ops/upgrader.py). A subclass names the containers
    (`_container`, `green_name`) and creates, switches and removes them its own way."""

    plan: Plan  # the new version's
    admin_password: str

    @property
    def host(self) -> str:
        return broker_hosts(1)[0]  # `rabbitmq`: the name the app connects to

    @property
    def green_name(self) -> str:
        raise NotImplementedError

    def _container(self, role: str) -> str:
        raise NotImplementedError

    def _state(self, c: Optional[dict]) -> Optional[tuple[bool, bool]]:
        """A broker container as `BrokerContainers.service` says it: (it runs the definition's image, it is
        running). Compared by image id: a Pulumi container names its image by id, a compose one by tag."""
        if c is None:
            return None
        wanted = docker("image", "inspect", "--format", "{{.Id}}", self.plan.broker.image, check=False)
        return c["Image"] == wanted, bool(c["State"]["Running"])

    def green(self) -> Optional[tuple[bool, bool]]:
        c = inspect(self.green_name)
        return None if c is None else (True, bool(c["State"]["Running"]))

    def _green_port(self, container_port: int) -> int:
        """Where green's `container_port` is published: the port Docker bound (picked by Docker, or given)."""
        c = inspect(self.green_name) or {}
        bound = (c.get("NetworkSettings", {}).get("Ports") or {}).get(f"{container_port}/tcp") or []
        if not bound:
            raise BrokerAPIError(f"green publishes no port {container_port} (not running)")
        return int(bound[0]["HostPort"])

    def tls_files(self) -> dict[str, str]:
        """With TLS, SHOVEL_TLS_FILES' contents (PEM): the stack's CA and the app's client certificate and key."""
        raise NotImplementedError

    def ca_file(self) -> Optional[str]:
        """With TLS, a file holding the stack's CA, which the management API's certificate is checked against."""
        raise NotImplementedError

    def _shovel_host(self, role: str) -> str:
        """Where a shovel on the other broker reaches `role`, on the stack's network."""
        raise NotImplementedError

    def api(self, role: str) -> ManagementClient:
        """A broker's management API as the admin: blue and the new broker on the stack's own ports; with TLS
        over HTTPS, checked against the stack's CA (every broker has the stack's server certificate)."""
        b = self.plan.broker
        url = b.management_url
        if role == "green":
            url = f"{b.management_scheme}://{client_host(b.publish_ip)}:{self._green_port(b.management_client_port)}"
        return ManagementClient(url, b.admin_user, self.admin_password, ca_cert=self.ca_file() if b.tls else None)

    def amqp_uri(self, role: str) -> str:
        """`role` as a shovel on the other broker reaches it: the admin's credentials, no vhost; with TLS, AMQPS
        verified against the stack's CA for the host name every broker's certificate carries (`rabbitmq`), the
        client certificate presented."""
        b = self.plan.broker
        credentials = f"{quote(b.admin_user, safe='')}:{quote(self.admin_password, safe='')}"
        uri = f"{b.client_scheme}://{credentials}@{self._shovel_host(role)}:{b.client_port}"
        if not b.tls:
            return uri
        files = dict(zip(("cacertfile", "certfile", "keyfile"), (f"{SHOVEL_TLS_DIR}/{n}" for n in SHOVEL_TLS_FILES)))
        return f"{uri}?{urlencode({**files, 'verify': 'verify_peer', 'server_name_indication': self.host})}"

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

    def set_shovels(self, role: str, shovels: list[tuple[str, str, dict]], policies: list[dict]) -> None:
        """One definitions import of runtime parameters and policies (one CLI call, not one per queue), from a
        file in the container: Debian's 4.0 `rabbitmqctl` runs the tool through `su`, and an import from standard
        input never sees its end there. The file (the shovels' URIs hold the admin's password) is the node
        user's alone and removed after."""
        parameters = [{"vhost": v, "component": "shovel", "name": n, "value": value} for v, n, value in shovels]
        if self.plan.broker.tls:
            self._install_shovel_tls(role)
        try:
            subprocess.run(
                ["docker", "exec", "-i", self._container(role), "sh", "-c", IMPORT_FROM_STDIN_VIA_FILE],
                input=json.dumps({"parameters": parameters, "policies": policies}),
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise BrokerAPIError(f"{role}: the shovels could not be set: {getattr(exc, 'stderr', exc)}") from None

    def _install_shovel_tls(self, role: str) -> None:
        """SHOVEL_TLS_FILES into `role`'s SHOVEL_TLS_DIR, from standard input, the node user's alone."""
        for name, content in self.tls_files().items():
            script = (
                f"umask 077 && mkdir -p {SHOVEL_TLS_DIR} && cat > {SHOVEL_TLS_DIR}/{name} && "
                f"chown -R rabbitmq:rabbitmq {SHOVEL_TLS_DIR}"
            )
            argv = ["docker", "exec", "-i", self._container(role), "sh", "-c", script]
            done = subprocess.run(argv, input=content, capture_output=True, text=True, timeout=120)
            if done.returncode:
                raise BrokerAPIError(f"{role}: the shovels' TLS files could not be written: {done.stderr.strip()}")

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

    def answers(self, role: str) -> bool:
        """`role`'s management API answers: it is up and not in maintenance mode."""
        try:
            self.api(role).get("overview", columns="rabbitmq_version")
            return True
        except (BrokerAPIError, RuntimeError):
            return False

    def _wait_ready(self, role: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.answers(role):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{role} not answering after {READY_TIMEOUT_S} s")
            time.sleep(1)

    def _wait_booted(self, name: str) -> None:
        """Until the node in container `name` runs, even in maintenance mode (its API closed then)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while docker("exec", name, "rabbitmq-diagnostics", "-q", "check_running", check=False) == "":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not running after {READY_TIMEOUT_S} s")
            time.sleep(2)

    def _drain(self, role: str) -> None:
        """`role` in maintenance mode (`rabbitmq-upgrade drain`: its client connections closed with
        CONNECTION_FORCED, its listeners suspended, management's too) for the rest of its life. Its shovels
        and CLI tools keep working."""
        self._ctl(role, "rabbitmq-upgrade", "drain")
