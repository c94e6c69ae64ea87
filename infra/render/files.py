"""Renderers: the plan → the broker's files and celery.json. Mechanical; decisions live in `plan.py`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jinja2

from infra.paths import TEMPLATES
from infra.plan.plan import (
    APP_TLS_FILES,
    BROKER_TLS_FILES,
    INTER_NODE_OPTFILE,
    Plan,
    Topology,
    boot_definitions_file,
    node_tls_files,
)
from infra.render.secrets import hash_for

_jinja = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,  # a missing value is an error, never an empty string
    keep_trailing_newline=True,
    autoescape=False,
)

# Files every render writes, and their modes: definitions.json carries password hashes, so only its
# owner reads it.
FILES = {"rabbitmq.conf": 0o644, "enabled_plugins": 0o644, "definitions.json": 0o600, "celery.json": 0o644}
# A cluster's nodes share the cookie (Erlang refuses a cookie file others can read) and boot with the
# admin alone; definitions.json is applied once they have all joined (plan.boot_definitions_file).
ERLANG_COOKIE = "erlang.cookie"
BOOT_DEFINITIONS = boot_definitions_file(3)
CLUSTER_FILES = {ERLANG_COOKIE: 0o400, BOOT_DEFINITIONS: 0o600}
# `render --compose` adds these: the *.env files hold the services' credentials.
COMPOSE_FILES = {"docker-compose.yml": 0o644}
ENV_FILE_MODE = 0o600


# `render --monitoring` adds these (no credential: the prometheus endpoint takes none).
MONITORING_FILES = {"prometheus.yml": 0o644, "alerts.yml": 0o644, "dashboard.json": 0o644}
# `render --kubernetes` adds this (no credential: it names the Secrets the user creates).
KUBERNETES_FILES = {"kubernetes.yaml": 0o644}


# With TLS, render adds the broker's and the app's certificate files under tls/; private keys are 0600.
TLS_DIR = "tls"
KEY_FILE_MODE = 0o600


def file_mode(name: str) -> int:
    if name.startswith(f"{TLS_DIR}/"):
        return KEY_FILE_MODE if name.endswith(".key") else 0o644
    if name.startswith(INTER_NODE_OPTFILE.split("{")[0]):  # paths only, no key
        return 0o644
    return (
        ENV_FILE_MODE
        if name.endswith(".env")
        else {**FILES, **CLUSTER_FILES, **COMPOSE_FILES, **MONITORING_FILES, **KUBERNETES_FILES}[name]
    )


def _json(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def rabbitmq_conf(plan: Plan) -> str:
    return _jinja.get_template("rabbitmq.conf.j2").render(b=plan.broker, environment=plan.environment)


def broker_settings(plan: Plan) -> str:
    """The part of rabbitmq.conf that does not depend on where the node runs (no listener, file or path)."""
    return _jinja.get_template("broker-settings.j2").render(b=plan.broker)


def enabled_plugins(plan: Plan) -> str:
    return _jinja.get_template("enabled_plugins.j2").render(b=plan.broker)


def definitions(topology: Topology, passwords: dict[str, str]) -> dict:
    """RabbitMQ's definitions format. `passwords` maps secret keys to values; only hashes are written."""
    return {
        "users": [
            {
                "name": u.name,
                "password_hash": hash_for(u.name, passwords[u.password.secret]),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": list(u.tags),
            }
            for u in topology.users
        ],
        "vhosts": [{"name": name, "description": description} for name, description in topology.vhosts],
        "permissions": [
            {"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read}
            for p in topology.permissions
        ],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [
            {
                "vhost": p.vhost,
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "priority": p.priority,
                "definition": p.definition,
            }
            for p in topology.policies
        ],
        "queues": [
            {"name": q.name, "vhost": q.vhost, "durable": True, "auto_delete": False, "arguments": q.arguments}
            for q in topology.queues
        ],
        "exchanges": [
            {
                "name": e.name,
                "vhost": e.vhost,
                "type": e.type,
                "durable": e.durable,
                "auto_delete": e.auto_delete,
                "internal": e.internal,
                "arguments": {},
            }
            for e in topology.exchanges
        ],
        "bindings": [
            {
                "source": b.source,
                "vhost": b.vhost,
                "destination": b.destination,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in topology.bindings
        ],
    }


def inter_node_optfiles(plan: Plan) -> dict[str, str]:
    """With inter-node TLS, each node's `-ssl_dist_optfile` (its own certificate, the stack's CA)."""
    t = plan.broker.tls
    if t is None or not t.inter_node:
        return {}
    files = {}
    for index, names in enumerate(t.node_names, start=1):
        cert, key = node_tls_files(index)
        files[INTER_NODE_OPTFILE.format(index=index)] = dist_optfile(
            f"node {index} ({names[0]})", t.path("ca.pem"), t.path(cert), t.path(key)
        )
    return files


def dist_optfile(node: str, ca: str, cert: str, key: str, wildcard: bool = False) -> str:
    """Erlang's TLS distribution options (an `-ssl_dist_optfile`): `verify_peer` both ways, and the server
    refuses a peer without a certificate. `wildcard`: the peers' certificate names are wildcards (one
    certificate for every pod), which Erlang matches only with the `https` rules."""
    return _jinja.get_template("inter_node_tls.config.j2").render(
        node=node, ca=ca, cert=cert, key=key, wildcard=wildcard
    )


def config_files(plan: Plan) -> dict[str, str]:
    """The broker's files that hold no credential."""
    return {
        "rabbitmq.conf": rabbitmq_conf(plan),
        "enabled_plugins": enabled_plugins(plan),
        **inter_node_optfiles(plan),
    }


def definitions_json(plan: Plan, passwords: dict[str, str]) -> str:
    return _json(definitions(plan.topology, passwords))


def boot_definitions_json(plan: Plan, passwords: dict[str, str]) -> str:
    """definitions.json for a broker whose topology Pulumi manages through the management API: the admin
    user alone. Everything else lives in the data volume, so a topology change never touches the container
    (a changed upload would replace it)."""
    return _json(
        definitions(
            plan.topology.only_user(plan.broker.admin_user),
            {k: v for k, v in passwords.items() if k == plan.topology.password_key(plan.broker.admin_user)},
        )
    )


def celery_json(plan: Plan) -> str:
    return _json(plan.celery)


def render_files(plan: Plan, passwords: dict[str, str]) -> dict[str, str]:
    """File name → content, for every file in FILES (and a cluster's Erlang cookie). Same plan and
    passwords, same bytes."""
    files = {
        **config_files(plan),
        "definitions.json": definitions_json(plan, passwords),
        "celery.json": celery_json(plan),
    }
    if plan.broker.erlang_cookie:
        files[ERLANG_COOKIE] = passwords[plan.broker.erlang_cookie.secret]
        files[BOOT_DEFINITIONS] = boot_definitions_json(plan, passwords)
    return files


def tls_files(plan: Plan, values: dict[str, str]) -> dict[str, str]:
    """`tls/<file>` → PEM, for the broker and the app (one directory: on a host both read it), from the
    secret values by their keys; nothing without TLS."""
    tls = plan.broker.tls
    if tls is None:
        return {}
    keys = {**tls.secret_keys(BROKER_TLS_FILES), **tls.secret_keys(APP_TLS_FILES)}
    for index in range(1, len(tls.node_names) + 1):  # inter-node TLS: each node's own certificate and key
        keys.update(tls.node_secret_keys(index))
    return {f"{TLS_DIR}/{name}": values[key] for name, key in sorted(keys.items())}


def write_files(files: dict[str, str], out: Path) -> list[Path]:
    """Each file written whole (temp file, then rename) with its mode from `file_mode` (env files and
    private keys: 0600)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode(name))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, file_mode(name))  # O_CREAT's mode is masked by the umask; the mode is part of the output
        os.replace(tmp, target)
        written.append(target)
    return written
