"""Broker: the RabbitMQ node as a Docker container, with its network, its data volume and its files.

Children: `<name>-network`, `<name>-data` (a named volume that outlives the container), `<name>-image`
and `<name>-container`, which gets the rendered rabbitmq.conf, enabled_plugins and definitions.json as
uploads (with TLS also its CA, certificate and key under tls/), is healthy before Pulumi moves on (`wait`),
and is replaced delete-first because it is named.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_docker as docker

from ..plan import BrokerConfig
from ..services import BROKER_CONFIG_DIR as CONFIG_DIR, BROKER_DATA_DIR as DATA_DIR, BROKER_HOST as HOSTNAME
from ..services import BROKER_HEALTHCHECK, HealthCheck, broker_ports, client_host

RABBITMQ_UID = "999"  # the rabbitmq user of the official images; definitions.json is readable by it alone


def uploads(files: Mapping[str, pulumi.Input[str]]) -> list[docker.ContainerUploadArgs]:
    """The rendered files, where the official image reads them."""
    private = {"definitions.json", "tls/server.key"}
    return [docker.ContainerUploadArgs(file=f"{CONFIG_DIR}/{name}", content=content,
                                       owner=RABBITMQ_UID, group=RABBITMQ_UID,
                                       permissions="0600" if name in private else "0644")
            for name, content in sorted(files.items())]


def published_ports(b: BrokerConfig) -> list[docker.ContainerPortArgs]:
    return [docker.ContainerPortArgs(internal=p, external=p, ip=b.publish_ip) for p in broker_ports(b)]


def healthcheck(check: HealthCheck = BROKER_HEALTHCHECK) -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(tests=list(check.test), interval=check.interval, timeout=check.timeout,
                                           retries=check.retries, start_period=check.start_period)


def management_url(b: BrokerConfig) -> str:
    """Where the deployer reaches the management API: HTTPS on its own port when TLS is on."""
    return f"{b.management_scheme}://{client_host(b.publish_ip)}:{b.management_client_port}"


@dataclass
class BrokerArgs:
    config: BrokerConfig
    files: Mapping[str, pulumi.Input[str]]  # rendered file name → content (definitions.json, tls/server.key:
                                            # secrets)
    resource_prefix: str  # Docker object names: `<prefix>-rabbitmq`, `<prefix>-rabbitmq-data`, ...


class Broker(pulumi.ComponentResource):
    def __init__(self, name: str, args: BrokerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("rabbitmq-celery:broker:Broker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.resource_prefix
        self.network = docker.Network(f"{name}-network", name=f"{prefix}-net", opts=child)
        self.volume = docker.Volume(f"{name}-data", name=f"{prefix}-rabbitmq-data",
                                    opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        self.image = docker.RemoteImage(f"{name}-image", name=args.config.image, keep_locally=True, opts=child)
        self.container = docker.Container(
            f"{name}-container",
            name=f"{prefix}-rabbitmq",
            hostname=HOSTNAME,
            image=self.image.image_id,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.network.name, aliases=[HOSTNAME])],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=DATA_DIR)],
            uploads=uploads(args.files),
            ports=published_ports(args.config),
            healthcheck=healthcheck(),
            wait=True,
            wait_timeout=180,
            restart="unless-stopped",
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.management_url = management_url(args.config)
        self.register_outputs({"container": self.container.name, "management_url": self.management_url})
