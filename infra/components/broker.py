"""Broker: the RabbitMQ node(s) as Docker containers, with their network, data volumes and files.

Children: `<name>-network`, `<name>-image`, and per node a named volume that outlives the container and the
container, which gets the rendered rabbitmq.conf, enabled_plugins and boot definitions as uploads (with TLS
also its CA, certificate and key under tls/), is healthy before Pulumi moves on (`wait`), and is replaced
delete-first because it is named. One node is `<name>-data` / `<name>-container` on host `rabbitmq`; a
cluster's node i is `<name>-<i>-data` / `<name>-<i>-container` on host `rabbitmq-<i>`, publishes each port
+ (i - 1), gets the Erlang cookie, and is created once node i - 1 is healthy (one after another: the first
forms the cluster, each next one joins it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_docker as docker

from ..plan import BrokerConfig
from ..services import BROKER_CONFIG_DIR as CONFIG_DIR, BROKER_DATA_DIR as DATA_DIR
from ..services import BROKER_HEALTHCHECK, HealthCheck, broker_hosts, broker_ports, client_host

RABBITMQ_UID = "999"  # the rabbitmq user of the official images; definitions.json is readable by it alone
COOKIE_UPLOAD = "/run/secrets/erlang.cookie"
# The cookie goes where the node and its CLI tools (the health check too) read it, owned by the node's
# user and private, or Erlang refuses it; then the image's usual entry point.
CLUSTER_ENTRYPOINT = (f"install -o rabbitmq -g rabbitmq -m 0400 {COOKIE_UPLOAD} {DATA_DIR}/.erlang.cookie "
                      "&& exec docker-entrypoint.sh rabbitmq-server")


def uploads(files: Mapping[str, pulumi.Input[str]], cookie: Optional[pulumi.Input[str]] = None
            ) -> list[docker.ContainerUploadArgs]:
    """The rendered files, where the official image reads them; a cluster's cookie where its entry point
    installs it from."""
    private = {"definitions.json", "boot-definitions.json", "tls/server.key"}
    result = [docker.ContainerUploadArgs(file=f"{CONFIG_DIR}/{name}", content=content,
                                         owner=RABBITMQ_UID, group=RABBITMQ_UID,
                                         permissions="0600" if name in private else "0644")
              for name, content in sorted(files.items())]
    if cookie is not None:
        result.append(docker.ContainerUploadArgs(file=COOKIE_UPLOAD, content=cookie, permissions="0400"))
    return result


def published_ports(b: BrokerConfig, index: int = 0) -> list[docker.ContainerPortArgs]:
    """Node `index` (0-based) publishes each listener's port + index on the host."""
    return [docker.ContainerPortArgs(internal=p, external=p + index, ip=b.publish_ip) for p in broker_ports(b)]


def healthcheck(check: HealthCheck = BROKER_HEALTHCHECK) -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(tests=list(check.test), interval=check.interval, timeout=check.timeout,
                                           retries=check.retries, start_period=check.start_period)


def management_url(b: BrokerConfig) -> str:
    """Where the deployer reaches the management API: the first node's (every node serves the whole cluster),
    HTTPS on its own port when TLS is on."""
    return f"{b.management_scheme}://{client_host(b.publish_ip)}:{b.management_client_port}"


@dataclass
class BrokerArgs:
    config: BrokerConfig
    files: Mapping[str, pulumi.Input[str]]  # rendered file name → content (definitions, tls/server.key:
                                            # secrets)
    resource_prefix: str  # Docker object names: `<prefix>-rabbitmq`, `<prefix>-rabbitmq-data`, ...
    erlang_cookie: Optional[pulumi.Input[str]] = None  # a cluster's shared secret


class Broker(pulumi.ComponentResource):
    def __init__(self, name: str, args: BrokerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("rabbitmq-celery:broker:Broker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix, config = args.resource_prefix, args.config
        cluster = config.nodes > 1
        self.network = docker.Network(f"{name}-network", name=f"{prefix}-net", opts=child)
        self.image = docker.RemoteImage(f"{name}-image", name=config.image, keep_locally=True, opts=child)
        self.volumes: list[docker.Volume] = []
        self.containers: list[docker.Container] = []
        for index, host in enumerate(broker_hosts(config.nodes)):
            node = f"-{index + 1}" if cluster else ""
            volume = docker.Volume(f"{name}{node}-data", name=f"{prefix}-{host}-data",
                                   opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
            container = docker.Container(
                f"{name}{node}-container",
                name=f"{prefix}-{host}",
                hostname=host,  # the node is rabbit@<host>: the same name in every replacement of the container
                image=self.image.image_id,
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.network.name, aliases=[host])],
                volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_DIR)],
                uploads=uploads(args.files, args.erlang_cookie if cluster else None),
                entrypoints=["sh", "-c", CLUSTER_ENTRYPOINT] if cluster else None,
                ports=published_ports(config, index),
                healthcheck=healthcheck(),
                wait=True,
                wait_timeout=180,
                restart="unless-stopped",
                # a cluster's node i boots once node i - 1 is healthy (`joins_after`)
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True,
                                            depends_on=self.containers[-1:]),
            )
            self.volumes.append(volume)
            self.containers.append(container)
        self.volume, self.container = self.volumes[0], self.containers[0]
        self.management_url = management_url(config)
        self.register_outputs({"containers": [c.name for c in self.containers], "management_url": self.management_url})
