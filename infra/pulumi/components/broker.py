"""Broker: the RabbitMQ node(s) as Docker containers, with their network, data volumes and files.

Children: `<name>-network`, `<name>-image`, and per node a named volume that outlives the container and the
container, which gets the rendered rabbitmq.conf, enabled_plugins and boot definitions as uploads (with TLS
also its CA, certificate and key under tls/), is healthy before Pulumi moves on (`wait`), and is replaced
delete-first because it is named. One node is `<name>-data` / `<name>-container` on host `rabbitmq`; a
cluster's node i is `<name>-<i>-data` / `<name>-<i>-container` on host `rabbitmq-<i>`, publishes each port
+ (i - 1), gets the Erlang cookie, and is created once node i - 1 is healthy (one after another: the first
forms the cluster, each next one joins it).

With `broker.hosts` node i has a Docker host of its own: a provider `<name>-<i>-docker`, and on it the
node's own network `<name>-<i>-network` and image `<name>-<i>-image`; it publishes its ports unchanged on
its host's address, with Erlang distribution, and its /etc/hosts maps the other nodes' names to their
addresses, so the node names, the peer list and the certificate's names stay `rabbitmq-<j>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_docker as docker

from infra.plan.plan import BrokerConfig, files_of_node
from infra.plan.services import BROKER_CONFIG_DIR as CONFIG_DIR
from infra.plan.services import BROKER_DATA_DIR as DATA_DIR
from infra.plan.services import (
    BROKER_HEALTHCHECK,
    DIST_PORT,
    HealthCheck,
    broker_healthcheck,
    broker_hosts,
    node_addresses,
    node_ports,
    published_endpoints,
)

# The docker provider uploads every file as root (its tar headers carry no owner), so the private ones (the
# boot definitions with the admin's password hash, the TLS key, a cluster's cookie) are uploaded root-only to
# SECRETS_DIR, and the entry point installs them owned by the node's user and private before the image's own
# entry point starts the node: readable by the broker, by nobody else.
SECRETS_DIR = "/run/secrets/rabbitmq"
# How long `up` waits for a container to turn healthy: past the broker's start period (a slow boot).
WAIT_TIMEOUT_S = 300
PRIVATE_FILES = ("definitions.json", "boot-definitions.json", "tls/server.key")
COOKIE_FILE = "erlang.cookie"


def entrypoint(private: list[tuple[str, str, str]]) -> list[str]:
    """`sh -c` that installs each (uploaded, target, mode) as the rabbitmq user, then runs the image's entry point."""
    installs = [f"install -D -o rabbitmq -g rabbitmq -m {mode} {source} {target}" for source, target, mode in private]
    return ["sh", "-c", " && ".join([*installs, "exec docker-entrypoint.sh rabbitmq-server"])]


def uploads(
    files: Mapping[str, pulumi.Input[str]], cookie: Optional[pulumi.Input[str]] = None
) -> tuple[list[docker.ContainerUploadArgs], list[str]]:
    """The rendered files where the official image reads them (private ones staged root-only, see SECRETS_DIR),
    a cluster's cookie where Erlang reads it; and the entry point that puts the private ones in place."""
    result, private = [], []
    for name, content in sorted(files.items()):
        if name in PRIVATE_FILES or name.endswith(".key"):  # TLS keys, inter-node ones too
            staged = f"{SECRETS_DIR}/{name.replace('/', '-')}"
            result.append(docker.ContainerUploadArgs(file=staged, content=content, permissions="0400"))
            private.append((staged, f"{CONFIG_DIR}/{name}", "0600"))
        else:
            result.append(docker.ContainerUploadArgs(file=f"{CONFIG_DIR}/{name}", content=content, permissions="0644"))
    if cookie is not None:
        staged = f"{SECRETS_DIR}/{COOKIE_FILE}"
        result.append(docker.ContainerUploadArgs(file=staged, content=cookie, permissions="0400"))
        private.append((staged, f"{DATA_DIR}/.erlang.cookie", "0400"))
    return result, entrypoint(private)


