"""The plan: what a valid definition deploys, as plain data, before any file or resource exists.

Pure functions only. The renderers (`render.py`) and the Pulumi program turn the same plan into files or
resources, so what one declares is what the other writes.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional

from infra.definition.model import Queue, Secret, StackDefinition, TlsSecrets, Vhost, service_users
from infra.plan.permissions import service_access
from infra.plan.services import CONFIG_DIR as APP_CONFIG_DIR
from infra.plan.services import ServiceSpec, app_secrets, broker_hosts, client_host, service_specs

POLICY_PRIORITY = 10  # above the 0 of hand-made catch-all policies, so ours is the one that applies
# Enabled on every broker: `python -m infra migrate` moves a queue's messages with dynamic shovels, and
# enabling a plugin later takes a node restart (every connection drops) just when a migration wants the
# consumers working. Idle, they run no process per shovel; the management part reports a shovel's state.
MIGRATION_PLUGINS = ("rabbitmq_shovel", "rabbitmq_shovel_management")


def boot_definitions_file(nodes: int) -> str:
    """The definitions a node imports at boot. A cluster's nodes boot with the admin user alone: a quorum
    queue gets its members when declared, so the topology is applied once every node has joined (a queue
    the first node imported before the others joined would live on that node only)."""
    return "definitions.json" if nodes == 1 else "boot-definitions.json"


def protects_queues(environment: str) -> bool:
    """Whether deleting a queue from the definition must not delete it (and its messages) from the broker."""
    return environment == "prod"


@dataclass(frozen=True)
class NodeLayout:
    """Where the node runs. In a container it listens on every interface of its own network namespace
    (Docker publishes the ports on `listeners.bind`); on a host it listens on `bind` itself."""

    listen_on_bind: bool = False
    config_dir: str = "/etc/rabbitmq"
    # On a cluster, the nodes' Erlang names. In containers each node is named after its host name
    # (`rabbit@rabbitmq-1` ...); nodes sharing one host name (tests) name themselves.
    node_names: tuple[str, ...] = ()

    def cluster_nodes(self, nodes: int) -> tuple[str, ...]:
        if nodes == 1:
            return ()
        names = self.node_names or tuple(f"rabbit@{h}" for h in broker_hosts(nodes))
        if len(names) != nodes:
            raise ValueError(f"{nodes} nodes need {nodes} names, got {len(names)}")
        return names

    @property
    def tls_dir(self) -> str:
        return f"{self.config_dir.rstrip('/')}/tls"

    @property
    def app_tls_dir(self) -> str:
        """Where the app reads its CA and client certificate: its own container's config directory, or on a
        host the directory the broker's files are in."""
        return self.tls_dir if self.listen_on_bind else f"{APP_CONFIG_DIR}/tls"


CONTAINER = NodeLayout()

# The TLS files by name, and the secret key (a TlsSecrets field) each one's PEM comes from.
BROKER_TLS_FILES = {"ca.pem": "ca_cert", "server.pem": "server_cert", "server.key": "server_key"}
APP_TLS_FILES = {"ca.pem": "ca_cert", "client.pem": "client_cert", "client.key": "client_key"}
# Inter-node TLS: Erlang's TLS distribution reads its options from this file (`-ssl_dist_optfile`), one per
# node since each names its own certificate; node i (from 1) reads these under the TLS directory.
INTER_NODE_OPTFILE = "inter_node_tls-{index}.config"
CLI_SETUP_S = 20  # seconds a CLI tool gives a TLS distribution connection to set up (Erlang's default: 7)


def node_tls_files(index: int) -> dict[str, str]:
    """Node `index`'s (from 1) inter-node certificate and key, by file name under the TLS directory."""
    return {f"node-{index}.pem": "node_cert", f"node-{index}.key": "node_key"}


_NODE_OWN_FILE = re.compile(r"^(?:tls/node-(\d+)\.(?:pem|key)|inter_node_tls-(\d+)\.config)$")


def files_of_node(files: dict, index: int) -> dict:
    """Of a render's files (name → content), those node `index` (from 1) gets: every shared one and its own
    inter-node TLS files, never another node's key."""

    def owner(name: str) -> int | None:
        found = _NODE_OWN_FILE.match(name)
        return int(found.group(1) or found.group(2)) if found else None

    return {name: content for name, content in files.items() if owner(name) in (None, index)}


