"""The stack as a docker-compose file: the same plan and service specs the Pulumi program runs, for laptops
without Pulumi (the seed's `docker-compose up -d`).

Pure: `compose_file(plan, ...)` returns the document and `env_files(plan, secrets)` the contents of the
0600 env files that carry every credential, so the compose file itself holds none. Differences from the
Pulumi program, each forced by compose: one broker loads the *full* definitions.json at boot (a cluster's
nodes boot with the admin alone, like Pulumi's, and `make local` POSTs definitions.json once all are healthy),
and files are bind-mounted from the render directory instead of uploaded (with TLS, each service copies its
certificates and keys from the mounted tls/ directory at start, so its own user owns its 0600 key).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from infra.plan.plan import (
    APP_TLS_FILES,
    BROKER_TLS_FILES,
    INTER_NODE_OPTFILE,
    Plan,
    boot_definitions_file,
    node_tls_files,
)
from infra.plan.services import (
    APP_UID,
    BROKER_CONFIG_DIR,
    BROKER_DATA_DIR,
    CELERY_JSON,
    CONFIG_DIR,
    HealthCheck,
    ServiceSpec,
    broker_healthcheck,
    broker_hosts,
    broker_ports,
    joins_after,
)
from infra.render.files import ERLANG_COOKIE

COMPOSE_FILE = "docker-compose.yml"
TLS_MOUNT = "/run/secrets/tls"  # the rendered tls/ directory, read-only; each service copies what it needs


def _install_tls(files, target_dir: str, owner: str) -> str:
    """Shell commands that copy the TLS files from TLS_MOUNT, keys 0600 and owned by `owner` alone."""
    return " && ".join(
        f"install -D -o {owner} -g {owner} -m {'0600' if name.endswith('.key') else '0644'} "
        f"{TLS_MOUNT}/{name} {target_dir}/tls/{name}"
        for name in sorted(files)
    )


def broker_entrypoint(plan: Plan, index: int = 1) -> str:
    """Root inside the container can read the 0600 files whatever their owner on the host; the node's own user
    gets private copies (its boot definitions, a cluster's Erlang cookie where the node and its CLI tools
    read it, the TLS files: with inter-node TLS node `index`'s own certificate and key). Then the image's
    usual entry point."""
    b = plan.broker
    name = boot_definitions_file(b.nodes)
    steps = [f"install -o rabbitmq -g rabbitmq -m 0600 /run/secrets/{name} {BROKER_CONFIG_DIR}/{name}"]
    if b.erlang_cookie:
        steps.append(
            f"install -o rabbitmq -g rabbitmq -m 0400 /run/secrets/{ERLANG_COOKIE} {BROKER_DATA_DIR}/.erlang.cookie"
        )
    if b.tls:
        own = node_tls_files(index) if b.tls.inter_node else {}
        steps.append(_install_tls({**BROKER_TLS_FILES, **own}, BROKER_CONFIG_DIR, "rabbitmq"))
    return " && ".join(steps + ["exec docker-entrypoint.sh rabbitmq-server"])


# With TLS an app service starts as root only to copy its client key (0600 on the host, whoever owns it)
# to a file its own user owns, then runs its command as that user (setpriv: util-linux, in every Debian image).
APP_TLS_ENTRYPOINT = (
    f"{_install_tls(APP_TLS_FILES, CONFIG_DIR, APP_UID)} && "
    f'exec setpriv --reuid={APP_UID} --regid={APP_UID} --clear-groups "$@"'
)


def env_file_name(spec: ServiceSpec) -> str:
    return f"{spec.name}.env"


def env_files(plan: Plan, secrets: dict[str, str]) -> dict[str, str]:
    """File name → `NAME=value` lines: each service's secret environment, one file per service, which gets
    only its own (each Celery service has its own broker user)."""
    return {
        env_file_name(spec): "".join(
            f"{name}={template.fill(secrets[template.key])}\n" for name, template in spec.secret_env
        )
        for spec in plan.services
    }


def config_label(*contents: str) -> dict:
    """A digest of the files a service mounts, as a label: docker-compose re-creates a service whose
    configuration changed, but does not look inside bind-mounted files, so a changed file must show here."""
    digest = hashlib.sha256("\0".join(contents).encode()).hexdigest()[:16]
    return {"org.rabbitmq-celery.config-digest": digest}


def _healthcheck(check: HealthCheck) -> dict:
    docker = check.paced()
    # `$$`: compose would read the shell's `$(...)` as its own variables
    return {
        "test": [part.replace("$", "$$") for part in docker.test],
        "interval": docker.interval,
        "timeout": docker.timeout,
        "retries": docker.retries,
        "start_period": docker.start_period,
    }


def _own(name: str, index: int) -> bool:
    """A rendered file of node `index`'s alone: its inter-node options file, certificate and key."""
    return name == INTER_NODE_OPTFILE.format(index=index) or name in {f"tls/{n}" for n in node_tls_files(index)}


def broker_services(plan: Plan, mounted: dict[str, str]) -> dict[str, dict]:
    """One service per node (`rabbitmq`, or `rabbitmq-1` ... on a cluster; node i publishes each port + i,
    and starts once node i - 1 is healthy).
    `mounted`: the rendered files by name. The definitions are left out of the label: the topology is applied
    to the running broker (`make local`), a changed TTL must not restart it."""
    b = plan.broker
    boot = boot_definitions_file(b.nodes)
    secrets = (
        [f"./{boot}:/run/secrets/{boot}:ro"]
        + ([f"./{ERLANG_COOKIE}:/run/secrets/{ERLANG_COOKIE}:ro"] if b.erlang_cookie else [])
        + ([f"./tls:{TLS_MOUNT}:ro"] if b.tls else [])
    )
    services, waits_for = {}, joins_after(b.nodes)
    for index, host in enumerate(broker_hosts(b.nodes)):
        # inter-node TLS: the node's own options file, and its Erlang flags for the server and the CLI tools
        optfile = INTER_NODE_OPTFILE.format(index=index + 1)
        inter_node = [f"./{optfile}:{BROKER_CONFIG_DIR}/{optfile}:ro"] if optfile in mounted else []
        services[host] = {
            "image": b.image,
            "hostname": host,
            "entrypoint": ["sh", "-c", broker_entrypoint(plan, index + 1)],
            "volumes": [
                f"{host}-data:{BROKER_DATA_DIR}",
                f"./rabbitmq.conf:{BROKER_CONFIG_DIR}/rabbitmq.conf:ro",
                f"./enabled_plugins:{BROKER_CONFIG_DIR}/enabled_plugins:ro",
                *inter_node,
                *secrets,
            ],
            "ports": [f"{b.publish_ip}:{p + index}:{p}" for p in broker_ports(b)],
            "healthcheck": _healthcheck(broker_healthcheck(b)),
            "restart": "unless-stopped",
            "labels": config_label(
                mounted["rabbitmq.conf"],
                mounted["enabled_plugins"],
                *(mounted[f"tls/{n}"] for n in sorted(BROKER_TLS_FILES) if b.tls),
                *(mounted[name] for name in sorted(mounted) if _own(name, index + 1)),
            ),
            "networks": {"stack": {"aliases": [host]}},
        }
        if b.tls and b.tls.inter_node:
            services[host]["environment"] = b.tls.dist_env(index + 1)
        if host in waits_for:
            services[host]["depends_on"] = {waits_for[host]: {"condition": "service_healthy"}}
    return services


def app_service(
    spec: ServiceSpec,
    app_image: str,
    build: dict | None,
    depends: list[str],
    celery_json: str,
    tls: list[str] | None = None,
) -> dict:
    """`tls`: the contents of the app's TLS files, when the stack has TLS."""
    service: dict = {"image": app_image if spec.runs_app else spec.image}
    if spec.runs_app and build:
        service["build"] = build
    service["hostname"] = spec.hostname
    with_tls = spec.runs_app and tls is not None
    if with_tls:
        service["user"] = "0:0"
        # `$$`: compose would read the shell's `$@` as its own variable (and refuse the file)
        service["entrypoint"] = ["sh", "-c", APP_TLS_ENTRYPOINT.replace("$", "$$"), spec.name]
    if spec.command:
        service["command"] = list(spec.command)
    if spec.env:
        service["environment"] = dict(spec.env)
    if spec.secret_env:
        service["env_file"] = [f"./{env_file_name(spec)}"]
    volume_key, path = spec.volume
    service["volumes"] = (
        [f"{volume_key}:{path}"]
        + ([f"./celery.json:{CELERY_JSON}:ro"] if spec.runs_app else [])
        + ([f"./tls:{TLS_MOUNT}:ro"] if with_tls else [])
    )
    if spec.ports:
        service["ports"] = [f"{p.ip}:{p.external}:{p.internal}" for p in spec.ports]
    service["healthcheck"] = _healthcheck(HealthCheck(spec.healthcheck))
    service["stop_grace_period"] = f"{spec.stop_timeout_s}s"
    service["restart"] = "unless-stopped"
    if spec.runs_app:
        service["depends_on"] = {name: {"condition": "service_healthy"} for name in depends}
        service["labels"] = config_label(celery_json, *(tls or []))
    service["networks"] = {"stack": {"aliases": [spec.name]}}
    return service


def compose_file(
    plan: Plan, mounted: dict[str, str], app_image: str, build_context: Path | None, base_image: str
) -> dict:
    """The compose document. `mounted`: the rendered files by name; `app_image`: the tag the Pulumi program
    would give the app image."""
    build = {"context": str(build_context), "args": {"BASE_IMAGE": base_image}} if build_context else None
    brokers = broker_services(plan, mounted)
    depends = [*brokers, *(s.name for s in plan.services if s.role == "database")]
    tls = [mounted[f"tls/{n}"] for n in sorted(APP_TLS_FILES)] if plan.broker.tls else None
    services = {
        **brokers,
        **{s.name: app_service(s, app_image, build, depends, mounted["celery.json"], tls) for s in plan.services},
    }
    volumes = {f"{host}-data": {} for host in brokers} | {s.volume[0]: {} for s in plan.services}
    return {"services": services, "volumes": volumes, "networks": {"stack": {}}}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # every service spelled out, no &anchors
        return True


def compose_yaml(document: dict) -> str:
    header = (
        "# Rendered by `python -m infra render --compose` from stacks/*.yaml: edit the stack definition.\n"
        "# Secrets are in the 0600 *.env files beside this one; never commit them.\n"
    )
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
