"""`broker.hosts` live: three broker nodes on three separate Docker hosts (each a dockerd in a network
namespace of its own, tests/e2e/docker_hosts.py) cluster, from the very containers the Pulumi program
declares for them (its registrations under mocks, applied with the Docker CLI on the provider's host), and a
quorum queue declared through the management URL the program gives its rabbitmq provider gets a member on
every host; a message published through one host is read through another; and from a fourth Docker host,
the app's, every URL of the app's failover list reaches a node's AMQP listener."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pytest

from infra.definition.load import load_definition, require
from infra.pulumi import program
from infra.pulumi.preview import run
from tests.e2e.docker_hosts import apply_container, docker_hosts
from tests.support.rabbit_node import ManagementAPI
from tests.support.stacks import TEST_SECRETS
from tests.support.waiting import wait_for
from tests.unit.program.test_program import unwrap, with_config

pytestmark = pytest.mark.e2e

IMAGE = "rabbitmq-celery-local/rabbitmq:3.10"  # scripts/build-local-images


def unwrapped(value):
    """Registered inputs with every secret envelope opened: what the provider would receive."""
    value = unwrap(value)
    if isinstance(value, dict):
        return {k: unwrapped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrapped(v) for v in value]
    return value


def declared(hosts, work):
    """The program under mocks for a three-node stack whose `broker.hosts` are these Docker hosts."""
    overlay = work / "hosts.yaml"
    overlay.write_text(
        json.dumps(
            {"broker": {"nodes": 3, "image": IMAGE, "hosts": [{"docker": h.url, "address": h.address} for h in hosts]}}
        )
    )
    definition = require(load_definition(stack="dev", overlays=(overlay,)))
    with_config(TEST_SECRETS)
    try:
        monitor, _ = run(lambda: program.main(definition), stack="dev")
    finally:
        pulumi.runtime.set_all_config({})
    return monitor


def health(host, name: str) -> str:
    return host.docker("inspect", "-f", "{{.State.Health.Status}}", name, check=False)


def amqp_answers(app_host, hosts_entries: list[dict], endpoint: str) -> bool:
    """From a container on `app_host` with these /etc/hosts entries: send AMQP 0-9-1's protocol header to
    `endpoint` (host:port); a broker answers with a Connection.Start frame (type 1, channel 0, class 10,
    method 10)."""
    host, port = endpoint.rsplit(":", 1)
    reply = app_host.docker(
        "run",
        "--rm",
        *(f"--add-host={h['host']}:{h['ip']}" for h in hosts_entries),
        "--entrypoint",
        "bash",
        IMAGE,
        "-c",
        f"exec 3<>/dev/tcp/{host}/{port} && "
        r"printf 'AMQP\0\0\11\1' >&3 && head -c 11 <&3 | od -An -tx1",
        timeout=60,
    ).split()
    return reply[:3] == ["01", "00", "00"] and reply[7:] == ["00", "0a", "00", "0a"]


@dataclass
class Cluster:
    hosts: list  # the nodes' Docker hosts, node i on hosts[i-1]
    app_host: object  # the default Docker host: the app's
    monitor: object  # the program's registrations
    containers: list[str]

    def running(self) -> set:
        """The nodes node 1 sees running; empty until its rabbit app runs (the health check is a ping)."""
        status = self.hosts[0].docker(
            "exec", self.containers[0], "rabbitmqctl", "cluster_status", "--formatter", "json", timeout=60, check=False
        )
        return set(json.loads(status)["running_nodes"]) if status.startswith("{") else set()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Each node's network, volume and container, as the program declares them, on its own Docker host, in
    the program's order: node i once node i - 1 is healthy (its `depends_on`), as pulumi-docker's `wait`
    (within its `wait_timeout`) holds each one."""
    with docker_hosts(4, IMAGE) as all_hosts:
        hosts = all_hosts[:3]
        monitor = declared(hosts, tmp_path_factory.mktemp("hosts"))
        containers = []
        for i, host in enumerate(hosts, start=1):
            assert monitor.named(f"broker-{i}-docker").inputs["host"] == host.url
            registered = monitor.named(f"broker-{i}-container")
            if i > 1:
                assert monitor.named(f"broker-{i - 1}-container").urn in registered.request.dependencies
            host.docker("network", "create", monitor.named(f"broker-{i}-network").inputs["name"])
            host.docker("volume", "create", monitor.named(f"broker-{i}-data").inputs["name"])
            inputs = unwrapped(registered.inputs)
            apply_container(host, inputs, monitor.named(f"broker-{i}-image").inputs["name"])
            name = inputs["name"]
            wait_for(lambda: health(host, name) in ("healthy", "unhealthy"), 180, f"{name} healthy")
            assert health(host, name) == "healthy", host.logs(name)
            containers.append(name)
        yield Cluster(hosts, all_hosts[3], monitor, containers)


