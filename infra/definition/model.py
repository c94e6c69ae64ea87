"""The stack definition as typed data: one dataclass per object, each field documented where it is declared.

`build.py` turns loaded YAML into these classes (types, units, unknown keys); `validate.py` checks what
spans several objects; `plan.py` turns a valid definition into what gets deployed. The field
reference is generated from the `doc=` strings here (`python -m infra docs`), so they are the documentation.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Literal, Optional

from infra.definition.units import Duration, RateLimit, RiotRateLimit, Size

QueueType = Literal["quorum", "classic"]
Overflow = Literal["drop-head", "reject-publish", "reject-publish-dlx"]
ExchangeType = Literal["direct", "topic", "fanout", "headers"]
LogLevel = Literal["debug", "info", "warning", "error", "critical", "none"]
LogTarget = Literal["console", "file"]
UserTag = Literal["administrator", "monitoring", "management", "policymaker", "impersonator"]
WorkerPoolType = Literal["prefork", "threads", "solo"]
DatabaseKind = Literal["postgres", "url", "sqlite"]
TlsCa = Literal["generate", "provided"]
# Riot's routing regions (account-v1, match-v5): a regional route names a queue for each.
RIOT_REGIONS = ("americas", "asia", "europe", "sea")

# Erlang distribution, published by a node on its own host (`broker.hosts`) for its peers on other hosts:
# epmd, and the port the node listens on for its peers, RabbitMQ's default (5672 + 20000) pinned with
# RABBITMQ_DIST_PORT. Published unchanged, as epmd tells a peer the port the node listens on.
EPMD_PORT = 4369
DIST_PORT = 25672

# Plugins shipped in the official rabbitmq:3.13 and 4.x images and in Debian's 3.10 package; an unknown
# name would stop the node at boot, so the definition is checked against this list.
KNOWN_PLUGINS = (
    "rabbitmq_amqp1_0",
    "rabbitmq_auth_backend_cache",
    "rabbitmq_auth_backend_http",
    "rabbitmq_auth_backend_ldap",
    "rabbitmq_auth_backend_oauth2",
    "rabbitmq_auth_mechanism_ssl",
    "rabbitmq_consistent_hash_exchange",
    "rabbitmq_event_exchange",
    "rabbitmq_federation",
    "rabbitmq_federation_management",
    "rabbitmq_jms_topic_exchange",
    "rabbitmq_management",
    "rabbitmq_management_agent",
    "rabbitmq_mqtt",
    "rabbitmq_peer_discovery_aws",
    "rabbitmq_peer_discovery_consul",
    "rabbitmq_peer_discovery_etcd",
    "rabbitmq_peer_discovery_k8s",
    "rabbitmq_prometheus",
    "rabbitmq_random_exchange",
    "rabbitmq_recent_history_exchange",
    "rabbitmq_sharding",
    "rabbitmq_shovel",
    "rabbitmq_shovel_management",
    "rabbitmq_stomp",
    "rabbitmq_stream",
    "rabbitmq_stream_management",
    "rabbitmq_top",
    "rabbitmq_tracing",
    "rabbitmq_trust_store",
    "rabbitmq_web_dispatch",
    "rabbitmq_web_mqtt",
    "rabbitmq_web_stomp",
)


def field(default=dataclasses.MISSING, *, doc: str, factory=dataclasses.MISSING):
    """A model field: its default (or `factory` for lists and maps) and the sentence the field reference shows."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"doc": doc})


class _BoundedInt(int):
    low: int = 1
    high: int | None = None
    label = expected = ""

    @classmethod
    def parse(cls, raw: object):
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < cls.low or (cls.high and raw > cls.high):
            raise ValueError(f"expected {cls.expected}, got {raw!r}")
        return cls(raw)


class PositiveInt(_BoundedInt):
    label = "integer ≥ 1"
    expected = "a whole number of at least 1"


class Priority(_BoundedInt):
    low, high = 0, 255
    label = "priority 0–255"
    expected = "a whole number from 0 to 255"


class MaxPriority(_BoundedInt):
    high = 255
    label = "integer 1–255"
    expected = "a whole number from 1 to 255 (RabbitMQ advises at most 10)"


# The RabbitMQ series a stack may target: Debian bookworm's 3.10 (the tests' default nodes), the official
# images' 3.11 to 3.13, and 4.0 / 4.1 (Debian trixie ships 4.0).
RABBITMQ_SERIES = ("3.10", "3.11", "3.12", "3.13", "4.0", "4.1")