@dataclass(frozen=True)
class TlsConfig:
    ca: str  # generate | provided
    secrets: TlsSecrets
    plain_listeners: bool
    verify_peer: bool
    amqps_port: int
    management_port: int
    server_names: tuple[str, ...]  # SANs of the server certificate; the first is its subject
    client_name: str  # subject of the app's client certificate: the Celery user
    validity_days: int
    ca_validity_days: int
    broker_dir: str  # where the broker reads BROKER_TLS_FILES
    app_dir: str  # where the app reads APP_TLS_FILES
    # Inter-node TLS: node i's certificate names (its host name, its host's address), in node order; empty
    # when the distribution stays plaintext.
    node_names: tuple[tuple[str, ...], ...] = ()
    config_dir: str = "/etc/rabbitmq"  # where the node reads its ssl_dist_optfile

    @property
    def inter_node(self) -> bool:
        return bool(self.node_names)

    def path(self, name: str) -> str:
        return f"{self.broker_dir}/{name}"

    def node_secret_keys(self, index: int) -> dict[str, str]:
        """Node `index`'s (from 1) inter-node file names → the secret keys holding their PEMs (`tlsNodeCert2`)."""
        return {name: f"{getattr(self.secrets, f)}{index}" for name, f in node_tls_files(index).items()}

    def optfile(self, index: int) -> str:
        return f"{self.config_dir.rstrip('/')}/{INTER_NODE_OPTFILE.format(index=index)}"

    def dist_args(self, index: int) -> str:
        """The Erlang flags of node `index` and of the CLI tools run beside it: TLS distribution with the
        node's own options file (RabbitMQ's documented way: the same flags for the server and the CLI)."""
        return f"-proto_dist inet_tls -ssl_dist_optfile {self.optfile(index)}"

    def dist_env(self, index: int) -> dict[str, str]:
        """The node's environment for inter-node TLS: the server's flags and the CLI tools' (rabbitmqctl,
        rabbitmq-diagnostics, rabbitmq-queues, the health check), empty when it is off."""
        if not self.inter_node:
            return {}
        args = self.dist_args(index)
        # A CLI tool connects once and gives up after Erlang's 7 s setup time; its TLS handshake on a busy
        # host took longer (Docker, 2 loaded cores), so it waits CLI_SETUP_S (the server keeps 7 s).
        return {
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": args,
            "RABBITMQ_CTL_ERL_ARGS": f"{args} -kernel net_setuptime {CLI_SETUP_S}",
        }

    def app_path(self, name: str) -> str:
        return f"{self.app_dir}/{name}"

    def secret_keys(self, files: dict[str, str]) -> dict[str, str]:
        """File name → the secret key holding its PEM."""
        return {name: getattr(self.secrets, field_name) for name, field_name in files.items()}


@dataclass(frozen=True)
class NodeHost:
    """A cluster node's own Docker host (`broker.hosts`)."""

    docker: str  # the daemon URL: pulumi_docker provider `host`
    address: str  # private IPv4: the node publishes its ports there; peers and the app reach it there
    ssh_opts: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrokerConfig:
    image: str
    listen_ip: str
    publish_ip: str
    amqp_port: int
    management_port: int
    prometheus_port: Optional[int]  # None when rabbitmq_prometheus is off
    memory_high_watermark: float
    disk_free_limit_bytes: int
    heartbeat_s: int
    consumer_timeout_ms: int
    connection_max: Optional[int]
    channel_max: int
    log_level: str
    log_console: bool
    log_file: Optional[str]
    plugins: tuple[str, ...]
    definitions_path: str
    admin_user: str  # the user the deployer acts as
    tls: Optional[TlsConfig] = None  # None: plain listeners only

    @property
    def plain(self) -> bool:
        """The plain AMQP and HTTP listeners are on."""
        return self.tls is None or self.tls.plain_listeners

    @property
    def client_scheme(self) -> str:
        return "amqps" if self.tls else "amqp"

    @property
    def client_port(self) -> int:
        """The port clients (the app, the tests) connect to: AMQPS whenever TLS is on."""
        return self.tls.amqps_port if self.tls else self.amqp_port

    @property
    def management_scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def management_client_port(self) -> int:
        return self.tls.management_port if self.tls else self.management_port

    @property
    def management_url(self) -> str:
        """Where the deployer, on the Docker host, reaches the management API (the first node's)."""
        return f"{self.management_scheme}://{client_host(self.publish_ip)}:{self.management_client_port}"

    nodes: int = 1  # cluster size
    cluster_nodes: tuple[str, ...] = ()  # the Erlang node names peer discovery joins; empty on one node
    erlang_cookie: Optional[Secret] = None  # on a cluster
    hosts: tuple[NodeHost, ...] = ()  # a cluster's node i on hosts[i]; empty: every node on the default host
    version: str = "3.13"  # the RabbitMQ series (broker.version): some settings exist from a series on
    management_metrics: bool = True  # 4.x: the deprecated management metrics collection permitted

    @property
    def version_major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass(frozen=True)
