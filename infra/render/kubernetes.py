"""The stack for Kubernetes: a `RabbitmqCluster` (RabbitMQ Cluster Operator), the topology as Messaging
Topology Operator objects, and the app's services as Deployments — from the same plan as everything else.

Pure: `manifests(plan, app_image)` returns the objects, `kubernetes_yaml` writes them as one stream for
`kubectl apply -f`. Every object lives in the namespace named after the environment, so the services keep
the host names they have under Docker (`rabbitmq`, `postgres`). No credential is written: passwords and the
app's secrets come from Kubernetes Secrets the user creates (`secrets_to_create` names them and their keys).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import yaml

from infra.plan.plan import CLI_SETUP_S, Plan, protects_queues
from infra.plan.services import BROKER_HOST, CELERY_JSON, CONFIG_DIR, DATABASE_HOST, HealthCheck, ServiceSpec
from infra.render.files import broker_settings, dist_optfile

KUBERNETES_FILE = "kubernetes.yaml"
RABBITMQ_API = "rabbitmq.com/v1beta1"
# The Cluster Operator enables these itself (peer discovery through the Kubernetes API among them).
OPERATOR_PLUGINS = {"rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_peer_discovery_k8s"}
APP_SECRET = "app"  # the app's own secrets (Django key, Riot key, database), by stack config key
DATABASE_STORAGE = "10Gi"  # PostgreSQL's volume claim; the Cluster Operator's own default size for the broker
_NAME_LIMIT = 63  # a DNS label: what Service names and label values allow
# Inter-node TLS: the Secret the user creates with the nodes' certificate (a `kubernetes.io/tls` Secret with
# `ca.crt`, as cert-manager writes them), the ConfigMap with the options file, and where the pods mount them.
INTER_NODE_SECRET = f"{BROKER_HOST}-nodes-tls"
INTER_NODE_SECRET_KEYS = ("ca.crt", "tls.crt", "tls.key")
INTER_NODE_CONFIGMAP = f"{BROKER_HOST}-inter-node-tls"
INTER_NODE_CERTS = "/etc/rabbitmq/inter-node-certs"
INTER_NODE_OPTFILE = "/etc/rabbitmq/inter-node-tls.config"


def object_name(*parts: str) -> str:
    """A DNS-1123 label for RabbitMQ names: lower case, `[a-z0-9-]`. A name that had to change gets a
    digest of the original, so `player_sync` and `player-sync` stay two objects."""
    original = "-".join(parts)
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", original.lower())).strip("-") or "x"
    if slug == original and len(slug) <= _NAME_LIMIT:
        return slug
    digest = hashlib.sha256(original.encode()).hexdigest()[:6]
    return f"{slug[: _NAME_LIMIT - 7].rstrip('-')}-{digest}"


def vhost_part(vhost: str) -> str:
    return "root" if vhost == "/" else vhost


def user_secret(user: str) -> str:
    """The Secret holding a RabbitMQ user's `username` and `password` (the Topology Operator's format)."""
    return object_name("rabbitmq-user", user)


@dataclass(frozen=True)
class SecretToCreate:
    name: str
    keys: tuple[str, ...]
    note: str


def secrets_to_create(plan: Plan) -> list[SecretToCreate]:
    """The Secrets the rendered objects read, and the keys each must hold."""
    in_urls = {template.key for spec in plan.services for _, template in spec.secret_env if template.url_quoted}

    def url_note(*keys: str, called: str = "") -> str:
        # `$(VAR)` expansion does not percent-encode, as `render --compose` and the Pulumi program do.
        used = [k for k in keys if k in in_urls]
        return f"; {called or ', '.join(used)} must be URL-safe: it goes into a URL" if used else ""

    users = [
        SecretToCreate(
            user_secret(u.name),
            ("username", "password"),
            f"RabbitMQ user {u.name!r}{url_note(u.password.secret, called='the password')}",
        )
        for u in plan.topology.users
        if u.name != plan.broker.admin_user
    ]
    app_keys = tuple(sorted({ref.secret for _, ref in plan.app_secret_refs}))
    if inter_node_tls(plan):
        users.append(
            SecretToCreate(
                INTER_NODE_SECRET,
                INTER_NODE_SECRET_KEYS,
                f"inter-node TLS: a certificate from the stack's CA (both uses) for "
                f"*.{BROKER_HOST}-nodes.{plan.environment} and "
                f"*.{BROKER_HOST}-nodes.{plan.environment}.svc.cluster.local, its key, and the CA",
            )
        )
    return users + [
        SecretToCreate(APP_SECRET, app_keys, f"the app's secrets, by stack config key{url_note(*app_keys)}")
    ]


def _selector(plan: Plan, name: str) -> dict:
    """What picks a workload's pods: the stack and the service."""
    return {"app.kubernetes.io/instance": plan.environment, "app.kubernetes.io/name": name}


