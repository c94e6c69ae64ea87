"""A throwaway RabbitMQ cluster: N Debian rabbitmq-server nodes on loopback ports.

Each node is rendered from the same definition with `broker.nodes: N` over it, so each gets the stack's
own clustering: classic-config peer discovery over every node's name, the shared Erlang cookie, and
`cluster_partition_handling = pause_minority`; each has its own ports and data. Every wait is bounded.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import warnings
from dataclasses import fields
from pathlib import Path
from urllib.parse import quote

import requests

from infra.ops.join_refusals import join_refusals

from .rabbit_node import Ports, RabbitNode, free_ports, node_name
from .stacks import Rendered, render_for_node
from .waiting import WaitTimeout, wait_for

# What a paused node logs when its one resume attempt crashed (see await_resume).
RESUME_CRASHED = b"rabbit_outside_app_process:"

# The shipped stacks' task queues: quorum queues, so on a cluster each has a member on every node.
TASK_QUEUES = ["player_sync", "match_processing", "timeline_processing", "default", "recovery", "maintenance"]


class RabbitCluster:
    def __init__(self, size: int, *, stack: str, overlays: tuple = (), node_class=RabbitNode):
        self.work = Path(tempfile.mkdtemp(prefix="rabbit-cluster-"))
        overlay = self.work / "cluster.yaml"
        overlay.write_text(f"broker:\n  nodes: {size}\n")
        self.names = tuple(node_name() for _ in range(size))
        width = len(fields(Ports))
        # all at once (ports picked one node at a time could repeat), and `size` apart: see free_ports
        ports = free_ports(width * size, gap=size)
        node_ports = [Ports(*ports[width * i : width * (i + 1)]) for i in range(size)]
        first = render_for_node(node_ports[0], stack=stack, overlays=(overlay, *overlays), node_names=self.names)
        # the others with the first one's secrets: the same passwords, cookie and (with TLS) CA and certificates
        self.rendered: list[Rendered] = [first] + [
            render_for_node(
                p, stack=stack, overlays=(overlay, *overlays), node_names=self.names, passwords=first.passwords
            )
            for p in node_ports[1:]
        ]
        self.tls = first.plan.broker.client_scheme == "amqps"
        # with inter-node TLS each node (and its CLI tools) runs Erlang's TLS distribution with its own options
        self.inter_node_tls = bool(first.plan.broker.tls and first.plan.broker.tls.inter_node)
        self.nodes: list[RabbitNode] = [
            node_class(
                r.config_dir,
                p,
                name,
                tls_only=not r.plan.broker.plain,
                dist_env=r.plan.broker.tls.dist_env(i) if r.plan.broker.tls else {},
            )
            for i, (r, p, name) in enumerate(zip(self.rendered, node_ports, self.names), start=1)
        ]

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> "RabbitCluster":
        """The first node forms the cluster, the others join it through peer discovery; then the topology."""
        for node in self.nodes:
            node.start()
        self.wait_running(len(self.nodes))
        self.apply_topology()
        return self

    def start_together(self, nodes: list[RabbitNode], resuming: tuple[RabbitNode, int] | None = None) -> None:
        """Nodes that must boot at once: a restarted node waits for the peers it last saw running.
        `resuming`: a node pause_minority stopped and its console offset at the pause, watched while the others
        boot (`await_resume`): its resume starts as soon as they connect, and if it crashes, the booting nodes
        wait for its tables, so it must be recovered while they boot, not after (seen once in a clean-clone
        run: both nodes out of their 90 s boot, waiting on the crashed survivor)."""
        errors: list[BaseException] = []

        def run(step, *args) -> None:
            try:
                step(*args)
            except BaseException as exc:  # noqa: BLE001 (re-raised below, in the caller's thread)
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n.start,)) for n in nodes]
        if resuming is not None:
            threads.append(threading.Thread(target=run, args=(self.await_resume, *resuming)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=360)  # a boot (90 s), or a resume watched (120 s) and recovered (start_app, 180 s)
        if errors:
            raise errors[0]

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        for rendered in self.rendered:
            shutil.rmtree(rendered.config_dir.parent, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    # -- state ---------------------------------------------------------------------------------------
    def alive(self) -> list[RabbitNode]:
        return [n for n in self.nodes if n.process and n.process.poll() is None]

    def api(self, via: RabbitNode | None = None):
        node = via or self.alive()[0]
        admin = self.rendered[0].plan.broker.admin_user
        return node.api(admin, self.rendered[0].password(admin))

    def running_nodes(self, via: RabbitNode | None = None) -> set[str]:
        return {n["name"] for n in self.api(via).get("nodes") if n.get("running")}

    def wait_running(self, count: int, timeout: float = 120) -> None:
        def running() -> bool:
            try:
                return len(self.running_nodes()) == count
            except requests.RequestException:  # a node paused by pause_minority serves no API until it resumes
                return False

        try:
            wait_for(running, timeout, f"{count} nodes running in the cluster", interval=0.5)
        except WaitTimeout as exc:  # each node's log says what it waits for
            raise WaitTimeout(f"{exc}\n" + "\n".join(n.log_tail(15) for n in self.nodes)) from None

    def await_resume(self, paused: RabbitNode, since: int, timeout: float = 120) -> None:
        """A node that pause_minority stopped resumes once a majority is back. RabbitMQ 3.10 tries that
        once (`rabbit_node_monitor`, no retry), and the start can crash in the feature flags' sync with
        peers still booting (`rabbit_outside_app_process` in its log, after `since`, a console offset):
        the node then stays up with RabbitMQ stopped. The operator's recovery (docs/clustering.md) is
        `rabbitmqctl start_app` on it: done here, and said as a warning."""

        def resumed_or_crashed() -> str:
            if RESUME_CRASHED in paused.console_output()[since:]:
                return "crashed"
            try:
                return "resumed" if paused.name in self.running_nodes(via=paused) else ""
            except requests.RequestException:  # no API while paused
                return ""

        if wait_for(resumed_or_crashed, timeout, f"{paused.name} resumed", interval=0.5) == "crashed":
            warnings.warn(f"{paused.name}: RabbitMQ's resume after pause_minority crashed; start_app run", stacklevel=2)
            paused.ctl("rabbitmqctl", "start_app", timeout=180)

    def queue(self, name: str, vhost: str = "/", via: RabbitNode | None = None) -> dict:
        return self.api(via).get(f"queues/{quote(vhost, safe='')}/{quote(name, safe='')}")

    def node_named(self, name: str) -> RabbitNode:
        return next(n for n in self.nodes if n.name == name)

    def leader_of(self, queue: str, vhost: str = "/") -> RabbitNode:
        return self.node_named(self.queue(queue, vhost)["leader"])

    def wait_members_online(self, queues: list[str], vhost: str = "/", timeout: float = 120) -> None:
        """Every quorum queue has all its members online again (a restarted node caught up)."""

        def all_online() -> bool:
            return all(set(self.queue(q, vhost).get("online", [])) == set(self.names) for q in queues)

        wait_for(all_online, timeout, f"members of {queues} online on {len(self.names)} nodes", interval=0.5)

    # -- clients -----------------------------------------------------------------------------------
    def amqp_url(self, user: str, vhost: str = "/", order: list[RabbitNode] | None = None) -> str:
        """The app's failover URL (`;`-separated, one per node), in `order` (default: the nodes'); AMQPS on
        each node's AMQPS port when the stack has TLS."""
        password = quote(self.rendered[0].password(user), safe="")
        scheme = "amqps" if self.tls else "amqp"
        return ";".join(
            f"{scheme}://{quote(user, safe='')}:{password}@127.0.0.1:"
            f"{n.ports.amqps if self.tls else n.ports.amqp}/{quote(vhost, safe='')}"
            for n in (order or self.nodes)
        )

    def apply_topology(self) -> None:
        """The full definitions.json, POSTed once every node has joined (the nodes booted with the admin
        alone), so each quorum queue gets a member on every node."""
        rendered, api = self.rendered[0], self.api()
        response = api.session.post(
            f"{api.base}/definitions",
            timeout=120,
            verify=api.verify,
            data=(rendered.config_dir / "definitions.json").read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code in (200, 201, 204), response.text


def join_refusal(cluster: RabbitCluster, timeout: float = 60) -> str:
    """Why a node is not in the cluster, from every node's log (`infra.ops.join_refusals`: the TLS alerts
    of refused connections), waited for (bounded): the reason reported rather than a timeout."""

    def reasons() -> str:
        return "\n".join(join_refusals({n.name: n.console_output().decode(errors="replace") for n in cluster.nodes}))

    return wait_for(reasons, timeout, "the reason a node is not in the cluster", interval=0.5)