class UserSpec:
    name: str
    password: Secret
    tags: tuple[str, ...]


@dataclass(frozen=True)
class PermissionSpec:
    user: str
    vhost: str
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class ExchangeSpec:
    vhost: str
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False


@dataclass(frozen=True)
class QueueSpec:
    """Always durable; its arguments are the queue type and a classic queue's max priority (everything else
    is in its policy): what cannot change without deleting the queue."""

    vhost: str
    name: str
    type: str
    max_priority: Optional[int] = None  # classic only: a quorum queue (4.x) has its two levels undeclared
    renamed_from: Optional[str] = None  # the old queue `migrate` empties into this one, then deletes

    @property
    def arguments(self) -> dict:
        return {"x-queue-type": self.type, **({"x-max-priority": self.max_priority} if self.max_priority else {})}


@dataclass(frozen=True)
class BindingSpec:
    vhost: str
    source: str
    destination: str
    routing_key: str


@dataclass(frozen=True)
class PolicySpec:
    vhost: str
    name: str
    pattern: str
    definition: dict = field(hash=False)
    apply_to: str = "queues"
    priority: int = POLICY_PRIORITY


@dataclass(frozen=True)
class Topology:
    vhosts: tuple[tuple[str, str], ...]  # (name, description)
    users: tuple[UserSpec, ...]
    permissions: tuple[PermissionSpec, ...]
    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]
    bindings: tuple[BindingSpec, ...]
    policies: tuple[PolicySpec, ...]

    def password_key(self, user: str) -> str:
        """The secret key that holds `user`'s password."""
        return next(u.password.secret for u in self.users if u.name == user)

    def only_user(self, name: str) -> "Topology":
        """This topology reduced to one user and nothing else: what a broker managed through its API
        needs at boot (the admin the deployer logs in as)."""
        return Topology(
            vhosts=(),
            users=tuple(u for u in self.users if u.name == name),
            permissions=(),
            exchanges=(),
            queues=(),
            bindings=(),
            policies=(),
        )


@dataclass(frozen=True)
class WorkerPoolSpec:
    name: str
    queues: tuple[str, ...]
    concurrency: int
    pool: str
    prefetch_multiplier: int

    @property
    def command(self) -> tuple[str, ...]:
        """The seed's command line for this pool."""
        return (
            "celery",
            "-A",
            "config",
            "worker",
            "-l",
            "info",
            "-Q",
            ",".join(self.queues),
            "--concurrency",
            str(self.concurrency),
            "--pool",
            self.pool,
            "--prefetch-multiplier",
            str(self.prefetch_multiplier),
            "-n",
            f"{self.name}@%h",
        )


