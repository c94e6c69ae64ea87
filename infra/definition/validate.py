"""Checks that span several objects: references between them, environment rules, queue-type support.

`check(definition, source)` returns findings; it never raises and never prints.
"""

from __future__ import annotations

import dataclasses
import re

from infra.definition.build import suggest
from infra.definition.findings import Finding, Severity
from infra.definition.model import DIST_PORT, EPMD_PORT, KNOWN_PLUGINS, RIOT_REGIONS, StackDefinition, service_users
from infra.definition.sources import Source

# Policy keys each queue type honours, by the model's field names (RabbitMQ 3.10 to 4.x).
SUPPORTED = {
    "quorum": {"ttl", "max_length", "max_length_bytes", "overflow", "dead_letter", "delivery_limit"},
    "classic": {"ttl", "max_length", "max_length_bytes", "overflow", "dead_letter"},
}
OVERFLOW_SUPPORTED = {
    "quorum": {"drop-head", "reject-publish"},
    "classic": {"drop-head", "reject-publish", "reject-publish-dlx"},
}


ENVIRONMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# Docker's repository grammar ([registry[:port]/]path), without a :tag or @digest
IMAGE_REPOSITORY = re.compile(r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+((\.|_|__|-+|/)[a-z0-9]+)*$")
# `worker-<pool>` is a container, host and Kubernetes name: a DNS label of at most 63 characters.
POOL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,54}[a-z0-9])?$")
MAX_TTL_MS = 2**32 - 1  # RabbitMQ refuses a larger message-ttl
# The official image's tag starts with its series: rabbitmq:3.13-management, rabbitmq:4.0.5
OFFICIAL_IMAGE_SERIES = re.compile(r"^(docker\.io/(library/)?)?rabbitmq:(\d+\.\d+)")
QUORUM_HIGH_PRIORITY = 5  # RabbitMQ 4 quorum queues: priority 5 and above is high, 0 to 4 normal