class RabbitVersion(str):
    """A RabbitMQ release series, "MAJOR.MINOR". Quoted in YAML: an unquoted 3.10 is the number 3.1."""

    label = "RabbitMQ series"
    expected = f"a quoted RabbitMQ series, one of {', '.join(RABBITMQ_SERIES)}"

    @classmethod
    def parse(cls, raw: object) -> "RabbitVersion":
        text = str(raw) if isinstance(raw, (str, float)) and not isinstance(raw, bool) else ""
        if text not in RABBITMQ_SERIES:
            hint = " (quote it: unquoted, 3.10 is the number 3.1)" if isinstance(raw, float) else ""
            raise ValueError(f"expected {cls.expected}, got {raw!r}{hint}")
        return cls(text)

    @property
    def major(self) -> int:
        return int(self.split(".")[0])


class Port(_BoundedInt):
    high = 65535
    label = "port"
    expected = "a TCP port from 1 to 65535"


class IPAddress(str):
    label = "IP address"
    expected = "an IP address such as 127.0.0.1 or 0.0.0.0"

    @classmethod
    def parse(cls, raw: object) -> "IPAddress":
        try:
            return cls(ipaddress.ip_address(raw))
        except ValueError:
            raise ValueError(f"expected {cls.expected}, got {raw!r}") from None

    @property
    def is_private_or_loopback(self) -> bool:
        address = ipaddress.ip_address(self)
        return address.is_loopback or (address.is_private and not address.is_unspecified)


class DockerHost(str):
    """Where a Docker daemon answers: what `DOCKER_HOST` and pulumi_docker's provider `host` take."""

    label = "Docker daemon URL"
    expected = "a Docker daemon URL: unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST"

    @classmethod
    def parse(cls, raw: object) -> "DockerHost":
        scheme, _, rest = raw.partition("://") if isinstance(raw, str) else ("", "", "")
        if scheme not in ("unix", "tcp", "ssh") or not rest or any(c.isspace() for c in rest):
            raise ValueError(f"expected {cls.expected}, got {raw!r}")
        return cls(raw)

    @property
    def is_ssh(self) -> bool:
        return self.startswith("ssh://")


class NodeAddress(IPAddress):
    """A broker node's address on the network its peers and the app share. Docker publishes ports on an IP
    and a container's /etc/hosts maps names to IPs, so a DNS name would not do; IPv4, because the nodes'
    Erlang distribution is inet_tcp."""

    label = "private IPv4 address"
    expected = "a private IPv4 address such as 10.0.0.11 (where the other nodes and the app reach this node)"

    @classmethod
    def parse(cls, raw: object) -> "NodeAddress":
        try:
            address = ipaddress.IPv4Address(raw)
        except ValueError:
            raise ValueError(f"expected {cls.expected}, got {raw!r}") from None
        if address.is_loopback or address.is_unspecified:
            raise ValueError(
                f"expected {cls.expected}, got {raw!r}: the other nodes, on other hosts, cannot reach a node there"
            )
        return cls(str(address))

    @property
    def is_public(self) -> bool:
        """Routed on the internet (not RFC 1918, not shared address space such as a VPN's 100.64/10)."""
        return ipaddress.IPv4Address(self).is_global


@dataclass(frozen=True)
class Secret:
    """Where a credential comes from; its value never appears in a definition."""

    secret: str = field(
        doc="Stack config key holding the value: `pulumi config set --secret KEY` (for "
        "`render`: the key in the secrets file)."
    )
    generate: bool = field(
        False,
        doc="Generate a random value when the key is not set (Pulumi: "
        "`RandomPassword`; `render`: kept in the 0600 secrets file).",
    )


@dataclass(frozen=True)
class Log:
    level: LogLevel = field("info", doc="Log level of every target.")
    targets: list[LogTarget] = field(
        factory=lambda: ["console", "file"], doc="Where the node logs: `console` (container output) and/or `file`."
    )
    file: str = field("rabbit.log", doc="Log file name, under the node's log directory.")