@dataclass(frozen=True)
class Plan:
    environment: str
    broker: BrokerConfig
    topology: Topology
    celery: dict  # the content of celery.json
    workers: tuple[WorkerPoolSpec, ...]
    services: tuple[ServiceSpec, ...] = ()
    app_secret_refs: tuple[tuple[tuple, Secret], ...] = ()

    def secrets(self) -> list[tuple[tuple, Secret]]:
        """(definition key path, reference) of every credential the broker's files need."""
        cookie = [(("broker", "erlang_cookie"), self.broker.erlang_cookie)] if self.broker.erlang_cookie else []
        return [(("users", u.name, "password"), u.password) for u in self.topology.users] + cookie

    def tls_secrets(self) -> list[tuple[tuple, str]]:
        """(definition key path, secret key) of every TLS PEM the rendered files need; none without TLS.
        The generated CA's key only with `ca: generate` (it issues the rest)."""
        tls = self.broker.tls
        if tls is None:
            return []
        node_fields = ("node_cert", "node_key")
        names = [
            f.name
            for f in dataclasses.fields(tls.secrets)
            if (tls.ca == "generate" or f.name != "ca_key") and f.name not in node_fields
        ]
        found = [(("broker", "tls", "secrets", n), getattr(tls.secrets, n)) for n in names]
        for index in range(1, len(tls.node_names) + 1):  # inter-node TLS: each node's own, `tlsNodeCert1` ...
            found += [(("broker", "tls", "secrets", f), f"{getattr(tls.secrets, f)}{index}") for f in node_fields]
        return found

    def all_secrets(self) -> list[tuple[tuple, Secret]]:
        """The broker's credentials and the app's (Django secret key, Riot API key)."""
        return self.secrets() + list(self.app_secret_refs)


def server_names(d: StackDefinition) -> tuple[str, ...]:
    """The names the broker is reached by: its container alias, this host, the bind address, the nodes' own
    hosts' addresses, the extra ones."""
    bind = str(d.broker.listeners.bind)
    names = (
        [*broker_hosts(int(d.broker.nodes)), "localhost", "127.0.0.1"]
        + ([bind] if bind not in ("0.0.0.0", "::") else [])
        + [str(h.address) for h in d.broker.hosts]
    )  # the deployer reaches the management API there
    return tuple(dict.fromkeys(names + list(d.broker.tls.server_names)))


# The subject of the client certificate every app container presents (web, beat and the pools share it: the
# broker authenticates each service by its own user and password, the certificate proves it is the app's).
TLS_CLIENT_NAME = "app"


def inter_node_tls(d: StackDefinition) -> bool:
    """Whether the cluster's Erlang distribution runs over TLS: as set, or unset, whenever TLS is on and there
    is more than one node (the nodes replicate every message of a quorum queue to each other)."""
    t = d.broker.tls
    on = t.inter_node if t.inter_node is not None else t.enabled
    return bool(on and t.enabled and d.broker.nodes > 1)


def node_cert_names(d: StackDefinition, layout: NodeLayout) -> tuple[tuple[str, ...], ...]:
    """Each node's certificate names: the host part of its Erlang name (what a peer connects to), and its
    host's address with `broker.hosts`."""
    hosts = [str(h.address) for h in d.broker.hosts]
    return tuple(
        tuple(dict.fromkeys([name.split("@", 1)[1], *hosts[i : i + 1]]))
        for i, name in enumerate(layout.cluster_nodes(int(d.broker.nodes)))
    )


def tls_config(d: StackDefinition, layout: NodeLayout) -> Optional[TlsConfig]:
    t = d.broker.tls
    if not t.enabled:
        return None
    return TlsConfig(
        ca=t.ca,
        secrets=t.secrets,
        plain_listeners=t.plain_listeners,
        verify_peer=t.verify_peer,
        amqps_port=int(t.amqps),
        management_port=int(t.management),
        server_names=server_names(d),
        client_name=TLS_CLIENT_NAME,
        validity_days=int(t.validity_days),
        ca_validity_days=int(t.ca_validity_days),
        broker_dir=layout.tls_dir,
        app_dir=layout.app_tls_dir,
        node_names=node_cert_names(d, layout) if inter_node_tls(d) else (),
        config_dir=layout.config_dir,
    )