def _meta(plan: Plan, name: str, component: str) -> dict:
    return {
        "name": name,
        "namespace": plan.environment,
        "labels": {
            "app.kubernetes.io/part-of": "rabbitmq-celery",
            **_selector(plan, name),
            "app.kubernetes.io/component": component,
        },
    }


def _rabbitmq(plan: Plan, kind: str, name: str, spec: dict) -> dict:
    return {
        "apiVersion": RABBITMQ_API,
        "kind": kind,
        "metadata": _meta(plan, name, "topology"),
        "spec": {**spec, "rabbitmqClusterReference": {"name": BROKER_HOST}},
    }


def inter_node_tls(plan: Plan) -> bool:
    return bool(plan.broker.tls and plan.broker.tls.inter_node)


def _inter_node_override() -> dict:
    """The Cluster Operator's documented way to inter-node TLS (its `mtls-inter-node` example): the nodes'
    certificate Secret and the options file's ConfigMap mounted into the `rabbitmq` container."""
    return {
        "statefulSet": {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "rabbitmq",
                                "volumeMounts": [
                                    {"mountPath": INTER_NODE_CERTS, "name": "inter-node-tls-certs"},
                                    {
                                        "mountPath": INTER_NODE_OPTFILE,
                                        "name": "inter-node-tls-config",
                                        "subPath": INTER_NODE_OPTFILE.rsplit("/", 1)[1],
                                    },
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "inter-node-tls-config", "configMap": {"name": INTER_NODE_CONFIGMAP}},
                            {
                                "name": "inter-node-tls-certs",
                                "secret": {
                                    "secretName": INTER_NODE_SECRET,
                                    "items": [{"key": k, "path": k, "mode": 0o440} for k in INTER_NODE_SECRET_KEYS],
                                },
                            },
                        ],
                    }
                }
            }
        }
    }


def inter_node_config_map(plan: Plan) -> dict:
    """The nodes' `-ssl_dist_optfile`: one certificate for every pod (`*.<cluster>-nodes.<namespace>`), so
    the peers' names are matched with the wildcard rules."""
    cert_dir = INTER_NODE_CERTS
    text = dist_optfile(
        "every node of the RabbitmqCluster",
        f"{cert_dir}/ca.crt",
        f"{cert_dir}/tls.crt",
        f"{cert_dir}/tls.key",
        wildcard=True,
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(plan, INTER_NODE_CONFIGMAP, "broker"),
        "data": {INTER_NODE_OPTFILE.rsplit("/", 1)[1]: text},
    }


def cluster(plan: Plan) -> dict:
    b = plan.broker
    # The operator owns listeners, files and peer discovery, and logs to the console.
    rabbitmq: dict = {"additionalConfig": broker_settings(plan) + f"log.console.level = {b.log_level}\n"}
    plugins = [p for p in b.plugins if p not in OPERATOR_PLUGINS]
    if plugins:
        rabbitmq["additionalPlugins"] = plugins
    spec: dict = {"replicas": b.nodes, "image": b.image, "service": {"type": "ClusterIP"}, "rabbitmq": rabbitmq}
    if inter_node_tls(plan):  # the server's and the CLI tools' flags, as the operator's example sets them
        args = f"-proto_dist inet_tls -ssl_dist_optfile {INTER_NODE_OPTFILE}"
        cli = f"{args} -kernel net_setuptime {CLI_SETUP_S}"  # as TlsConfig.dist_env gives the CLI tools
        rabbitmq["envConfig"] = f'SERVER_ADDITIONAL_ERL_ARGS="{args}"\nRABBITMQ_CTL_ERL_ARGS="{cli}"\n'
        spec["override"] = _inter_node_override()
    return {
        "apiVersion": RABBITMQ_API,
        "kind": "RabbitmqCluster",
        "metadata": _meta(plan, BROKER_HOST, "broker"),
        "spec": spec,
    }