def node_env(b: BrokerConfig, index: int) -> list[str]:
    """Node `index`'s (from 0) environment: with `broker.hosts` the distribution port `node_ports` publishes;
    with inter-node TLS the server's and the CLI tools' Erlang flags (docker exec and the health check
    inherit them)."""
    env = {"RABBITMQ_DIST_PORT": str(DIST_PORT)} if b.hosts else {}
    env.update(b.tls.dist_env(index + 1) if b.tls else {})
    return [f"{k}={v}" for k, v in env.items()]


def published_ports(b: BrokerConfig, index: int = 0) -> list[docker.ContainerPortArgs]:
    return [docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip) for p in node_ports(b, index)]


def host_entries(addresses: Mapping[str, str], skip: str = "") -> list[docker.ContainerHostArgs] | None:
    """/etc/hosts entries: each node's name → its host's address (but `skip`'s, a node's own name)."""
    return [docker.ContainerHostArgs(host=host, ip=ip) for host, ip in addresses.items() if host != skip] or None


def go_duration(seconds_text: str) -> str:
    """ "60s" as Go prints a duration ("1m0s"): the provider reads durations back in that form, so any other
    spelling would show as a change on every `up`."""
    seconds = int(seconds_text.removesuffix("s"))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def healthcheck(check: HealthCheck = BROKER_HEALTHCHECK) -> docker.ContainerHealthcheckArgs:
    paced = check.paced()  # fast until healthy, then at the check's interval (HealthCheck.paced)
    return docker.ContainerHealthcheckArgs(
        tests=list(paced.test),
        interval=go_duration(paced.interval),
        timeout=go_duration(paced.timeout),
        retries=paced.retries,
        start_period=go_duration(paced.start_period),
    )


def management_url(b: BrokerConfig) -> str:
    """Where the deployer reaches the management API: the first node's (every node serves the whole cluster),
    HTTPS on its own port when TLS is on."""
    host, port = published_endpoints(b, b.management_client_port)[0]
    return f"{b.management_scheme}://{host}:{port}"


BROKER_TYPE = "rabbitmq-celery:broker:Broker"
GREEN_LABEL = "org.rabbitmq-celery.upgrade"  # on green's container, as the compose path labels its own
IMAGE, VOLUME, CONTAINER = (
    "docker:index/remoteImage:RemoteImage",
    "docker:index/volume:Volume",
    "docker:index/container:Container",
)


def node_names(name: str, role: str = "") -> dict[str, str]:
    """A single node's resources by Pulumi type token (`role` "green": an upgrade's green node's), the names
    `Broker` gives them: what a blue-green upgrade's `pulumi up --target` names."""
    stem = f"{name}-{role}" if role else name
    return {IMAGE: f"{stem}-image", VOLUME: f"{stem}-data", CONTAINER: f"{stem}-container"}


def green_node(name: str, args: "BrokerArgs", network: docker.Network, parent) -> docker.Container:
    """The new version's node beside the stack's broker during a blue-green upgrade (a single node): the same
    image, files and health check as the stack's broker on this definition, its own volume (not kept: it is
    drained before it goes), the ports clients use (AMQP or AMQPS, management) published on ports Docker picks, and on the stack's
    network as `<host>-green` with the broker's host name (its node name)."""
    config, host = args.config, broker_hosts(1)[0]
    names = node_names(name, "green")
    opts = pulumi.ResourceOptions(parent=parent)
    image = docker.RemoteImage(names[IMAGE], name=config.image, keep_locally=True, opts=opts)
    volume = docker.Volume(names[VOLUME], name=f"{args.resource_prefix}-{host}-green-data", opts=opts)
    node_uploads, node_entrypoint = uploads(files_of_node(dict(args.files), 1))
    wanted = (config.client_port, config.management_client_port)  # AMQPS and HTTPS only with TLS
    return docker.Container(
        names[CONTAINER],
        name=f"{args.resource_prefix}-{host}-green",
        hostname=host,
        image=image.image_id,
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[f"{host}-green"])],
        volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_DIR)],
        uploads=node_uploads,
        entrypoints=node_entrypoint,
        ports=[
            docker.ContainerPortArgs(internal=p.internal, ip=p.ip)
            for p in node_ports(config, 0)
            if p.internal in wanted
        ],
        labels=[docker.ContainerLabelArgs(label=GREEN_LABEL, value="green")],
        healthcheck=healthcheck(broker_healthcheck(config)),
        wait=True,
        wait_timeout=WAIT_TIMEOUT_S,
        restart="unless-stopped",
        opts=opts,
    )