NODES = {f"rabbit@rabbitmq-{i}" for i in (1, 2, 3)}


def test_the_nodes_find_each_other_by_name_on_their_hosts_and_form_one_cluster(cluster):
    for i, host in enumerate(cluster.hosts[1:], start=2):  # the peers' names at their hosts' addresses
        name = f"rabbitmq-{i}"
        assert cluster.hosts[0].docker("exec", cluster.containers[0], "getent", "hosts", name).split() == [
            host.address,
            name,
        ]
    try:
        wait_for(lambda: cluster.running() == NODES, 180, "three running nodes")
    except AssertionError:
        raise AssertionError(
            "\n".join(host.logs(name) for host, name in zip(cluster.hosts, cluster.containers))
        ) from None


def test_a_quorum_queue_gets_a_member_on_every_host_and_messages_cross_them(cluster):
    wait_for(lambda: cluster.running() == NODES, 180, "three running nodes")
    provider = cluster.monitor.named("broker-api").inputs  # the topology's way in, as admin
    assert provider["endpoint"] == f"http://{cluster.hosts[0].address}:15672"
    admin = ("admin", TEST_SECRETS["rabbitmqAdminPassword"])
    api = ManagementAPI(f"{provider['endpoint']}/api", *admin)
    # the nodes boot with the admin user alone: a vhost and the admin's permissions in it first, as the
    # Topology component creates them
    for path, body in (
        ("vhosts/probe", {}),
        ("permissions/probe/admin", {"configure": ".*", "write": ".*", "read": ".*"}),
        ("queues/probe/hosts-probe", {"durable": True, "arguments": {"x-queue-type": "quorum"}}),
    ):
        api.session.put(f"{api.base}/{path}", json=body, timeout=30).raise_for_status()
    queue = wait_for(lambda: (q := api.get("queues/probe/hosts-probe")).get("members") and q, 30, "queue members")
    assert set(queue["members"]) == NODES

    second, third = (ManagementAPI(f"http://{h.address}:15672/api", *admin) for h in cluster.hosts[1:])
    published = second.session.post(
        f"{second.base}/exchanges/probe/amq.default/publish",
        json={
            "properties": {"delivery_mode": 2},
            "routing_key": "hosts-probe",
            "payload": "across hosts",
            "payload_encoding": "string",
        },
        timeout=30,
    )
    assert published.json() == {"routed": True}
    got = third.session.post(
        f"{third.base}/queues/probe/hosts-probe/get",
        json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"},
        timeout=30,
    ).json()
    assert [m["payload"] for m in got] == ["across hosts"]


def test_the_app_reaches_every_node_from_its_own_docker_host(cluster):
    """Each URL of the app's failover list leads to a node's AMQP listener through the /etc/hosts entries
    the program gives the app's containers."""
    web = unwrapped(cluster.monitor.named("app-web").inputs)
    urls = next(e for e in web["envs"] if e.startswith("CELERY_BROKER_URL=")).split("=", 1)[1].split(";")
    endpoints = [url.split("@", 1)[1].split("/", 1)[0] for url in urls]
    assert endpoints == [f"rabbitmq-{i}:5672" for i in (1, 2, 3)]
    assert all(amqp_answers(cluster.app_host, web["hosts"], endpoint) for endpoint in endpoints)