def broker_config(d: StackDefinition, layout: NodeLayout) -> BrokerConfig:
    b = d.broker
    return BrokerConfig(
        image=b.image,
        listen_ip=str(b.listeners.bind) if layout.listen_on_bind else "0.0.0.0",
        publish_ip=str(b.listeners.bind),
        amqp_port=int(b.listeners.amqp),
        management_port=int(b.listeners.management),
        prometheus_port=int(b.listeners.prometheus) if "rabbitmq_prometheus" in b.plugins else None,
        memory_high_watermark=b.memory_high_watermark,
        disk_free_limit_bytes=int(b.disk_free_limit),
        heartbeat_s=int(b.heartbeat) // 1000,
        consumer_timeout_ms=int(b.consumer_timeout),
        connection_max=None if b.connection_max is None else int(b.connection_max),
        channel_max=int(b.channel_max),
        log_level=b.log.level,
        log_console="console" in b.log.targets,
        log_file=b.log.file if "file" in b.log.targets else None,
        plugins=tuple(dict.fromkeys([*b.plugins, *MIGRATION_PLUGINS])),
        definitions_path=f"{layout.config_dir.rstrip('/')}/{boot_definitions_file(int(b.nodes))}",
        admin_user=b.admin_user,
        tls=tls_config(d, layout),
        nodes=int(b.nodes),
        cluster_nodes=layout.cluster_nodes(int(b.nodes)),
        erlang_cookie=b.erlang_cookie if b.nodes > 1 else None,
        hosts=tuple(NodeHost(h.docker, str(h.address), tuple(h.ssh_opts)) for h in b.hosts),
        version=str(b.version),
        management_metrics=b.management_metrics,
    )


def queue_policy(vname: str, vhost: Vhost, qname: str) -> Optional[PolicySpec]:
    """The one policy of a queue, with only the keys its type supports (validation refused the rest)."""
    q = vhost.queues[qname]
    definition: dict = {}
    if q.ttl is not None:
        definition["message-ttl"] = int(q.ttl)
    if q.max_length is not None:
        definition["max-length"] = int(q.max_length)
    if q.max_length_bytes is not None:
        definition["max-length-bytes"] = int(q.max_length_bytes)
    if q.overflow is not None:
        definition["overflow"] = q.overflow
    if q.dead_letter is not None:
        definition["dead-letter-exchange"] = vhost.dead_letter_exchange
        definition["dead-letter-routing-key"] = q.dead_letter
    if q.delivery_limit is not None:
        definition["delivery-limit"] = int(q.delivery_limit)
    if not definition:
        return None
    return PolicySpec(vname, f"queue.{qname}", f"^{re.escape(qname)}$", definition)


def queue_spec(vname: str, qname: str, q: Queue) -> QueueSpec:
    """A classic queue's max priority is its argument; a quorum queue's two levels (4.x) are not declared."""
    return QueueSpec(
        vname, qname, q.type, int(q.max_priority) if q.max_priority and q.type == "classic" else None, q.renamed_from
    )


def topology(d: StackDefinition) -> Topology:
    exchanges, queues, bindings, policies = [], [], [], []
    for vname in sorted(d.vhosts):
        vhost = d.vhosts[vname]
        for ename in sorted(vhost.exchanges):
            e = vhost.exchanges[ename]
            exchanges.append(ExchangeSpec(vname, ename, e.type, e.durable, e.auto_delete, e.internal))
        targets = sorted({q.dead_letter for q in vhost.queues.values() if q.dead_letter})
        if targets:
            exchanges.append(ExchangeSpec(vname, vhost.dead_letter_exchange, "direct"))
        for qname in sorted(vhost.queues):
            q = vhost.queues[qname]
            queues.append(queue_spec(vname, qname, q))
            bindings.append(BindingSpec(vname, q.exchange or vhost.default_exchange, qname, q.routing_key or qname))
            if qname in targets:
                bindings.append(BindingSpec(vname, vhost.dead_letter_exchange, qname, qname))
            policy = queue_policy(vname, vhost, qname)
            if policy:
                policies.append(policy)
    users = tuple(UserSpec(name, u.password, tuple(u.tags)) for name, u in sorted(d.users.items()))
    # Hand-written roles, and the Celery services' permissions derived from the definition (permissions.py).
    permissions = tuple(
        sorted(
            [
                PermissionSpec(name, vhost, d.roles[role].configure, d.roles[role].write, d.roles[role].read)
                for name, u in d.users.items()
                for vhost, role in u.permissions.items()
            ]
            + [PermissionSpec(a.user, d.celery.vhost, a.configure, a.write, a.read) for a in service_access(d)],
            key=lambda p: (p.user, p.vhost),
        )
    )
    return Topology(
        vhosts=tuple((name, d.vhosts[name].description) for name in sorted(d.vhosts)),
        users=users,
        permissions=permissions,
        exchanges=tuple(exchanges),
        queues=tuple(queues),
        bindings=tuple(bindings),
        policies=tuple(policies),
    )