@dataclass(frozen=True)
class Listeners:
    bind: IPAddress = field(
        IPAddress("127.0.0.1"),
        doc="Host address the AMQP, management and Prometheus ports are reachable on: "
        "Docker publishes them there; a node on the host listens there.",
    )
    amqp: Port = field(Port(5672), doc="AMQP 0-9-1 port.")
    management: Port = field(Port(15672), doc="Management UI and HTTP API port.")
    prometheus: Port = field(Port(15692), doc="Prometheus metrics port (with `rabbitmq_prometheus`).")


@dataclass(frozen=True)
class TlsSecrets:
    """Where the PEM texts live: stack config secrets (`pulumi config set --secret KEY < file.pem`), or for
    `render`, keys of the secrets file. Never the PEM itself in a definition."""

    ca_cert: str = field("tlsCaCert", doc="The CA certificate clients and the broker trust.")
    ca_key: str = field(
        "tlsCaKey",
        doc="`render` with `ca: generate` only: the generated CA's private key, "
        "kept so later certificates come from the same CA (Pulumi keeps "
        "its CA key in the stack's state, as a secret).",
    )
    server_cert: str = field("tlsServerCert", doc="The broker's certificate, signed by the CA.")
    server_key: str = field("tlsServerKey", doc="The broker's private key.")
    client_cert: str = field("tlsClientCert", doc="The app's client certificate (web, workers, beat).")
    client_key: str = field("tlsClientKey", doc="The app's client private key.")
    node_cert: str = field(
        "tlsNodeCert",
        doc="Inter-node TLS with `ca: provided`: node i's certificate is the secret "
        "`<this><i>` (`tlsNodeCert1` ...), for the node's host name (`rabbitmq-<i>`), signed by the CA.",
    )
    node_key: str = field("tlsNodeKey", doc="Inter-node TLS with `ca: provided`: node i's private key, `<this><i>`.")


@dataclass(frozen=True)
class Tls:
    """AMQPS and HTTPS listeners (RabbitMQ's `ssl_options`, TLS 1.2 and 1.3); the app connects with
    verification."""

    enabled: bool = field(
        False,
        doc="Serve AMQPS and HTTPS management (and Prometheus over TLS when the "
        "plain listeners are off). Required in prod.",
    )
    ca: TlsCa = field(
        "generate",
        doc="`generate`: a private CA for the stack (Pulumi: `pulumi_tls`; "
        "`render`: the `cryptography` package) issues the server and client "
        "certificates; `provided`: the five PEMs under `secrets` are yours.",
    )
    secrets: TlsSecrets = field(factory=TlsSecrets, doc="Secret keys of the certificates and keys.")
    plain_listeners: bool = field(
        False,
        doc="Keep plain AMQP, HTTP management and Prometheus listeners "
        "beside the TLS ones (e.g. while clients move over); refused "
        "in prod.",
    )
    verify_peer: bool = field(
        True,
        doc="Mutual TLS: every AMQPS client must present a certificate signed "
        "by the CA (`ssl_options.verify = verify_peer`, "
        "`fail_if_no_peer_cert = true`); passwords are still checked.",
    )
    amqps: Port = field(Port(5671), doc="AMQPS port.")
    management: Port = field(Port(15671), doc="HTTPS management UI and API port.")
    server_names: list[str] = field(
        factory=list,
        doc="Host names and addresses clients reach the broker "
        "by, besides `rabbitmq`, `localhost`, 127.0.0.1, "
        "`listeners.bind` and the `hosts` addresses: each "
        "becomes a SAN.",
    )
    validity_days: PositiveInt = field(
        PositiveInt(365), doc="Lifetime of issued server and client certificates (`ca: generate`)."
    )
    ca_validity_days: PositiveInt = field(PositiveInt(3650), doc="Lifetime of the generated CA.")
    inter_node: Optional[bool] = field(
        None,
        doc="Erlang distribution between a cluster's nodes (and from their CLI tools) over TLS "
        "(`-proto_dist inet_tls`): a certificate per node from the stack's CA, `verify_peer` and "
        "`fail_if_no_peer_cert` both ways. Unset: on whenever TLS is on and `nodes` > 1, since the "
        "nodes replicate every message to each other; `false` leaves it plaintext, guarded by the "
        "Erlang cookie alone.",
    )


