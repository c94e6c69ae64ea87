"""The blue-green upgrade's containers on a Pulumi stack (`python -m infra deploy`): `BrokerContainers` with the
program's own resources.

Blue is the program's broker container (`<prefix>-rabbitmq`) on the old image, as the last `up` left it. Green is
a node the program declares only in the upgrade's own `pulumi up` runs (deploy.UPGRADE_GREEN; `green_node` in
infra/pulumi/components/broker.py), each `--target`ing the resources of one step alone: green's image, volume and
container (`<prefix>-rabbitmq-green`, on the stack's network as `rabbitmq-green` with the broker's host name, its
ports picked by Docker). Green is on the network from its start, but until its topology is imported it has no
app user, so a client that reaches it is refused and tries again; a switch puts the broker the app leaves in
maintenance mode. Blue, once drained, is removed with the Docker CLI, container and volume (the rabbitmq provider,
and through it the whole topology, depends on that container: the engine would take them along); the stack's
broker is then created again by a targeted `up` of its resources, on the new image with a new volume (the old
container's delete finds it gone). Green goes with a targeted `up` that no longer declares it.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

from infra.cli.docker_brokers import SHOVEL_TLS_FILES, DockerBrokers, docker, inspect
from infra.plan.plan import BrokerConfig
from infra.plan.services import broker_hosts
from infra.pulumi.deploy import Engine
from infra.render import files as render

BROKER, TLS = "broker", "tls"  # program.main's Broker and Certificates components


def green_name(prefix: str) -> str:
    """Green's container: `Broker`'s `green_node` names it so."""
    return f"{prefix}-{broker_hosts(1)[0]}-green"


def shovel_pems(b: BrokerConfig, stack_value: Callable[[str], Optional[str]], engine: Engine) -> dict[str, str]:
    """With TLS, SHOVEL_TLS_FILES' PEMs: the stack's CA and the app's client certificate and key, from the stack
    config (`ca: provided`) or as the program's pulumi_tls resources hold them in the state (their names:
    `Certificates("tls")` in infra/pulumi/program.py); {} without TLS."""
    if not b.tls:
        return {}
    s = b.tls.secrets
    if b.tls.ca == "provided":
        values = [stack_value(s.ca_cert), stack_value(s.client_cert), stack_value(s.client_key)]
    else:
        client, key = engine.outputs_of(f"{TLS}-client"), engine.outputs_of(f"{TLS}-client-key")
        values = [stack_value("ca_cert"), str(client.get("certPem") or ""), str(key.get("privateKeyPem") or "")]
    if not all(values):
        raise RuntimeError("the stack's CA or the app's client certificate is not in its state: run `deploy` once")
    return dict(zip(SHOVEL_TLS_FILES, (str(v) for v in values)))


@dataclass
class PulumiContainers(DockerBrokers):
    engine: Engine
    pems: dict[str, str] = field(default_factory=dict)  # shovel_pems

    @property
    def prefix(self) -> str:
        return self.engine.prefix

    @property
    def green_name(self) -> str:
        return green_name(self.prefix)

    @property
    def service_name(self) -> str:
        return f"{self.prefix}-{self.host}"

    def _container(self, role: str) -> str:
        return self.green_name if role == "green" else self.service_name

    def _urns(self, role: str = "") -> list[str]:
        from infra.pulumi.components.broker import BROKER_TYPE, node_names

        return [self.engine.urn(BROKER_TYPE, kind, name) for kind, name in node_names(BROKER, role).items()]

    def service(self) -> Optional[tuple[bool, bool]]:
        return self._state(inspect(self.service_name))

    def switched(self) -> bool:
        """Green serves (its API answers: not in maintenance mode) and blue, if still there, does not."""
        if not self.answers("green"):
            return False
        service = self.service()
        return not (service is not None and not service[0] and self.answers("blue"))

    def _shovel_host(self, role: str) -> str:
        """Green by its alias, the stack's broker by its container name."""
        return f"{self.host}-green" if role == "green" else self.service_name

    def tls_files(self) -> dict[str, str]:
        return self.pems

    @cached_property
    def _ca(self) -> str:
        """The CA in a file of its own for this process (a certificate: nothing secret), removed at its exit."""
        handle, path = tempfile.mkstemp(prefix="upgrade-ca-", suffix=".pem")
        with os.fdopen(handle, "w") as out:
            out.write(self.pems["ca.pem"])
        atexit.register(os.unlink, path)
        return path

    def ca_file(self) -> Optional[str]:
        return self._ca

    def definitions(self) -> bytes:
        """What green and then the stack's new broker get: the definition's topology as the new version declares
        it, with the users as the serving broker holds them (their password hashes: the app's credentials stay
        what they are, whether the stack config or the program's generated passwords set them)."""
        service = self.service()
        held = self.export("blue" if service is not None and not service[0] else "green")
        users = {u["name"]: u for u in held.get("users", [])}
        wanted = render.definitions(self.plan.topology, defaultdict(str))
        wanted["users"] = [users[u["name"]] for u in wanted["users"] if u["name"] in users]
        return json.dumps(wanted).encode()

    # -- acting, through the engine where something is created or deleted
    def start_green(self) -> None:
        green = self.green()
        if green is None:
            self.engine.up(self._urns("green"), green=True)
        elif not green[1]:
            docker("start", self.green_name)
        self._wait_booted(self.green_name)

    def start_new(self) -> None:
        self.engine.up(self._urns(), green=True)
        self._wait_ready("new")

    def switch(self, source: str, target: str) -> None:
        self._drain(source)

    def remove(self, role: str) -> None:
        if role == "green":
            self.engine.up(self._urns("green"), green=False)
            return
        service = self.service()
        if service is not None and not service[0]:
            docker("rm", "-f", self.service_name)
        docker("volume", "rm", f"{self.service_name}-data", check=False)