class _Checker:
    def __init__(self, definition: StackDefinition, source: Source):
        self.d = definition
        self.source = source
        self.findings: list[Finding] = []

    def report(self, path: tuple, message: str, severity: Severity = Severity.ERROR) -> None:
        file, line = self.source.where(path)
        self.findings.append(Finding(file, line, path, message, severity))

    def run(self) -> list[Finding]:
        self.nothing_to_check()
        self.broker()
        self.roles_and_users()
        for name in self.d.vhosts:
            self.vhost(name)
            self.renames(name)
        self.celery()
        self.app()
        self.monitoring()
        return self.findings

    def nothing_to_check(self) -> None:
        if not any(v.queues for v in self.d.vhosts.values()):
            self.report(("vhosts",), "nothing to deploy: the definition declares no queue")

    def broker(self) -> None:
        if not ENVIRONMENT_NAME.match(self.d.environment):
            self.report(("environment",), f"expected lower-case letters, digits and dashes, got {self.d.environment!r}")
        b, at = self.d.broker, ("broker",)
        if not FILE_NAME.match(b.log.file):
            self.report(
                at + ("log", "file"), f"expected a plain file name (letters, digits, . _ -), got {b.log.file!r}"
            )
        if not 0 < b.memory_high_watermark <= 1:
            self.report(
                at + ("memory_high_watermark",), f"expected a fraction of RAM in (0, 1], got {b.memory_high_watermark}"
            )
        if b.heartbeat % 1000:
            self.report(at + ("heartbeat",), f"expected whole seconds, got {b.heartbeat}")
        unknown = [(i, p) for i, p in enumerate(b.plugins) if p not in KNOWN_PLUGINS]
        for i, plugin in unknown:
            self.report(at + ("plugins", i), f"unknown plugin {plugin!r}{suggest(plugin, KNOWN_PLUGINS)}")
        if "rabbitmq_management" not in b.plugins and not unknown:  # a typo of it is reported above
            self.report(
                at + ("plugins",),
                "rabbitmq_management must be enabled: the deployer and the health checks use its HTTP API",
            )
        if not b.log.targets:
            self.report(at + ("log", "targets"), "expected at least one log target (console, file)")
        # Docker publishes the broker's listeners and the web port on the same host address.
        by_port: dict[int, list[tuple]] = {}
        # On one Docker host node i publishes each listener's port + i; on hosts of their own each node
        # publishes them unchanged, with Erlang distribution.
        nodes = int(b.nodes) if b.nodes % 2 and not b.hosts else 1
        for port in (EPMD_PORT, DIST_PORT) if b.hosts else ():  # first: a clash is reported at the listener
            by_port.setdefault(port, []).append(at + ("hosts",))
        for path in self.active_listeners():
            owner = b.listeners if path[1] == "listeners" else b.tls
            for i in range(nodes):
                by_port.setdefault(getattr(owner, path[-1]) + i, []).append(path)
        by_port.setdefault(self.d.app.web.port, []).append(("app", "web", "port"))
        reported: set[frozenset] = set()
        for port, paths in by_port.items():
            if len(set(paths)) > 1 and frozenset(paths) not in reported:  # once per clash, at the key the file
                reported.add(frozenset(paths))  # sets, if it sets one
                set_here = [p for p in paths if p in self.source.locations] or paths
                self.report(
                    set_here[-1],
                    f"port {port} is used by more than one listener: "
                    f"{', '.join(_listener_name(p) for p in paths)}"
                    + (f" (node i of {b.nodes} publishes each port + i)" if b.nodes > 1 and not b.hosts else ""),
                )
        self.tls()
        if not b.management_metrics and b.version.major < 4:
            self.report(
                at + ("management_metrics",),
                f"broker.version is {b.version}: turning the management metrics collection off is a "
                f"RabbitMQ 4.x setting (deprecated_features.permit.management_metrics_collection)",
            )
        if not (self.d.is_dev or b.public_management or b.listeners.bind.is_private_or_loopback):
            self.report(
                at + ("listeners", "bind"),
                f"management would be reachable on public address {b.listeners.bind} in "
                f"{self.d.environment}: bind a loopback or private address, or set "
                f"broker.public_management: true",
            )
        if b.nodes > 1 and b.nodes % 2 == 0:
            self.report(
                at + ("nodes",),
                f"expected 1 or an odd number of nodes, got {b.nodes}: quorum "
                f"queues need a majority, so {b.nodes} nodes survive no more "
                f"node losses than {b.nodes - 1} do",
            )
        self.hosts()
        image_series = OFFICIAL_IMAGE_SERIES.match(b.image)
        if image_series and image_series.group(3) != b.version:
            self.report(
                at + ("image",),
                f"{b.image} is RabbitMQ {image_series.group(3)}, but broker.version "
                f"says {b.version}: set one to match the other",
            )
        admin = self.d.users.get(b.admin_user)
        if admin is None:
            self.report(at + ("admin_user",), f"no user {b.admin_user!r}{suggest(b.admin_user, self.d.users)}")
        elif "administrator" not in admin.tags:
            self.report(("users", b.admin_user, "tags"), f"the admin user {b.admin_user!r} needs the administrator tag")

    def hosts(self) -> None:
        """`broker.hosts`: one Docker host per node, each its own, on a private network."""
        b, at = self.d.broker, ("broker", "hosts")
        if not b.hosts:
            return
        if b.nodes == 1:
            self.report(
                at, "hosts place a cluster's nodes, one per host: set broker.nodes to 3 or more, or remove broker.hosts"
            )
        elif len(b.hosts) != b.nodes:
            self.report(at, f"expected one host per node: {b.nodes} nodes, {len(b.hosts)} hosts")
        seen: dict[tuple, int] = {}
        for i, host in enumerate(b.hosts):
            for key in ("docker", "address"):
                earlier = seen.setdefault((key, getattr(host, key)), i)
                if earlier != i:
                    self.report(
                        at + (i, key),
                        f"{getattr(host, key)} is also hosts[{earlier}]'s: each node "
                        f"needs a host of its own (two nodes on one host publish the "
                        f"same ports)",
                    )
            if host.address.is_public:
                self.report(
                    at + (i, "address"),
                    f"{host.address} is a public address: the nodes' Erlang "
                    f"distribution port is guarded by the Erlang cookie alone; "
                    f"use the address of a private network between the hosts",
                )
            if host.ssh_opts and not host.docker.is_ssh:
                self.report(at + (i, "ssh_opts"), f"ssh_opts apply to an ssh:// Docker host only, not {host.docker}")

    def active_listeners(self) -> list[tuple]:
        """Key paths of the ports the broker listens on: plain ones unless TLS turned them off."""
        b, at = self.d.broker, ("broker",)
        plain = not b.tls.enabled or b.tls.plain_listeners
        paths = [at + ("listeners", n) for n in ("amqp", "management") if plain]
        paths += [at + ("tls", n) for n in ("amqps", "management") if b.tls.enabled]
        if "rabbitmq_prometheus" in b.plugins:
            paths.append(at + ("listeners", "prometheus"))
        return paths

    def tls(self) -> None:
        tls, at = self.d.broker.tls, ("broker", "tls")
        if self.d.environment == "prod" and not tls.enabled:
            self.report(
                at + ("enabled",),
                "prod must serve TLS: set broker.tls.enabled: true (AMQPS and HTTPS management, plain listeners off)",
            )
        if self.d.environment == "prod" and tls.enabled and tls.plain_listeners:
            self.report(
                at + ("plain_listeners",),
                "plain listeners must be off in prod: credentials and tasks would cross the network unencrypted",
            )
        for i, name in enumerate(tls.server_names):
            if not re.match(r"^[A-Za-z0-9*.:-]+$", name):
                self.report(at + ("server_names", i), f"expected a host name or an IP address, got {name!r}")
        keys = [getattr(tls.secrets, f.name) for f in dataclasses.fields(tls.secrets)]
        if len(set(keys)) != len(keys):
            self.report(at + ("secrets",), "each certificate and key needs a secret key of its own")
        self.inter_node_tls()

    def inter_node_tls(self) -> None:
        """`broker.tls.inter_node`: the nodes' certificates come from the stack's CA, so TLS must be on."""
        tls, at = self.d.broker.tls, ("broker", "tls", "inter_node")
        if tls.inter_node and not tls.enabled:
            self.report(
                at,
                "inter-node TLS needs the stack's CA to issue (or verify) each node's certificate: "
                "set broker.tls.enabled: true, or remove inter_node",
            )
        elif tls.inter_node and self.d.broker.nodes == 1:
            self.report(
                at,
                "one node has no peer to encrypt its distribution to: inter_node applies to a cluster (broker.nodes ≥ 3)",
                Severity.WARNING,
            )

    def roles_and_users(self) -> None:
        for name, role in self.d.roles.items():
            for kind in ("configure", "write", "read"):
                try:
                    re.compile(getattr(role, kind))
                except re.error as exc:
                    self.report(("roles", name, kind), f"not a valid regular expression: {exc}")
        for name, user in self.d.users.items():
            if name == "guest" and not self.d.is_dev:
                self.report(("users", name), f"the guest user is allowed only in dev, not in {self.d.environment}")
            for vhost, role in user.permissions.items():
                path = ("users", name, "permissions", vhost)
                if vhost not in self.d.vhosts:
                    self.report(path, f"no vhost {vhost!r}{suggest(vhost, self.d.vhosts)}")
                if role not in self.d.roles:
                    self.report(path, f"no role {role!r}{suggest(role, self.d.roles)}")

    def vhost(self, vname: str) -> None:
        vhost, at = self.d.vhosts[vname], ("vhosts", vname)
        for key in ("default_exchange", "dead_letter_exchange"):
            name = getattr(vhost, key)
            if not name or name.startswith("amq."):
                self.report(
                    at + (key,),
                    f"{name!r} is not a usable exchange name (empty is the default exchange, `amq.` is the broker's)",
                )
        if vhost.dead_letter_exchange in vhost.exchanges:
            self.report(
                at + ("exchanges", vhost.dead_letter_exchange),
                f"{vhost.dead_letter_exchange!r} is the vhost's dead-letter exchange, which the "
                f"toolkit declares itself: rename this exchange or set dead_letter_exchange",
            )
        for ename, exchange in vhost.exchanges.items():
            if exchange.internal:  # render could write it, but `pulumi up` would create a public exchange
                self.report(
                    at + ("exchanges", ename, "internal"),
                    "internal exchanges cannot be deployed: pulumi-rabbitmq's Exchange has no "
                    "`internal` setting, so the broker would get a public exchange instead",
                )
        for qname, queue in vhost.queues.items():
            qat = at + ("queues", qname)
            self.cluster_queue(qat, queue)
            if "," in qname:
                self.report(qat, "a queue name cannot hold a comma: `celery worker -Q` splits on it")
            if queue.ttl is not None and queue.ttl > MAX_TTL_MS:
                self.report(
                    qat + ("ttl",),
                    f"RabbitMQ's message TTL is at most {MAX_TTL_MS} ms (about 49 days), got {queue.ttl}",
                )
            exchange = queue.exchange or vhost.default_exchange
            if exchange not in vhost.exchanges:
                self.report(
                    qat + ("exchange",) if queue.exchange else qat,
                    f"queue binds to exchange {exchange!r}, which vhost {vname!r} does not "
                    f"declare{suggest(exchange, vhost.exchanges)}",
                )
            for key in sorted(SUPPORTED["quorum"] | SUPPORTED["classic"]):
                if getattr(queue, key) is not None and key not in SUPPORTED[queue.type]:
                    self.report(qat + (key,), f"{key} is not supported by {queue.type} queues")
            if queue.overflow and queue.overflow not in OVERFLOW_SUPPORTED[queue.type]:
                self.report(
                    qat + ("overflow",),
                    f"overflow {queue.overflow} is not supported by "
                    f"{queue.type} queues; expected one of "
                    f"{', '.join(sorted(OVERFLOW_SUPPORTED[queue.type]))}",
                )
            if queue.max_priority is not None and queue.type == "quorum" and self.d.broker.version.major < 4:
                self.report(
                    qat + ("max_priority",),
                    f"priorities on quorum queues need RabbitMQ 4.0 or later, "
                    f"broker.version is {self.d.broker.version} (a quorum "
                    f"queue of {self.d.broker.version} ignores message "
                    f"priorities): use a classic queue or target 4.0",
                )
            if (
                queue.parking
                and queue.type == "quorum"
                and queue.delivery_limit is None
                and self.d.broker.version.major >= 4
            ):
                self.report(
                    qat,
                    f"on RabbitMQ {self.d.broker.version} a quorum queue without delivery_limit "
                    f"drops a message returned 20 times, and `dead_letters list` returns what it "
                    f"reads: make this parking queue classic, or set a delivery_limit",
                    Severity.WARNING,
                )
            if queue.overflow and queue.max_length is None and queue.max_length_bytes is None:
                self.report(
                    qat + ("overflow",),
                    "overflow has no effect without max_length or max_length_bytes",
                    Severity.WARNING,
                )
            if queue.dead_letter is not None:
                target = vhost.queues.get(queue.dead_letter)
                if queue.dead_letter.isdigit():
                    # The Pulumi provider turns every all-digit policy value into a number.
                    self.report(
                        qat + ("dead_letter",),
                        f"a dead-letter queue name cannot be all digits "
                        f"({queue.dead_letter!r}): the deployed policy would "
                        f"carry a number instead of the name",
                    )
                if queue.dead_letter == qname:
                    self.report(qat + ("dead_letter",), "a queue cannot dead-letter to itself")
                elif target is None:
                    self.report(
                        qat + ("dead_letter",),
                        f"no queue {queue.dead_letter!r} in vhost {vname!r}{suggest(queue.dead_letter, vhost.queues)}",
                    )
                elif not target.parking:
                    self.report(
                        qat + ("dead_letter",),
                        f"dead letters go to {queue.dead_letter!r}, a queue workers consume: an "
                        f"expired task would run anyway and a second failure would drop it; "
                        f"prefer a queue marked parking: true",
                        Severity.WARNING,
                    )

    def renames(self, vname: str) -> None:
        """`renamed_from`: one old queue into one new queue per deploy; the old name must be gone from the
        definition (else the rename would empty a queue the definition still declares)."""
        queues, at = self.d.vhosts[vname].queues, ("vhosts", vname, "queues")
        claimed: dict[str, str] = {}
        for qname, queue in queues.items():
            old = queue.renamed_from
            if old is None:
                continue
            path = at + (qname, "renamed_from")
            if old == qname:
                self.report(path, "a queue cannot be renamed from its own name")
            elif old in queues and queues[old].renamed_from is not None:
                self.report(
                    path,
                    f"{old!r} is itself renamed from {queues[old].renamed_from!r}: rename one "
                    f"step per deploy (deploy {old!r}, remove its renamed_from, then rename again)",
                )
            elif old in queues:
                self.report(
                    path,
                    f"{old!r} is still declared in vhost {vname!r}: a rename moves its messages "
                    f"here and deletes it; remove {old!r} or drop renamed_from",
                )
            elif old in claimed:
                self.report(
                    path,
                    f"{old!r} is already renamed to {claimed[old]!r}: one queue can be renamed to one new name only",
                )
            else:
                claimed[old] = qname

    def cluster_queue(self, qat: tuple, queue) -> None:
        """On a cluster a classic queue lives on one node: its tasks stop when that node does."""
        b = self.d.broker
        if b.nodes == 1 or queue.type != "classic":
            return
        if queue.parking:
            self.report(
                qat + ("type",),
                f"a classic parking queue lives on one of the {b.nodes} nodes: "
                f"while that node is down, dead-lettered tasks are dropped",
                Severity.WARNING,
            )
        elif not b.allow_classic_task_queues:
            self.report(
                qat + ("type",),
                f"a classic queue lives on one of the {b.nodes} nodes and stops "
                f"when that node does: use quorum, or set "
                f"broker.allow_classic_task_queues: true",
            )

    def celery(self) -> None:
        c, at = self.d.celery, ("celery",)
        vhost = self.d.vhosts.get(c.vhost)
        if vhost is None:
            self.report(at + ("vhost",), f"no vhost {c.vhost!r}{suggest(c.vhost, self.d.vhosts)}")
            return
        self.service_users()
        queues = vhost.queues

        def known(path: tuple, qname: str) -> bool:
            if qname not in queues:
                self.report(path, f"no queue {qname!r} in vhost {c.vhost!r}{suggest(qname, queues)}")
            return qname in queues

        def task_queue(path: tuple, qname: str) -> None:
            if known(path, qname) and queues[qname].parking:
                self.report(path, f"{qname!r} is a parking queue: no task may be sent to it")

        task_queue(at + ("default_queue",), c.default_queue)
        for task, qname in c.routes.items():
            task_queue(at + ("routes", task), qname)
        self.route_options(queues)
        self.regional_routes(task_queue)
        consumed: set[str] = set()
        for pname, pool in c.workers.items():
            if not POOL_NAME.match(pname):
                self.report(
                    at + ("workers", pname),
                    f"expected a pool name of lower-case letters, digits and "
                    f"inner dashes, at most 56 long, got {pname!r}: it names the "
                    f"worker's container and host (`worker-<pool>`)",
                )
            for i, qname in enumerate(pool.queues):
                if known(at + ("workers", pname, "queues", i), qname):
                    consumed.add(qname)
                    if queues[qname].parking:
                        self.report(
                            at + ("workers", pname, "queues", i),
                            f"{qname!r} is a parking queue: no worker may consume it",
                        )
        # Only the Celery vhost's consumers are known here; other vhosts serve other clients.
        routing_keys = self._routing_keys(vhost)
        regional = {q for by_region in c.regional_routes.values() for q in by_region.values()}
        for qname, queue in queues.items():
            qat = ("vhosts", c.vhost, "queues", qname)
            if qname in consumed:
                self.celery_queue(vhost, qname, qat, routing_keys)
            elif not queue.parking:
                self.report(
                    qat,
                    "no worker pool consumes this queue: add it to a pool in celery.workers, or mark it parking: true",
                )
            if queue.rate_limit is not None and qname in regional:
                self.report(
                    qat + ("rate_limit",),
                    "a queue of celery.regional_routes has no Celery rate limit: "
                    "Celery's holds per worker process, the Riot rate limiter "
                    "paces these tasks for every worker (docs/rate-limits.md)",
                )
            elif queue.rate_limit is not None and qname not in c.routes.values():
                self.report(
                    qat + ("rate_limit",),
                    "no task is routed to this queue in celery.routes, so the rate limit applies to nothing",
                    Severity.WARNING,
                )

    def route_options(self, queues: dict) -> None:
        """A route's priority must fit its queue: a queue without priorities would carry it for nothing."""
        c, at = self.d.celery, ("celery", "route_options")
        for task, options in c.route_options.items():
            if task not in c.routes:
                self.report(at + (task,), f"{task!r} has no route in celery.routes{suggest(task, c.routes)}")
                continue
            queue = queues.get(c.routes[task])
            if options.priority is None or queue is None:
                continue
            if queue.max_priority is None:
                self.report(
                    at + (task, "priority"),
                    f"queue {c.routes[task]!r} has no max_priority: the priority would be ignored",
                )
            elif options.priority > queue.max_priority:
                self.report(
                    at + (task, "priority"),
                    f"above queue {c.routes[task]!r}'s max_priority "
                    f"{queue.max_priority}, which is what the broker uses",
                )
            elif queue.type == "quorum" and 0 < options.priority < QUORUM_HIGH_PRIORITY:
                self.report(
                    at + (task, "priority"),
                    f"a quorum queue has two levels: {options.priority} is "
                    f"normal, as 0 is; high is {QUORUM_HIGH_PRIORITY} or "
                    f"more",
                    Severity.WARNING,
                )

    def regional_routes(self, task_queue) -> None:
        """Each task once, each key a Riot routing region or `default`, every region served."""
        c, at = self.d.celery, ("celery", "regional_routes")
        for task, by_region in c.regional_routes.items():
            if task in c.routes:
                self.report(at + (task,), "this task is also in celery.routes: give it one route")
            for region, qname in by_region.items():
                if region not in RIOT_REGIONS + ("default",):
                    self.report(
                        at + (task, region),
                        f"expected a Riot routing region ({', '.join(RIOT_REGIONS)}) "
                        f"or default, got {region!r}"
                        f"{suggest(region, RIOT_REGIONS + ('default',))}",
                    )
                else:
                    task_queue(at + (task, region), qname)
            missing = [r for r in RIOT_REGIONS if r not in by_region]
            if missing and "default" not in by_region:
                self.report(
                    at + (task,),
                    f"no queue for {', '.join(missing)}: name one for each region, or a "
                    f"default for the regions not named",
                )

    def service_users(self) -> None:
        """Each Celery service connects as its own user, whose permissions in the Celery vhost the plan
        derives from the definition (permissions.py): it must exist, be nobody else's, and carry nothing
        that would widen them."""
        c, at = self.d.celery, ("celery",)
        paths = {
            "web": at + ("web_user",),
            **({"beat": at + ("beat_user",)} if self.d.app.beat else {}),
            **{f"worker-{p}": at + ("workers", p, "user") for p in c.workers},
        }
        served: dict[str, str] = {}
        for service, user in service_users(self.d).items():
            path = paths[service]
            if user not in self.d.users:
                self.report(path, f"no user {user!r}{suggest(user, self.d.users)}")
                continue
            if user in served:
                self.report(
                    path,
                    f"user {user!r} already serves {served[user]}: each service connects as "
                    f"its own user, so it may do only what it needs",
                )
                continue
            served[user] = service
            if user == self.d.broker.admin_user:
                self.report(
                    path, f"{user!r} is the admin user, which only the deployer uses: give {service} its own user"
                )
                continue
            if self.d.users[user].tags:
                self.report(
                    ("users", user, "tags"),
                    f"{user!r} is {service}'s broker user: it needs no "
                    f"management tag and must not use the management API",
                )
            if c.vhost in self.d.users[user].permissions:
                self.report(
                    ("users", user, "permissions", c.vhost),
                    f"{service}'s permissions in vhost {c.vhost!r} are derived from the definition "
                    f"(docs/security.md): remove this entry",
                )

    def celery_queue(self, vhost, qname: str, qat: tuple, routing_keys: dict) -> None:
        """A queue Celery declares and publishes to: its exchange and routing key must let exactly this
        queue receive its tasks, also through Celery's delayed-delivery bindings (`#.<routing key>`)."""
        queue = vhost.queues[qname]
        exchange = vhost.exchanges.get(queue.exchange or vhost.default_exchange)
        if exchange is None:
            return
        if (
            exchange.type not in ("topic", "direct")
            or exchange.internal
            or exchange.auto_delete
            or not exchange.durable
        ):
            self.report(
                qat,
                "a Celery queue must be bound to a durable, non-internal, non-auto-delete topic or "
                "direct exchange: Celery publishes to it and declares it that way",
            )
        elif queue.type == "quorum" and exchange.type != "topic":
            self.report(
                qat,
                "a Celery quorum queue must be bound to a topic exchange: Celery's "
                "native delayed delivery (countdown, retries) requires it",
            )
        key = queue.routing_key or qname
        if "*" in key or "#" in key:
            self.report(
                qat + ("routing_key",),
                f"routing key {key!r} has a wildcard: tasks for other queues would land here too",
            )
        exchange_name = queue.exchange or vhost.default_exchange
        for other_name, other_key in routing_keys.get(exchange_name, {}).get(key, []):
            if other_name == qname:
                continue
            if other_key == key:
                self.report(
                    qat + ("routing_key",),
                    f"routing key {key!r} is also {other_name!r}'s: each task would go to both queues and run twice",
                )
            else:
                self.report(
                    qat + ("routing_key",),
                    f"{other_name!r}'s routing key {other_key!r} ends with "
                    f"'.{key}': Celery's delayed-delivery binding `#.{key}` "
                    f"would copy its delayed tasks here",
                )

    def app(self) -> None:
        a, at = self.d.app, ("app",)
        if a.build is not None and not IMAGE_REPOSITORY.match(a.image):
            self.report(
                at + ("image",),
                f"with `build`, expected a repository name without tag or digest (the build tags it), got {a.image!r}",
            )
        if a.build is not None and (a.build.startswith("/") or ".." in a.build.split("/")):
            self.report(at + ("build",), f"expected a directory inside the project, got {a.build!r}")
        if "{routing}" not in a.riot_api_base_url:
            self.report(
                at + ("riot_api_base_url",),
                "expected a URL template holding `{routing}`, e.g. https://{routing}.api.riotgames.com",
            )
        if not a.web.allowed_hosts:
            self.report(at + ("web", "allowed_hosts"), "expected at least one host name")
        if a.riot_sample and self.d.environment != "local":
            self.report(
                at + ("riot_sample",),
                f"the sample Riot API is a service of the local stack (`make local`) only, not of {self.d.environment}",
            )
        if a.riot_sample and a.riot_api_key is not None:
            self.report(
                at + ("riot_sample",), "the sample Riot API takes no key: unset app.riot_api_key (`riot_api_key: ~`)"
            )
        db, dat = a.database, at + ("database",)
        if db.kind == "sqlite" and not self.d.is_dev:
            self.report(
                dat + ("kind",),
                f"SQLite is for dev only (one file, one host); use postgres or url in {self.d.environment}",
            )
        if db.kind == "url" and db.url is None:
            self.report(dat + ("url",), "kind url needs `url: {secret: KEY}`, the secret holding DATABASE_URL")
        if db.kind != "url" and db.url is not None:
            self.report(dat + ("url",), f"`url` is read only with kind url, not {db.kind}")
        for key in ("name", "user"):
            if not re.match(r"^[a-z_][a-z0-9_]*$", getattr(db, key)):
                self.report(dat + (key,), f"expected lower-case letters, digits and _, got {getattr(db, key)!r}")
        if not re.match(r"^[A-Za-z_][\w.]*$", a.settings_module):
            self.report(at + ("settings_module",), f"expected a dotted module path, got {a.settings_module!r}")

    def monitoring(self) -> None:
        m, at = self.d.monitoring, ("monitoring",)
        if not 0 < m.backlog_ratio <= 1:
            self.report(at + ("backlog_ratio",), f"expected a fraction in (0, 1], got {m.backlog_ratio}")
        declared = {q for v in self.d.vhosts.values() for q in v.queues}
        for qname in m.queue_backlogs:
            if qname not in declared:
                self.report(at + ("queue_backlogs", qname), f"no queue {qname!r} is declared{suggest(qname, declared)}")
        if m.unacked_stuck_for >= self.d.broker.consumer_timeout:
            # The broker closes the channel at consumer_timeout and requeues: the count moves, no alert.
            self.report(
                at + ("unacked_stuck_for",),
                "at or above broker.consumer_timeout, this alert can never fire",
                Severity.WARNING,
            )

    def _routing_keys(self, vhost) -> dict:
        """exchange → key or dot-suffix of a key → [(queue, its key)], for the non-parking queues: a lookup
        per queue instead of a comparison with every other queue."""
        index: dict = {}
        for name, q in vhost.queues.items():
            if q.parking:
                continue
            key = q.routing_key or name
            parts = key.split(".")
            for start in range(len(parts)):
                index.setdefault(q.exchange or vhost.default_exchange, {}).setdefault(
                    ".".join(parts[start:]), []
                ).append((name, key))
        return index