@dataclass(frozen=True)
class BrokerHost:
    """One cluster node's machine: the Docker daemon Pulumi creates the node on, and its address."""

    docker: DockerHost = field(
        doc="The node's Docker daemon (pulumi_docker provider `host`): `unix://...`, "
        "`tcp://HOST:PORT` or `ssh://USER@HOST`."
    )
    address: NodeAddress = field(
        doc="The host's private IPv4 address: the node publishes its ports there "
        "(AMQP, management, Prometheus, and Erlang distribution: epmd 4369 and "
        "25672), and the other nodes and the app reach `rabbitmq-<i>` there. A "
        "public address is refused: the distribution port is guarded by the "
        "Erlang cookie alone."
    )
    ssh_opts: list[str] = field(
        factory=list,
        doc="`ssh://` only: extra `ssh` options (provider `ssh_opts`), "
        "e.g. `[-i, ~/.ssh/deploy, -o, StrictHostKeyChecking=yes]`.",
    )


@dataclass(frozen=True)
class Broker:
    version: RabbitVersion = field(
        RabbitVersion("3.13"),
        doc=(
            "RabbitMQ series the stack targets; `image` must be that series when it is the official image. "
            "Validation refuses what the series lacks (priorities on quorum queues before 4.0). What 4.x does "
            "differently: a quorum queue without `delivery_limit` dead-letters (or drops) a message after 20 "
            "returns instead of requeueing it forever; classic queue mirroring is gone (the toolkit never "
            "used it: replicated queues are quorum); quorum queues honour message priorities; Khepri may "
            "replace Mnesia as the metadata store (a feature flag the toolkit leaves off); with TLS only, "
            "`rabbitmq.conf` gets `prometheus.tcp.listener = none` (4.x would open a plain metrics port 15692)."
        ),
    )
    image: str = field("rabbitmq:3.13-management", doc="Broker container image.")
    memory_high_watermark: float = field(
        0.6, doc="Fraction of RAM, in (0, 1], above which publishers are blocked (`vm_memory_high_watermark.relative`)."
    )
    disk_free_limit: Size = field(
        Size(2 * 10**9), doc="Free disk below which publishers are blocked (`disk_free_limit.absolute`)."
    )
    heartbeat: Duration = field(Duration(60_000), doc="AMQP heartbeat the server proposes; whole seconds.")
    consumer_timeout: Duration = field(
        Duration(30 * 60_000),
        doc="How long a delivery may stay unacknowledged before the broker "
        "closes the channel; Celery time limits must stay below it.",
    )
    connection_max: Optional[PositiveInt] = field(None, doc="Most client connections; unset is unlimited.")
    channel_max: PositiveInt = field(PositiveInt(2047), doc="Most channels per connection.")
    log: Log = field(factory=Log, doc="Logging.")
    listeners: Listeners = field(factory=Listeners, doc="Ports and the address they are reachable on.")
    plugins: list[str] = field(
        factory=lambda: ["rabbitmq_management", "rabbitmq_prometheus"],
        doc="Enabled plugins; `rabbitmq_management` is required (the deployer uses its API).",
    )
    management_metrics: bool = field(
        True,
        doc="RabbitMQ 4.x: keep the management plugin's metrics collection (a deprecated feature 4.x still "
        "permits, and logs at boot): the management UI's message rates and per-queue charts come from it. "
        "`false` renders `deprecated_features.permit.management_metrics_collection = false`; metrics then "
        "come from Prometheus alone, and `migrate` and `upgrade` still see when a queue is drained. 3.x has "
        "no such switch (refused).",
    )
    admin_user: str = field("admin", doc="The user (with the `administrator` tag) the deployer acts as.")
    tls: Tls = field(factory=Tls, doc="TLS for AMQP, management and Prometheus.")
    public_management: bool = field(
        False, doc="Allow the management listener on a public address outside dev (refused otherwise)."
    )
    nodes: PositiveInt = field(
        PositiveInt(1),
        doc="RabbitMQ nodes: 1, or an odd number of at least 3 for a cluster (quorum queues need a majority).",
    )
    allow_classic_task_queues: bool = field(
        False, doc="On a cluster, allow classic task queues (each lives on one node; refused otherwise)."
    )
    erlang_cookie: Secret = field(
        Secret("rabbitmqErlangCookie", generate=True),
        doc="On a cluster: the secret the nodes (and their CLI tools) share to talk to each other.",
    )
    hosts: list[BrokerHost] = field(
        factory=list,
        doc="On a cluster, optionally one Docker host per node, in "
        "node order (as many as `nodes`): node i runs on "
        "`hosts[i-1]`; unset, every node runs on Pulumi's "
        "default Docker host. Pulumi only: `render --compose` "
        "refuses it, `render --kubernetes` leaves it out "
        "(with a warning).",
    )


