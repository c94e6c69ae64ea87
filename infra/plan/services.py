"""The app's services as plain data: the Django web, one Celery worker per pool, beat, and PostgreSQL.

Pure, like `plan.py`: the Pulumi Services component (and the compose file) run these specs as they are.
Secret environment values are templates over a secret key, filled in by the adapter, so the plan itself
never holds a credential.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

from infra.definition.model import DIST_PORT, EPMD_PORT, Secret, StackDefinition, service_users

APP_DIR = "/app"  # the Dockerfile's WORKDIR: `celery -A config ...` runs from there
CONFIG_DIR = "/etc/app"
APP_UID = "10001"  # the app image's user (app/Dockerfile): owner of the uploaded TLS client key
CELERY_JSON = f"{CONFIG_DIR}/celery.json"
DATA_DIR = "/data"  # the app image's data volume (DJANGO_DATA_DIR): dev SQLite database, beat's schedule
WEB_PORT = 8000  # inside the container; published on listeners.bind at app.web.port
WORKER_READY = "/dev/shm/celery-worker-ready"  # CELERY_WORKER_READY_FILE: touched once ready (config/celery_app.py)
# `app.riot_sample`: the sample Riot API, a service of the stack's network only (nothing published).
SAMPLE_RIOT_HOST, SAMPLE_RIOT_PORT = "riot-sample", 8080
SAMPLE_RIOT_URL = f"http://{SAMPLE_RIOT_HOST}:{SAMPLE_RIOT_PORT}/{{routing}}"
WORKER_STOP_TIMEOUT_S = 60  # warm shutdown: running tasks finish (late acks requeue the rest anyway)
BROKER_HOST = "rabbitmq"  # the broker container's hostname and alias: the node is rabbit@rabbitmq in every
# replacement of the container, so it finds its data again
BROKER_CONFIG_DIR = "/etc/rabbitmq"  # where the official image reads its files
BROKER_DATA_DIR = "/var/lib/rabbitmq"
DATABASE_HOST = "postgres"  # the database container's alias
POSTGRES_DATA = "/var/lib/postgresql/data"


@dataclass(frozen=True)
class HealthCheck:
    """Docker's health check of a container, the same under Pulumi and compose."""

    test: tuple[str, ...]  # CMD or CMD-SHELL form
    interval: str = "30s"
    timeout: str = "15s"
    retries: int = 3
    start_period: str = "60s"

    def paced(self) -> "HealthCheck":
        """This check as Docker runs it, starting fast and then slowing down. Docker's own `start_interval`
        needs Engine 25 (and compose v2); on Debian's engine the check instead runs every PROBE_EVERY_S and
        skips the real probe (answering healthy) while its last success is younger than `interval`: healthy
        within seconds of being ready, then probed as often as before. A failure is never skipped, and
        `retries` scale so that a failing container turns unhealthy after as long as before."""
        kind, *argv = self.test
        probe = argv[0] if kind == "CMD-SHELL" else shlex.join(argv)
        test = (
            f"last=$(cat {LAST_OK} 2>/dev/null || echo 0); "
            f"[ $(( $(date +%s) - last )) -lt {_seconds(self.interval)} ] && exit 0; "
            f"{probe} && date +%s > {LAST_OK}"
        )
        return HealthCheck(
            ("CMD-SHELL", test),
            f"{PROBE_EVERY_S}s",
            self.timeout,
            self.retries * max(1, _seconds(self.interval) // PROBE_EVERY_S),
            self.start_period,
        )


PROBE_EVERY_S = 2
# The time of the last successful probe, in the container's /dev/shm: a tmpfs Docker makes anew at each start,
# so a restarted container is probed at once instead of trusting its last life's success.
LAST_OK = "/dev/shm/healthcheck-ok"


def _seconds(duration: str) -> int:
    return int(duration.removesuffix("s"))


# Healthy once the node has booted: `check_running` (RabbitMQ's stage-2 health check), not `ping`, which
# answers as soon as the Erlang VM is up; a cluster node boots only after it joined its peers, so a node
# healthy under this check is in the cluster. Pulumi's `wait` and compose's `service_healthy` hold on to it.
# https://www.rabbitmq.com/docs/monitoring#health-checks
# A node booting on a volume full of quorum queues, on a busy machine, may take minutes: the start period only
# delays when a failing node counts as unhealthy, never when a booted one counts as healthy (the check is paced).
BROKER_HEALTHCHECK = HealthCheck(
    ("CMD", "rabbitmq-diagnostics", "-q", "check_running"),
    interval="10s",
    timeout="10s",
    retries=6,
    start_period="180s",
)
# With inter-node TLS the check's CLI tool starts Erlang's TLS distribution and handshakes before it asks:
# 2.3 times as long as over plaintext (bench/RESULTS.md: a median 8.8 s, at most 12.3 s, on a loaded 2-core
# machine), past the 10 s above, so those nodes get 30 s.
INTER_NODE_TLS_CHECK_TIMEOUT = "30s"


def broker_healthcheck(b) -> HealthCheck:
    """A broker node's health check: BROKER_HEALTHCHECK, with more time when its CLI speaks TLS distribution."""
    if b.tls and b.tls.inter_node:
        return dataclasses.replace(BROKER_HEALTHCHECK, timeout=INTER_NODE_TLS_CHECK_TIMEOUT)
    return BROKER_HEALTHCHECK


def broker_ports(b) -> list[int]:
    """The broker's published ports (container port = host port): plain AMQP and management unless TLS
    turned them off, AMQPS and HTTPS management with TLS, Prometheus if on."""
    ports = [b.amqp_port, b.management_port] if b.plain else []
    ports += [b.tls.amqps_port, b.tls.management_port] if b.tls else []
    return ports + ([b.prometheus_port] if b.prometheus_port else [])


@dataclass(frozen=True)
class SecretEnv:
    """An environment value made from one secret: `template` with `{secret}` in it."""

    key: str  # the secret's stack config key
    template: str = "{secret}"
    url_quoted: bool = False  # a password inside a URL is percent-encoded, whatever characters it has

    def fill(self, value: str) -> str:
        return self.template.format(secret=quote(value, safe="") if self.url_quoted else value)


@dataclass(frozen=True)
class PortSpec:
    internal: int
    external: int
    ip: str


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # web, worker-<pool>, beat, postgres: the container is `<prefix>-<name>`
    role: str  # web | worker | beat | database | riot-sample
    command: tuple[str, ...]  # empty: the image's own
    env: tuple[tuple[str, str], ...]  # plain values, sorted by name
    secret_env: tuple[tuple[str, SecretEnv], ...]
    healthcheck: tuple[str, ...]  # Docker's `test`, CMD form
    ports: tuple[PortSpec, ...] = ()
    stop_timeout_s: int = 10
    image: Optional[str] = None  # None: the app image (and the container gets celery.json)
    volume: tuple[str, str] = ("data", DATA_DIR)  # (volume key: Docker volume `<prefix>-app-<key>`, mount path)

    @property
    def hostname(self) -> str:
        return self.name

    @property
    def runs_app(self) -> bool:
        return self.image is None

    @property
    def uses_broker(self) -> bool:
        """Whether it gets celery.json and the broker's TLS files: the app's services, not the sample Riot API
        (which runs the app's image but no Celery), so a queue added re-creates only what reads them."""
        return self.runs_app and self.role != "riot-sample"


def broker_url_template(user: str, vhost: str, host: str, port: int, scheme: str = "amqp") -> str:
    """An AMQP(S) URL with `{secret}` where the password goes; user and vhost percent-encoded ('/' is %2F)."""
    return f"{scheme}://{quote(user, safe='')}:{{secret}}@{host}:{port}/{quote(vhost, safe='')}"


def broker_hosts(nodes: int) -> tuple[str, ...]:
    """The broker containers' host names: `rabbitmq` for one node, `rabbitmq-1` ... on a cluster."""
    return (BROKER_HOST,) if nodes == 1 else tuple(f"{BROKER_HOST}-{i}" for i in range(1, nodes + 1))


def joins_after(nodes: int) -> dict[str, str]:
    """Boot order of a cluster's nodes: host → the node it waits for, healthy, before it starts. One after
    another, so the first forms the cluster and each next one joins it (nodes booting at once can each form
    their own), and, stopped in reverse, the first node is the last one down: the one that boots first."""
    hosts = broker_hosts(nodes)
    return dict(zip(hosts[1:], hosts))


def client_host(publish_ip: str) -> str:
    """Where a client on the Docker host reaches ports published on `publish_ip`."""
    return "127.0.0.1" if publish_ip in ("0.0.0.0", "::") else publish_ip


def broker_endpoints(nodes: int, amqp_port: int) -> list[tuple[str, int]]:
    """(host, port) of every node, as the app's containers reach them: over the stack's network, or with
    `broker.hosts` through their /etc/hosts entries (`node_addresses`)."""
    return [(host, amqp_port) for host in broker_hosts(nodes)]


def node_addresses(b) -> dict[str, str]:
    """Host name → address of every node on its own Docker host (`broker.hosts`); empty without them."""
    return {host: h.address for host, h in zip(broker_hosts(b.nodes), b.hosts)}


def node_ports(b, index: int) -> list[PortSpec]:
    """What node `index` (0-based) publishes. On one Docker host node i publishes each port + i on
    `listeners.bind`; on its own host each port unchanged on its address, with Erlang distribution."""
    if not b.hosts:
        return [PortSpec(p, p + index, b.publish_ip) for p in broker_ports(b)]
    return [PortSpec(p, p, b.hosts[index].address) for p in [*broker_ports(b), EPMD_PORT, DIST_PORT]]


def published_endpoints(b, port: int) -> list[tuple[str, int]]:
    """(host, port) of every node as a client outside the stack reaches `port` (the first node's, which
    `node_ports` shifts by the node's index on one Docker host)."""
    return [(client_host(p.ip), p.external) for i in range(b.nodes) for p in node_ports(b, i) if p.internal == port]


def broker_url(d: StackDefinition, endpoints: list[tuple[str, int]], service: str, scheme: str = "amqp") -> SecretEnv:
    """A Celery service's URL to the broker, as its own user (permissions.py); on a cluster one URL per node,
    `;`-separated, which kombu tries in turn (failover), so losing one node only moves the connections."""
    user = service_users(d)[service]
    return SecretEnv(
        d.users[user].password.secret,
        ";".join(broker_url_template(user, d.celery.vhost, host, port, scheme) for host, port in endpoints),
        url_quoted=True,
    )


def app_secrets(d: StackDefinition) -> list[tuple[tuple, Secret]]:
    """(definition key path, reference) of the app's own credentials."""
    refs = [(("app", "secret_key"), d.app.secret_key)]
    if d.app.riot_api_key is not None:
        refs.append((("app", "riot_api_key"), d.app.riot_api_key))
    db = d.app.database
    if db.kind == "postgres":
        refs.append((("app", "database", "password"), db.password))
    elif db.kind == "url":
        refs.append((("app", "database", "url"), db.url))
    return refs


def database_url(d: StackDefinition) -> tuple[dict, dict]:
    """DATABASE_URL as a plain value (SQLite) or a secret one (({}, {"DATABASE_URL": ...}))."""
    db = d.app.database
    if db.kind == "sqlite":
        return {"DATABASE_URL": f"sqlite:///{DATA_DIR}/db.sqlite3"}, {}
    if db.kind == "url":
        return {}, {"DATABASE_URL": SecretEnv(db.url.secret)}
    return {}, {
        "DATABASE_URL": SecretEnv(
            db.password.secret, f"postgres://{db.user}:{{secret}}@{DATABASE_HOST}:5432/{db.name}", url_quoted=True
        )
    }


def _common_env(d: StackDefinition, amqp_port: int, scheme: str) -> tuple[dict, dict]:
    a = d.app
    db_env, db_secret_env = database_url(d)
    env = {
        "DJANGO_SETTINGS_MODULE": a.settings_module,
        "DJANGO_ALLOWED_HOSTS": ",".join(a.web.allowed_hosts),
        "CELERY_TOPOLOGY_FILE": CELERY_JSON,
        "RIOT_API_BASE_URL": SAMPLE_RIOT_URL if a.riot_sample else a.riot_api_base_url,
        "RIOT_APP_RATE_LIMIT": str(a.riot_rate_limit),
        **db_env,
    }
    secret_env = {"DJANGO_SECRET_KEY": SecretEnv(a.secret_key.secret), **db_secret_env}
    if a.riot_api_key is not None:
        secret_env["RIOT_API_KEY"] = SecretEnv(a.riot_api_key.secret)
    return env, secret_env


def postgres_spec(d: StackDefinition) -> ServiceSpec:
    """The official image's contract: POSTGRES_DB/USER/PASSWORD create the database on first boot."""
    db = d.app.database
    return _spec(
        "postgres",
        "database",
        (),
        {"POSTGRES_DB": db.name, "POSTGRES_USER": db.user},
        {"POSTGRES_PASSWORD": SecretEnv(db.password.secret)},
        ("CMD", "pg_isready", "-U", db.user, "-d", db.name),
        stop_timeout_s=60,
        image=db.image,
        volume=("postgres-data", POSTGRES_DATA),
    )


def _spec(
    name: str, role: str, command: tuple, env: dict, secret_env: dict, healthcheck: tuple, **kwargs
) -> ServiceSpec:
    return ServiceSpec(
        name, role, command, tuple(sorted(env.items())), tuple(sorted(secret_env.items())), healthcheck, **kwargs
    )


def service_specs(
    d: StackDefinition, workers, publish_ip: str, amqp_port: int, scheme: str = "amqp"
) -> tuple[ServiceSpec, ...]:
    """postgres when the stack runs its own, web, a worker per pool (the plan's `WorkerPoolSpec`s), and beat
    when enabled. `amqp_port` and `scheme`: where clients connect (AMQPS on its port with TLS)."""
    env, common_secret_env = _common_env(d, amqp_port, scheme)

    def secret_env(service: str) -> dict:
        return {
            **common_secret_env,
            "CELERY_BROKER_URL": broker_url(
                d, broker_endpoints(int(d.broker.nodes), amqp_port), service, scheme=scheme
            ),
        }

    web = d.app.web
    specs = [postgres_spec(d)] if d.app.database.kind == "postgres" else []
    specs += [
        _spec(
            "web",
            "web",
            ("bin/web",),
            {**env, "WEB_PORT": str(WEB_PORT), "WEB_CONCURRENCY": str(int(web.concurrency))},
            secret_env("web"),
            ("CMD", "bin/healthcheck"),
            ports=(PortSpec(WEB_PORT, int(web.port), publish_ip),),
        )
    ]
    for w in workers:
        name = f"worker-{w.name}"
        # When the Riot rate limiter's store does not answer, each worker process keeps 1/(its pool's
        # processes × the number of pools) of a limit: the pools' shares add up to the whole limit at most,
        # and only this pool's own concurrency changes its share.
        share = {"RIOT_RATE_LIMIT_PROCESSES": str(w.concurrency * len(workers))}
        # `inspect ping` asks this very worker, by name, to answer through the broker; only once the worker
        # says it is ready (config/celery_app.py): a ping before then would wait out its whole timeout.
        specs.append(
            _spec(
                name,
                "worker",
                w.command,
                {**env, **share, "CELERY_WORKER_READY_FILE": WORKER_READY},
                secret_env(name),
                ("CMD-SHELL", f"[ -e {WORKER_READY} ] && celery -A config inspect ping -d {w.name}@{name} --timeout 5"),
                stop_timeout_s=WORKER_STOP_TIMEOUT_S,
            )
        )
    if d.app.riot_sample:
        specs.append(
            _spec(
                SAMPLE_RIOT_HOST,
                "riot-sample",
                ("python", "-m", "sample_riot", "--port", str(SAMPLE_RIOT_PORT)),
                {},
                {},
                (
                    "CMD",
                    "python",
                    "-c",
                    f"import socket; socket.create_connection(('127.0.0.1', {SAMPLE_RIOT_PORT}), 5)",
                ),
            )
        )
    if d.app.beat:
        specs.append(
            _spec(
                "beat",
                "beat",
                ("celery", "-A", "config", "beat", "-l", "info", "--schedule", f"{DATA_DIR}/celerybeat-schedule"),
                # beat writes its schedule file at least every 3 minutes (beat_sync_every)
                env,
                secret_env("beat"),
                ("CMD-SHELL", f"find {DATA_DIR} -maxdepth 1 -name 'celerybeat-schedule*' -mmin -10 | grep -q ."),
            )
        )
    return tuple(specs)
