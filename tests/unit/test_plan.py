"""The pure plan: one policy per queue with only the keys its type supports, dead-letter wiring, celery.json."""

import pytest

from infra.definition.load import load_definition, require
from infra.definition.validate import SUPPORTED
from infra.plan.plan import CONTAINER, NodeLayout, build_plan
from tests.support import stackgen

POLICY_KEYS = {  # model field → policy keys it sets
    "ttl": {"message-ttl"},
    "max_length": {"max-length"},
    "max_length_bytes": {"max-length-bytes"},
    "overflow": {"overflow"},
    "dead_letter": {"dead-letter-exchange", "dead-letter-routing-key"},
    "delivery_limit": {"delivery-limit"},
}


def plan_of(**source):
    return build_plan(require(load_definition(**source)))


def test_player_sync_policy_carries_the_seed_values_as_numbers():
    plan = plan_of(stack="prod")
    policy = next(p for p in plan.topology.policies if p.pattern == "^player_sync$")
    assert (policy.name, policy.vhost, policy.apply_to) == ("queue.player_sync", "/", "queues")
    assert policy.definition == {
        "message-ttl": 7_200_000,
        "max-length": 1000,
        "overflow": "reject-publish",
        "dead-letter-exchange": "dlx",
        "dead-letter-routing-key": "dead_letters",
        "delivery-limit": 5,
    }


@pytest.mark.parametrize("seed", range(5))
def test_one_policy_per_queue_with_only_supported_keys(tmp_path, seed):
    path = stackgen.write(tmp_path / "g.yaml", stackgen.generate(seed, 80, 3))
    definition = require(load_definition(file=path))
    plan = build_plan(definition)
    for vname, vhost in definition.vhosts.items():
        for qname, queue in vhost.queues.items():
            matching = [p for p in plan.topology.policies if p.vhost == vname and p.pattern == f"^{qname}$"]
            wanted = set().union(*(POLICY_KEYS[k] for k in POLICY_KEYS if getattr(queue, k) is not None))
            assert len(matching) == (1 if wanted else 0)
            if matching:
                assert set(matching[0].definition) == wanted
                allowed = set().union(*(POLICY_KEYS[k] for k in SUPPORTED[queue.type]))
                assert set(matching[0].definition) <= allowed
                assert all(
                    isinstance(v, int)
                    for k, v in matching[0].definition.items()
                    if k in ("message-ttl", "max-length", "max-length-bytes", "delivery-limit")
                )
    # the queue type is the only argument, and every queue is durable (QueueSpec has no other option)
    assert {tuple(q.arguments) for q in plan.topology.queues} == {("x-queue-type",)}


def test_dead_letter_exchange_and_bindings_are_created_per_vhost():
    topology = plan_of(stack="dev").topology
    dlx = [e for e in topology.exchanges if e.name == "dlx"]
    assert [(e.vhost, e.type, e.durable) for e in dlx] == [("/", "direct", True)]
    assert [b for b in topology.bindings if b.source == "dlx"] == [
        type(topology.bindings[0])("/", "dlx", "dead_letters", "dead_letters")
    ]
    task_bindings = {(b.destination, b.routing_key) for b in topology.bindings if b.source == "tasks"}
    assert ("player_sync", "player_sync") in task_bindings and len(task_bindings) == len(topology.queues)


def test_celery_json_declares_the_brokers_arguments_and_routes():
    plan = plan_of(stack="dev")
    celery = plan.celery
    queues = {q["name"]: q for q in celery["task_queues"]}
    assert "dead_letters" not in queues  # no worker may consume a parking queue, even one started without -Q
    assert [q["name"] for q in celery["dead_letter"]["parking_queues"]] == ["dead_letters"]
    broker_args = {q.name: q.arguments for q in plan.topology.queues}
    assert all(q["queue_arguments"] == broker_args[name] for name, q in queues.items())
    assert all(q["exchange"] == "tasks" and q["exchange_type"] == "topic" and q["durable"] for q in queues.values())
    assert celery["task_regional_routes"]["players.tasks.sync_player_data"]["americas"] == {
        "queue": "player_sync_americas",
        "exchange": "tasks",
        "routing_key": "player_sync_americas",
    }
    assert celery["task_regional_routes"]["players.tasks.sync_player_data"]["default"]["queue"] == "player_sync"
    assert celery["task_routes"]["players.tasks.recover_stale_jobs"] == {
        "queue": "recovery",
        "exchange": "tasks",
        "routing_key": "recovery",
    }
    # the Riot rate limiter paces the tasks that call Riot, for all workers; Celery's limits hold per process
    assert celery["task_annotations"] == {"players.tasks.recover_stale_jobs": {"rate_limit": "5/m"}}
    # uploaded into every app container: a pool's concurrency is not in it, so changing one re-creates one
    assert "worker_pools" not in celery
    assert (celery["broker_heartbeat_s"], celery["broker_consumer_timeout_ms"]) == (60, 30 * 60 * 1000)