def _listener_name(path: tuple) -> str:
    if path[0] != "broker":
        return "web"
    if path[1] == "hosts":
        return f"Erlang distribution ({EPMD_PORT}, {DIST_PORT})"
    return {"amqps": "amqps", "management": "management (https)"}[path[-1]] if path[1] == "tls" else path[-1]


def check(definition: StackDefinition, source: Source) -> list[Finding]:
    return _Checker(definition, source).run()


def render_target_findings(
    definition: StackDefinition, source: Source, *, compose: bool, kubernetes: bool
) -> list[Finding]:
    """What `render --compose` / `--kubernetes` cannot carry out of the definition. A compose file runs on one
    Docker host, so nodes on hosts of their own are refused; the Cluster Operator places its pods itself,
    so for Kubernetes they are left out, with a warning."""
    if not definition.broker.hosts:
        return []
    file, line = source.where(("broker", "hosts"))
    findings = []
    if compose:
        findings.append(
            Finding(
                file,
                line,
                ("broker", "hosts"),
                "a compose file runs every node on one Docker "
                "host: render --compose a stack without broker.hosts (e.g. with an --overlay "
                "setting `hosts: []`), or deploy this one with Pulumi",
            )
        )
    if kubernetes:
        findings.append(
            Finding(
                file,
                line,
                ("broker", "hosts"),
                "left out of kubernetes.yaml: the Cluster "
                "Operator places the nodes' pods on the Kubernetes nodes itself",
                Severity.WARNING,
            )
        )
    return findings