@dataclass(frozen=True)
class Role:
    """What a user may do in a vhost: three regular expressions over resource names (RabbitMQ's own)."""

    configure: str = field("", doc="Regex of exchanges and queues the user may declare and delete; empty is none.")
    write: str = field("", doc="Regex of exchanges (and queues) the user may publish to or bind from.")
    read: str = field("", doc="Regex of queues the user may consume from and exchanges it may bind to.")


@dataclass(frozen=True)
class User:
    password: Secret = field(doc="The password's source: `{secret: KEY, generate: true}`.")
    tags: list[UserTag] = field(factory=list, doc="Management tags, e.g. `administrator`, `monitoring`.")
    permissions: dict[str, str] = field(factory=dict, doc="Vhost name → role name (from `roles`).")


@dataclass(frozen=True)
class Exchange:
    type: ExchangeType = field(
        "topic",
        doc="Exchange type. Task exchanges are `topic`: Celery's native delayed delivery on quorum queues requires it.",
    )
    durable: bool = field(True, doc="Survives a broker restart.")
    auto_delete: bool = field(False, doc="Deleted when its last binding goes.")
    internal: bool = field(
        False,
        doc="Only other exchanges may publish to it. Refused for now: "
        "pulumi-rabbitmq cannot create internal exchanges.",
    )


@dataclass(frozen=True)
class Queue:
    """A durable queue. Everything but `type` is applied by one policy per queue, so it changes in place."""

    type: QueueType = field("quorum", doc="`quorum` (replicated, Raft) or `classic`; the only queue argument.")
    exchange: Optional[str] = field(
        None, doc="Exchange the queue is bound to; unset is the vhost's `default_exchange`."
    )
    routing_key: Optional[str] = field(None, doc="Binding and Celery routing key; unset is the queue name.")
    ttl: Optional[Duration] = field(None, doc="Messages older than this are dead-lettered (`message-ttl`).")
    max_length: Optional[PositiveInt] = field(None, doc="Most messages ready in the queue (`max-length`).")
    max_length_bytes: Optional[Size] = field(None, doc="Most bytes of ready message bodies (`max-length-bytes`).")
    overflow: Optional[Overflow] = field(
        None,
        doc="At a max length: `drop-head` dead-letters the oldest "
        "(the broker's default), `reject-publish` nacks the "
        "publisher, `reject-publish-dlx` (classic only) also "
        "dead-letters the rejected message.",
    )
    dead_letter: Optional[str] = field(
        None,
        doc="Queue of the same vhost that expired, dropped and rejected "
        "messages go to, through the vhost's dead-letter exchange.",
    )
    delivery_limit: Optional[PositiveInt] = field(
        None,
        doc="Quorum only: deliveries after which a message "
        "is dead-lettered instead of requeued. Unset: "
        "unlimited on RabbitMQ 3.x, 20 on 4.x.",
    )
    max_priority: Optional[MaxPriority] = field(
        None,
        doc=(
            "Message priorities. Classic: the queue's `x-max-priority` argument (priorities 0 to this; an "
            "argument, not a policy: a change is a queue migration, its messages moved to the re-created "
            "queue by `python -m infra migrate`). Quorum (RabbitMQ 4.0+ only): nothing is declared, the queue has two levels, priority 5 "
            "and above before 0 to 4; this is the highest priority a route may send."
        ),
    )
    rate_limit: Optional[RateLimit] = field(
        None, doc="Celery rate limit of the tasks routed here, per worker process pool, e.g. `10/m`."
    )
    parking: bool = field(
        False, doc="A queue that holds dead letters for inspection and replay; no worker consumes it."
    )
    renamed_from: Optional[str] = field(
        None,
        doc="The queue's former name in the same vhost: `python -m infra "
        "migrate` moves its messages here, then deletes it "
        "(docs/migrations.md). Remove once deployed.",
    )


@dataclass(frozen=True)
class Vhost:
    description: str = field("", doc="Free text shown in the management UI.")
    default_exchange: str = field("tasks", doc="Exchange queues bind to unless they name one.")
    dead_letter_exchange: str = field(
        "dlx",
        doc="Direct exchange the toolkit creates for `dead_letter`: each target queue is bound to it by its own name.",
    )
    exchanges: dict[str, Exchange] = field(factory=dict, doc="Exchanges by name.")
    queues: dict[str, Queue] = field(factory=dict, doc="Queues by name.")