def topology_objects(plan: Plan) -> list[dict]:
    """Every object says its vhost. The deployer's admin is left out: on Kubernetes the operators act as
    the default user the Cluster Operator creates."""
    t, objects = plan.topology, []
    for vhost, _description in t.vhosts:
        objects.append(_rabbitmq(plan, "Vhost", object_name("vhost", vhost_part(vhost)), {"name": vhost}))
    for u in t.users:
        if u.name != plan.broker.admin_user:
            objects.append(
                _rabbitmq(
                    plan,
                    "User",
                    object_name("user", u.name),
                    {"tags": list(u.tags), "importCredentialsSecret": {"name": user_secret(u.name)}},
                )
            )
    for p in t.permissions:
        if p.user != plan.broker.admin_user:
            objects.append(
                _rabbitmq(
                    plan,
                    "Permission",
                    object_name("permission", p.user, vhost_part(p.vhost)),
                    {
                        "vhost": p.vhost,
                        "userReference": {"name": object_name("user", p.user)},
                        "permissions": {"configure": p.configure, "write": p.write, "read": p.read},
                    },
                )
            )
    for e in t.exchanges:
        objects.append(
            _rabbitmq(
                plan,
                "Exchange",
                object_name("exchange", vhost_part(e.vhost), e.name),
                {"name": e.name, "vhost": e.vhost, "type": e.type, "durable": e.durable, "autoDelete": e.auto_delete},
            )
        )
    # `retain` where Pulumi protects queues: deleting the object must not delete the queue and its messages.
    deletion = "retain" if protects_queues(plan.environment) else "delete"
    for q in t.queues:
        objects.append(
            _rabbitmq(
                plan,
                "Queue",
                object_name("queue", vhost_part(q.vhost), q.name),
                {
                    "name": q.name,
                    "vhost": q.vhost,
                    "type": q.type,
                    "durable": True,
                    "autoDelete": False,
                    "deletionPolicy": deletion,
                },
            )
        )
    for b in t.bindings:
        objects.append(
            _rabbitmq(
                plan,
                "Binding",
                object_name("binding", vhost_part(b.vhost), b.source, b.destination),
                {
                    "vhost": b.vhost,
                    "source": b.source,
                    "destination": b.destination,
                    "destinationType": "queue",
                    "routingKey": b.routing_key,
                },
            )
        )
    for p in t.policies:
        objects.append(
            _rabbitmq(
                plan,
                "Policy",
                object_name("policy", vhost_part(p.vhost), p.name),
                {
                    "name": p.name,
                    "vhost": p.vhost,
                    "pattern": p.pattern,
                    "applyTo": p.apply_to,
                    "priority": p.priority,
                    "definition": p.definition,
                },
            )
        )
    return objects


def _secret_sources(plan: Plan) -> dict[str, tuple[str, str]]:
    """Stack config key → (Secret name, key in it)."""
    sources = {u.password.secret: (user_secret(u.name), "password") for u in plan.topology.users}
    sources.update({ref.secret: (APP_SECRET, ref.secret) for _, ref in plan.app_secret_refs})
    return sources


def env_var_for(secret_key: str) -> str:
    return "SECRET_" + re.sub(r"(?<!^)(?=[A-Z])", "_", secret_key).upper()