@dataclass
class BrokerArgs:
    config: BrokerConfig
    files: Mapping[str, pulumi.Input[str]]  # rendered file name → content (definitions, tls/server.key:
    # secrets)
    resource_prefix: str  # Docker object names: `<prefix>-rabbitmq`, `<prefix>-rabbitmq-data`, ...
    erlang_cookie: Optional[pulumi.Input[str]] = None  # a cluster's shared secret
    green: bool = False  # a blue-green upgrade's green node beside the broker (infra/cli/pulumi_upgrade.py)


class Broker(pulumi.ComponentResource):
    def __init__(self, name: str, args: BrokerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(BROKER_TYPE, name, None, opts)
        prefix, config = args.resource_prefix, args.config
        cluster = config.nodes > 1
        addresses = node_addresses(config)
        self.providers: list[docker.Provider] = [
            docker.Provider(
                f"{name}-{i}-docker",
                host=h.docker,
                ssh_opts=list(h.ssh_opts) or None,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for i, h in enumerate(config.hosts, start=1)
        ]
        self.networks: list[docker.Network] = []
        self.volumes: list[docker.Volume] = []
        self.containers: list[docker.Container] = []
        for index, host in enumerate(broker_hosts(config.nodes)):
            node = f"-{index + 1}" if cluster else ""
            on_host = pulumi.ResourceOptions(parent=self, provider=self.providers[index] if addresses else None)
            # A network and the image on every Docker host: each node's own, or the default one they share.
            if addresses or index == 0:
                own = node if addresses else ""
                network = docker.Network(
                    f"{name}{own}-network", name=f"{prefix}-{host}-net" if own else f"{prefix}-net", opts=on_host
                )
                image = docker.RemoteImage(f"{name}{own}-image", name=config.image, keep_locally=True, opts=on_host)
                self.networks.append(network)
            volume = docker.Volume(
                f"{name}{node}-data",
                name=f"{prefix}-{host}-data",
                opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(retain_on_delete=True)),
            )
            node_files = files_of_node(dict(args.files), index + 1)
            node_uploads, node_entrypoint = uploads(node_files, args.erlang_cookie if cluster else None)
            container = docker.Container(
                f"{name}{node}-container",
                name=f"{prefix}-{host}",
                hostname=host,  # the node is rabbit@<host>: the same name in every replacement of the container
                image=image.image_id,
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[host])],
                volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_DIR)],
                uploads=node_uploads,  # each node its own inter-node certificate and key, no other node's
                entrypoints=node_entrypoint,
                envs=node_env(config, index) or None,
                hosts=host_entries(addresses, skip=host),
                ports=published_ports(config, index),
                healthcheck=healthcheck(broker_healthcheck(config)),
                wait=True,
                wait_timeout=WAIT_TIMEOUT_S,
                restart="unless-stopped",
                # a cluster's node i boots once node i - 1 is healthy (`joins_after`), whatever its host
                opts=pulumi.ResourceOptions.merge(
                    on_host, pulumi.ResourceOptions(delete_before_replace=True, depends_on=self.containers[-1:])
                ),
            )
            self.volumes.append(volume)
            self.containers.append(container)
        self.network, self.volume, self.container = self.networks[0], self.volumes[0], self.containers[0]
        if args.green:
            self.green = green_node(name, args, self.network, self)
        self.management_url = management_url(config)
        self.register_outputs({"containers": [c.name for c in self.containers], "management_url": self.management_url})