def _queue_declaration(vhost: Vhost, qname: str) -> dict:
    """A queue as kombu must declare it: the broker's exact arguments, exchange and routing key."""
    q = vhost.queues[qname]
    exchange_name = q.exchange or vhost.default_exchange
    exchange = vhost.exchanges[exchange_name]
    return {
        "name": qname,
        "exchange": exchange_name,
        "exchange_type": exchange.type,
        "exchange_durable": exchange.durable,
        "routing_key": q.routing_key or qname,
        "durable": True,
        "queue_arguments": queue_spec("", qname, q).arguments,
        # The deployer declares it; Celery only uses it, so its users need no `configure` on it.
        "no_declare": True,
    }


def celery_declarations(d: StackDefinition, tls: Optional[TlsConfig] = None) -> dict:
    """The content of celery.json: everything the Celery app declares, taken from the broker's plan, the
    broker limits its own settings must respect (heartbeat, consumer timeout), and with TLS the paths (not
    the contents) of the app's CA and client certificate."""
    c = d.celery
    vhost = d.vhosts[c.vhost]
    task_queues = [n for n in vhost.queues if not vhost.queues[n].parking]
    parking = [n for n in vhost.queues if vhost.queues[n].parking]
    default = _queue_declaration(vhost, c.default_queue)
    routes, annotations = {}, {}

    def route(qname: str) -> dict:
        decl = _queue_declaration(vhost, qname)
        return {"queue": decl["name"], "exchange": decl["exchange"], "routing_key": decl["routing_key"]}

    for task in sorted(c.routes):
        options = c.route_options.get(task)
        routes[task] = {
            **route(c.routes[task]),
            **({"priority": int(options.priority)} if options and options.priority is not None else {}),
            **({"compression": options.compression} if options and options.compression else {}),
        }
        rate = vhost.queues[c.routes[task]].rate_limit
        if rate is not None:
            annotations[task] = {"rate_limit": str(rate)}
    declarations = {
        "broker_vhost": c.vhost,
        "broker_users": service_users(d),
        "broker_heartbeat_s": int(d.broker.heartbeat) // 1000,
        "broker_consumer_timeout_ms": int(d.broker.consumer_timeout),
        "task_default_queue": c.default_queue,
        "task_default_exchange": default["exchange"],
        "task_default_exchange_type": default["exchange_type"],
        "task_default_routing_key": default["routing_key"],
        "task_queues": [_queue_declaration(vhost, n) for n in sorted(task_queues)],
        "task_routes": routes,
        # The app's router sends these by the Riot routing region of their arguments (config/topology.py).
        "task_regional_routes": {
            task: {region: route(q) for region, q in sorted(by_region.items())}
            for task, by_region in sorted(c.regional_routes.items())
        },
        "task_annotations": annotations,
        "task_compression": c.compression,
        "dead_letter": {
            "exchange": vhost.dead_letter_exchange,
            "routes": {n: q.dead_letter for n, q in sorted(vhost.queues.items()) if q.dead_letter},
            "parking_queues": [_queue_declaration(vhost, n) for n in sorted(parking)],
        },
    }
    if tls is not None:
        declarations["broker_tls"] = {
            "ca_certs": tls.app_path("ca.pem"),
            "certfile": tls.app_path("client.pem"),
            "keyfile": tls.app_path("client.key"),
        }
    return declarations


def build_plan(d: StackDefinition, layout: NodeLayout = CONTAINER) -> Plan:
    """The whole plan of a definition that passed validation."""
    workers = tuple(
        WorkerPoolSpec(name, tuple(p.queues), int(p.concurrency), p.pool, int(p.prefetch_multiplier))
        for name, p in sorted(d.celery.workers.items())
    )
    broker = broker_config(d, layout)
    return Plan(
        d.environment,
        broker,
        topology(d),
        celery_declarations(d, broker.tls),
        workers,
        service_specs(d, workers, broker.publish_ip, broker.client_port, broker.client_scheme),
        tuple(app_secrets(d)),
    )