def test_worker_command_is_the_seeds():
    sync = next(w for w in plan_of(stack="dev").workers if w.name == "sync")
    assert sync.command[:7] == ("celery", "-A", "config", "worker", "-l", "info", "-Q")
    assert sync.command[7] == "player_sync,player_sync_americas,player_sync_asia,player_sync_sea"


def test_layout_decides_where_the_node_listens():
    definition = require(load_definition(stack="dev"))
    assert build_plan(definition, CONTAINER).broker.listen_ip == "0.0.0.0"
    host = build_plan(definition, NodeLayout(listen_on_bind=True, config_dir="/srv/rmq")).broker
    assert (host.listen_ip, host.publish_ip, host.definitions_path) == (
        "127.0.0.1",
        "127.0.0.1",
        "/srv/rmq/definitions.json",
    )


def test_priorities_and_compression_reach_the_broker_and_celery_json():
    plan = plan_of(file="tests/data/valid/priorities.yaml")
    queues = {q.name: q.arguments for q in plan.topology.queues}
    assert queues == {"work": {"x-queue-type": "classic", "x-max-priority": 9}, "bulk": {"x-queue-type": "classic"}}
    celery = plan.celery
    assert [q["queue_arguments"] for q in celery["task_queues"]] == [queues["bulk"], queues["work"]]
    assert celery["task_routes"]["probe.urgent"]["priority"] == 9
    assert celery["task_routes"]["probe.bulk"]["compression"] == "zlib"
    assert "priority" not in celery["task_routes"]["probe.background"]


def test_a_quorum_queue_on_4_declares_no_priority_argument(tmp_path):
    overlay = tmp_path / "quorum.yaml"
    overlay.write_text(
        'broker: {version: "4.0", image: "rabbitmq:4.0-management"}\n'
        "vhosts: {probe: {queues: {work: {type: quorum}}}}\ncelery: {compression: bzip2}\n"
    )
    plan = plan_of(file="tests/data/valid/priorities.yaml", overlays=(overlay,))
    assert {q.name: q.arguments for q in plan.topology.queues}["work"] == {"x-queue-type": "quorum"}
    assert plan.celery["task_compression"] == "bzip2"


def test_every_app_service_gets_the_riot_limit_and_each_worker_its_share_of_it():
    services = {s.name: dict(s.env) for s in plan_of(stack="dev").services}
    assert {n: e["RIOT_APP_RATE_LIMIT"] for n, e in services.items() if n != "postgres"} == {
        n: "20:1,100:120" for n in ("web", "worker-sync", "worker-matches", "worker-background", "beat")
    }
    # dev: sync 2, matches 2, background 2 processes; each keeps 1/(its pool's processes × 3 pools) of a limit
    # when the limiter's store does not answer, so the shares add up to one limit at most
    shares = {n: int(e["RIOT_RATE_LIMIT_PROCESSES"]) for n, e in services.items() if n.startswith("worker-")}
    assert shares == {"worker-sync": 6, "worker-matches": 6, "worker-background": 6}
    prod = {s.name: dict(s.env) for s in plan_of(stack="prod").services}
    concurrency = {w.name: w.concurrency for w in plan_of(stack="prod").workers}
    assert sum(concurrency[n] / int(prod[f"worker-{n}"]["RIOT_RATE_LIMIT_PROCESSES"]) for n in concurrency) == 1