def container_env(plan: Plan, spec: ServiceSpec) -> list[dict]:
    """Plain values, then each secret as its own variable, then the values built from them with Kubernetes'
    `$(VAR)` expansion (which needs the variable defined earlier in the list). A whole-value secret is read
    directly."""
    sources = _secret_sources(plan)
    env = [{"name": name, "value": value} for name, value in spec.env]
    derived, helpers = [], {}
    for name, template in spec.secret_env:
        secret, key = sources[template.key]
        ref = {"valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        if template.template == "{secret}":
            env.append({"name": name, **ref})
        else:
            helpers.setdefault(env_var_for(template.key), ref)
            derived.append({"name": name, "value": template.template.format(secret=f"$({env_var_for(template.key)})")})
    return env + [{"name": n, **ref} for n, ref in sorted(helpers.items())] + derived


def _probe(test: tuple[str, ...], check, host: str) -> dict:
    """Docker's health check as an exec probe. The container's host name in it becomes the pod's, which is
    not the container's (`-n pool@%h` names a worker after it)."""
    if f"@{host}" in " ".join(test):
        command = ["sh", "-c", " ".join(test[1:] if test[0] == "CMD" else test[1:2]).replace(f"@{host}", "@$HOSTNAME")]
    else:
        command = list(test[1:]) if test[0] == "CMD" else ["sh", "-c", test[1]]
    return {
        "exec": {"command": command},
        "periodSeconds": _seconds(check.interval),
        "timeoutSeconds": _seconds(check.timeout),
        "failureThreshold": check.retries,
        "initialDelaySeconds": _seconds(check.start_period),
    }


def _seconds(value: str) -> int:
    return int(value.removesuffix("s"))


def workload(plan: Plan, spec: ServiceSpec, app_image: str) -> dict:
    """A Deployment for web, a worker pool or beat; a StatefulSet with a volume claim for PostgreSQL."""
    check = HealthCheck(spec.healthcheck)
    container: dict = {"name": spec.name, "image": app_image if spec.runs_app else spec.image}
    if spec.command:
        container["args"] = list(spec.command)  # Docker's CMD: the image's entry point stays
    container["env"] = container_env(plan, spec)
    if spec.role == "database":  # a fresh volume's root holds lost+found, where initdb refuses to run
        container["env"].append({"name": "PGDATA", "value": f"{spec.volume[1]}/pgdata"})
    if spec.ports:
        container["ports"] = [{"name": "http", "containerPort": p.internal} for p in spec.ports]
    container["livenessProbe"] = _probe(spec.healthcheck, check, spec.hostname)
    if spec.role in ("web", "database"):
        container["readinessProbe"] = {**_probe(spec.healthcheck, check, spec.hostname), "initialDelaySeconds": 5}
    volume_key, path = spec.volume
    mounts = [{"name": volume_key, "mountPath": path}]
    volumes: list[dict] = []
    if spec.runs_app:
        mounts.append({"name": "celery-json", "mountPath": CONFIG_DIR, "readOnly": True})
        volumes.append({"name": "celery-json", "configMap": {"name": "celery-json"}})
        volumes.append({"name": volume_key, "emptyDir": {}})
    container["volumeMounts"] = mounts
    labels = _selector(plan, spec.name)
    pod = {"terminationGracePeriodSeconds": spec.stop_timeout_s, "containers": [container]}
    if volumes:
        pod["volumes"] = volumes
    spec_out: dict = {
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if spec.role == "database":
        spec_out["serviceName"] = DATABASE_HOST
        spec_out["volumeClaimTemplates"] = [
            {
                "metadata": {"name": volume_key},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": DATABASE_STORAGE}}},
            }
        ]
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta(plan, spec.name, spec.role),
            "spec": spec_out,
        }
    if spec.role == "beat":
        spec_out["strategy"] = {"type": "Recreate"}  # two beats would send every periodic task twice
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(plan, spec.name, spec.role),
        "spec": spec_out,
    }


def service(plan: Plan, spec: ServiceSpec, port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(plan, spec.name, spec.role),
        "spec": {"selector": _selector(plan, spec.name), "ports": [{"port": port, "targetPort": port}]},
    }


def manifests(plan: Plan, app_image: str, celery_json: str) -> list[dict]:
    objects: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plan.environment}},
        cluster(plan),
        *([inter_node_config_map(plan)] if inter_node_tls(plan) else []),
        *topology_objects(plan),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(plan, "celery-json", "app"),
            "data": {CELERY_JSON.rsplit("/", 1)[1]: celery_json},
        },
    ]
    for spec in plan.services:
        objects.append(workload(plan, spec, app_image))
        if spec.role == "database":
            objects.append(service(plan, spec, 5432))
        for p in spec.ports:
            objects.append(service(plan, spec, p.internal))
    return objects


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # every object spelled out, no &anchors
        return True


def _text(dumper: yaml.SafeDumper, value: str):
    """Multi-line strings (additionalConfig, celery.json) as literal blocks, readable in a review."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def kubernetes_yaml(plan: Plan, objects: list[dict]) -> str:
    lines = [
        f"# Rendered by `python -m infra render --kubernetes` for the {plan.environment} stack: edit the stack",
        "# definition. Needs the RabbitMQ Cluster Operator and Messaging Topology Operator. Create these",
        f"# Secrets in namespace {plan.environment} first (kubectl create secret generic NAME --from-literal=KEY=...):",
    ]
    lines += [f"#   {s.name}: {', '.join(s.keys)}  ({s.note})" for s in secrets_to_create(plan)]
    body = yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(lines) + "\n" + body
