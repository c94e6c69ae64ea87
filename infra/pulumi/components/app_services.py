"""Services: the app's containers — Django web, one Celery worker per pool, beat — and PostgreSQL, from the
plan's specs.

Children: `<name>-image` (built from the definition's `app.build` directory, or pulled), `<name>-image-<x>`
(other images: PostgreSQL), `<name>-<volume>` (`data`: the app's files, beat's schedule, a dev SQLite
database; `postgres-data`), and `<name>-<service>` per `ServiceSpec`.
Each container gets the rendered celery.json as an upload (with TLS also the CA and the app's client
certificate and key), its secrets (broker URL, Django secret key, Riot API key) as secret env values, and the same restart policy and health check style as the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pulumi
import pulumi_docker as docker

from infra.definition.model import App
from infra.plan.services import APP_UID, CELERY_JSON, CONFIG_DIR, HealthCheck, ServiceSpec
from infra.pulumi.components.broker import WAIT_TIMEOUT_S, healthcheck, host_entries
from infra.pulumi.components.topology import slug
from infra.render.images import app_image_name, build_context


def env_list(spec: ServiceSpec, secrets: Mapping[str, pulumi.Input[str]]) -> pulumi.Output:
    """`NAME=value` entries; the whole list is secret because some entries are."""
    keys = [s.key for _, s in spec.secret_env]
    return pulumi.Output.secret(
        pulumi.Output.all(*(secrets[k] for k in keys)).apply(
            lambda values: [
                *(f"{name}={value}" for name, value in spec.env),
                *(f"{name}={template.fill(value)}" for (name, template), value in zip(spec.secret_env, values)),
            ]
        )
    )


@dataclass
class ServicesArgs:
    app: App
    specs: Sequence[ServiceSpec]
    celery_json: str  # the rendered file, uploaded into every container
    secrets: Mapping[str, pulumi.Input[str]]  # secret key → value
    network: pulumi.Input[str] | None  # the broker's network name; None: the nodes have hosts of their own,
    # the services get a network `<name>-network` (`<prefix>-net`)
    resource_prefix: str
    project_root: Path
    depends_on: Sequence[pulumi.Resource] = ()
    tls_files: Mapping[str, pulumi.Input[str]] | None = None  # with TLS: `tls/<file>` → PEM (client.key secret)
    broker_addresses: Mapping[str, str] = field(default_factory=dict)  # node host name → address, with
    # `broker.hosts`: /etc/hosts entries


APP_SECRETS_DIR = "/run/secrets/app"
BROKER_CLIENTS = ("web", "worker", "beat")  # ServiceSpec roles that connect to the broker


def app_uploads(
    celery_json: str, tls_files: Mapping[str, pulumi.Input[str]] | None
) -> tuple[list[docker.ContainerUploadArgs], list[str] | None]:
    """celery.json, and with TLS the CA and the client certificate; and the entry point, if any. The docker
    provider uploads as root, so the client key is staged root-only and installed for the app's user by an entry
    point that starts as root and then drops to that user (as the broker's does, components/broker.py)."""
    uploads = [docker.ContainerUploadArgs(file=CELERY_JSON, content=celery_json, permissions="0644")]
    installs = []
    for name, content in sorted((tls_files or {}).items()):
        if name.endswith(".key"):
            staged = f"{APP_SECRETS_DIR}/{name.replace('/', '-')}"
            uploads.append(docker.ContainerUploadArgs(file=staged, content=content, permissions="0400"))
            installs.append(f"install -D -o {APP_UID} -g {APP_UID} -m 0600 {staged} {CONFIG_DIR}/{name}")
        else:
            uploads.append(docker.ContainerUploadArgs(file=f"{CONFIG_DIR}/{name}", content=content, permissions="0644"))
    if not installs:
        return uploads, None
    drop = f'exec setpriv --reuid={APP_UID} --regid={APP_UID} --clear-groups "$@"'
    return uploads, ["sh", "-c", " && ".join([*installs, drop]), "sh"]


def app_image(name: str, app: App, project_root: Path, tag_prefix: str, opts: pulumi.ResourceOptions):
    """The app's image and the reference the containers run. A built image is tagged for this stack alone
    (`<image>:<stack prefix>-<content digest>`), so `make local` or another stack never shares its tag, and
    `<name>-local` (a RemoteImage of that tag, not kept) removes it with the stack: docker.Image's own delete
    leaves images behind."""
    context = build_context(app, project_root)
    if context is None:
        image = docker.RemoteImage(name, name=app.image, keep_locally=True, opts=opts)
        return image, image.image_id
    repository, digest = app_image_name(app, project_root).rsplit(":", 1)
    built = docker.Image(
        name,
        image_name=f"{repository}:{tag_prefix}-{digest}",
        skip_push=True,
        build=docker.DockerBuildArgs(
            context=str(context), dockerfile=str(context / "Dockerfile"), args={"BASE_IMAGE": app.base_image}
        ),
        opts=opts,
    )
    local = docker.RemoteImage(f"{name}-local", name=built.image_name, keep_locally=False, opts=opts)
    return built, local.image_id


class Services(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServicesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("rabbitmq-celery:app:Services", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.resource_prefix
        self.image, app_image_ref = app_image(f"{name}-image", args.app, args.project_root, prefix, child)
        network = args.network
        if network is None:
            network = docker.Network(f"{name}-network", name=f"{prefix}-net", opts=child).name
        kept = pulumi.ResourceOptions(parent=self, retain_on_delete=True)  # data outlives the stack's containers
        self.volumes = {
            key: docker.Volume(f"{name}-{key}", name=f"{prefix}-{name}-{key}", opts=kept)
            for key in sorted({s.volume[0] for s in args.specs})
        }
        other_images = {
            image: docker.RemoteImage(f"{name}-image-{slug(image)}", name=image, keep_locally=True, opts=child)
            for image in sorted({s.image for s in args.specs if s.image})
        }
        self.containers: dict[str, docker.Container] = {}
        app_files, app_entrypoint = app_uploads(args.celery_json, args.tls_files)
        for spec in args.specs:
            # Only the broker's clients wait for its topology: the database boots beside the broker, as compose
            # starts them, instead of after the broker's boot and every topology call.
            depends = list(args.depends_on) if spec.role in BROKER_CLIENTS else []
            if spec.runs_app and "postgres" in self.containers:  # migrations need the database up
                depends.append(self.containers["postgres"])
            self.containers[spec.name] = docker.Container(
                f"{name}-{spec.name}",
                name=f"{prefix}-{spec.name}",
                hostname=spec.hostname,
                image=app_image_ref if spec.runs_app else other_images[spec.image].image_id,
                command=list(spec.command) or None,
                envs=env_list(spec, args.secrets),
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network, aliases=[spec.name])],
                hosts=host_entries(args.broker_addresses) if spec.runs_app else None,  # the nodes by name
                volumes=[
                    docker.ContainerVolumeArgs(
                        volume_name=self.volumes[spec.volume[0]].name, container_path=spec.volume[1]
                    )
                ],
                uploads=app_files if spec.uses_broker else None,
                entrypoints=app_entrypoint if spec.uses_broker else None,
                user="0" if spec.uses_broker and app_entrypoint else None,  # the entry point drops to the app's user
                ports=[docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip) for p in spec.ports],
                healthcheck=healthcheck(HealthCheck(spec.healthcheck)),
                stop_timeout=spec.stop_timeout_s,
                destroy_grace_seconds=spec.stop_timeout_s,
                restart="unless-stopped",
                wait=True,  # healthy, every one: when `up` finishes the stack is serving
                wait_timeout=WAIT_TIMEOUT_S,
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, depends_on=depends),
            )
        self.register_outputs({"containers": {n: c.name for n, c in self.containers.items()}})