@dataclass(frozen=True)
class WorkerPool:
    queues: list[str] = field(doc="Queues this pool consumes (`celery worker -Q`).")
    user: str = field(
        doc="User this pool's workers connect as, its own: its permissions in `celery.vhost` "
        "are derived from `queues` (docs/security.md)."
    )
    concurrency: PositiveInt = field(PositiveInt(2), doc="Worker processes or threads.")
    pool: WorkerPoolType = field("prefork", doc="Celery execution pool.")
    prefetch_multiplier: PositiveInt = field(
        PositiveInt(1), doc="Messages reserved per process; 1 with late acks, so a lost worker holds one."
    )


Compression = Literal["zlib", "bzip2", "lzma"]


@dataclass(frozen=True)
class RouteOptions:
    """What a routed task's messages carry, besides where they go (Celery's route options)."""

    priority: Optional[Priority] = field(
        None,
        doc="Priority of the task's messages unless the call gives one "
        "(`apply_async(priority=)`); its queue needs "
        "`max_priority` at least this.",
    )
    compression: Optional[Compression] = field(
        None, doc="Compression of the task's message bodies, over `celery.compression`."
    )


@dataclass(frozen=True)
class Celery:
    vhost: str = field(doc="Vhost the Celery app uses; routes and pools name its queues.")
    web_user: str = field(
        doc="User the web service (and `manage.py dead_letters`) connects as: publishes "
        "tasks, reads parked ones; permissions derived (docs/security.md)."
    )
    beat_user: str = field(doc="User Celery beat connects as: publishes tasks only; permissions derived.")
    default_queue: str = field("default", doc="Queue of tasks that have no route.")
    routes: dict[str, str] = field(factory=dict, doc="Task name → queue name.")
    route_options: dict[str, RouteOptions] = field(
        factory=dict, doc="Routed task name → the priority and compression of its messages."
    )
    compression: Optional[Compression] = field(
        None,
        doc="Compression of every task's message body (Celery's `task_compression`); unset sends them uncompressed.",
    )
    regional_routes: dict[str, dict[str, str]] = field(
        factory=dict,
        doc="Task name → Riot routing region (`americas`, `asia`, `europe`, `sea`) or `default` "
        "(the regions not named) → queue name: a task goes to the queue of the region its Riot "
        "calls go to, so one region's backlog never delays another's (docs/rate-limits.md).",
    )
    workers: dict[str, WorkerPool] = field(factory=dict, doc="Worker pools by name.")


@dataclass(frozen=True)
class Web:
    port: Port = field(Port(8000), doc="Host port the Django web service is published on, at `listeners.bind`.")
    concurrency: PositiveInt = field(PositiveInt(2), doc="Gunicorn worker processes.")
    allowed_hosts: list[str] = field(
        factory=lambda: ["localhost", "127.0.0.1"], doc="Django `ALLOWED_HOSTS`: the host names the site answers to."
    )


@dataclass(frozen=True)
class Database:
    """Where the app keeps its data: a PostgreSQL container of the stack, an external server, or SQLite."""

    kind: DatabaseKind = field(
        "postgres",
        doc="`postgres`: a container with a named volume; `url`: an "
        "external database; `sqlite`: a file in the app's volume "
        "(dev only).",
    )
    image: str = field("postgres:16", doc="`postgres`: the server image.")
    name: str = field("app", doc="`postgres`: database name.")
    user: str = field("app", doc="`postgres`: the app's database user.")
    password: Secret = field(Secret("postgresPassword", generate=True), doc="`postgres`: that user's password.")
    url: Optional[Secret] = field(
        None,
        doc="`url`: the secret holding the whole `DATABASE_URL`, e.g. `postgres://user:pass@db.example.com:5432/app`.",
    )


@dataclass(frozen=True)
class App:
    """The Django web, Celery worker and beat services: one image, run with different commands."""

    image: str = field(
        "rabbitmq-celery-app",
        doc="App image. With `build`: a repository name (no tag), "
        "tagged with a digest of the build context; without: an "
        "image to pull, e.g. `registry.example.com/app:1.4`.",
    )
    build: Optional[str] = field(
        "app",
        doc="Directory holding the `Dockerfile`, relative to the project "
        "root; unset (`~`) pulls `image` instead of building it.",
    )
    base_image: str = field("python:3.11-slim", doc="The Dockerfile's `BASE_IMAGE` build argument.")
    settings_module: str = field("config.settings.production", doc="`DJANGO_SETTINGS_MODULE` of every service.")
    secret_key: Secret = field(Secret("djangoSecretKey", generate=True), doc="Django `SECRET_KEY`.")
    riot_api_key: Optional[Secret] = field(
        None, doc="Riot API key (`RIOT_API_KEY`); never generated: `pulumi config set --secret KEY`."
    )
    riot_api_base_url: str = field(
        "https://{routing}.api.riotgames.com", doc="`RIOT_API_BASE_URL`; `{routing}` becomes the regional route."
    )
    riot_sample: bool = field(
        False,
        doc="The local stack only: run the sample Riot API (a few players' "
        "matches, `python -m sample_riot` in the app image) as the "
        "`riot-sample` service and point the app at it, with no Riot key. "
        "`make local` sets it when no `riotApiKey` is set.",
    )
    riot_rate_limit: RiotRateLimit = field(
        RiotRateLimit("20:1,100:120"),
        doc="`RIOT_APP_RATE_LIMIT`: the key's application limit per routing "
        "region until Riot's headers announce it; a development key's by "
        "default (a production key's: docs/rate-limits.md).",
    )
    web: Web = field(factory=Web, doc="The web service.")
    database: Database = field(factory=Database, doc="The app's database.")
    beat: bool = field(True, doc="Run Celery beat (the periodic recovery and maintenance tasks).")


@dataclass(frozen=True)
class Monitoring:
    """Prometheus scrape settings and alert thresholds (`render --monitoring`)."""

    scrape_interval: Duration = field(Duration(15_000), doc="How often Prometheus scrapes the broker.")
    queue_backlog: PositiveInt = field(
        PositiveInt(1000),
        doc="Ready messages above which a queue with no `max_length` alerts (`RabbitMQQueueBacklog`).",
    )
    backlog_ratio: float = field(
        0.8,
        doc="For a queue with a `max_length`: the fraction of it, in (0, 1], "
        "above which it alerts, before publishers are refused.",
    )
    queue_backlogs: dict[str, PositiveInt] = field(
        factory=dict, doc="Queue name → its own backlog threshold, over the two above."
    )
    backlog_for: Duration = field(Duration(10 * 60_000), doc="How long a backlog lasts before it alerts.")
    no_consumer_for: Duration = field(
        Duration(5 * 60_000), doc="How long a queue a worker pool consumes may have no consumer."
    )
    dead_letters_window: Duration = field(
        Duration(15 * 60_000), doc="A parking queue that grew within this window alerts."
    )
    unacked_stuck_for: Duration = field(
        Duration(15 * 60_000),
        doc="Unacknowledged messages whose count has "
        "not moved for this long alert; keep it "
        "below `broker.consumer_timeout`.",
    )
    node_down_for: Duration = field(Duration(60_000), doc="How long a failing scrape lasts before it alerts.")


@dataclass(frozen=True)
class StackDefinition:
    environment: str = field(doc="Environment name; `guest` and public management are dev-only.")
    celery: Celery = field(doc="The Celery app's view of the broker.")
    broker: Broker = field(factory=Broker, doc="The broker node.")
    roles: dict[str, Role] = field(factory=dict, doc="Named permission sets users are given per vhost.")
    users: dict[str, User] = field(factory=dict, doc="Users by name.")
    vhosts: dict[str, Vhost] = field(factory=dict, doc="Virtual hosts by name, each with its exchanges and queues.")
    app: App = field(factory=App, doc="The app's services: Django web, a Celery worker per pool, beat.")
    monitoring: Monitoring = field(
        factory=Monitoring, doc="Prometheus scrape settings and alert thresholds (`render --monitoring`)."
    )

    @property
    def is_dev(self) -> bool:
        return self.environment == "dev"


def service_users(d: StackDefinition) -> dict[str, str]:
    """Service name → its broker user."""
    c = d.celery
    return {
        "web": c.web_user,
        **({"beat": c.beat_user} if d.app.beat else {}),
        **{f"worker-{name}": pool.user for name, pool in sorted(c.workers.items())},
    }
