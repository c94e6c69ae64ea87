"""`render --kubernetes`: every operator object valid against its CRD's schema, the topology exactly the
plan's, the Deployments exactly the plan's services, and no credential in the file."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from infra.cli.main import main
from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.render import kubernetes
from tests.support.stacks import TEST_SECRETS

CRDS = Path("tests/data/crds")
STACKS = ["dev", "staging", "prod", "local"]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _strict(schema: dict) -> dict:
    """The schema refusing unknown fields where it lists the known ones: the API server would silently
    prune them, so a misspelt field would vanish instead of failing."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in CRDS.glob("rabbitmq.com_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            if version["served"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


SCHEMAS = _crd_schemas()


def _errors(obj: dict) -> list[str]:
    schema = _strict(SCHEMAS[(obj["apiVersion"], obj["kind"])])
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def _cel_rules_on(schema: dict, value, path=()) -> list[tuple]:
    """(path, rule) of every CEL validation (`x-kubernetes-validations`) on a field the object sets: the
    schema check above cannot evaluate them, so each one must be looked at by hand."""
    found = [(path, r["rule"]) for r in schema.get("x-kubernetes-validations", [])]
    if isinstance(value, dict):
        for key, child in value.items():
            sub = schema.get("properties", {}).get(key) or schema.get("additionalProperties") or {}
            found += _cel_rules_on(sub if isinstance(sub, dict) else {}, child, path + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _cel_rules_on(schema.get("items", {}), child, path + (i,))
    return found


@pytest.fixture(scope="module", params=STACKS)
def rendered(request, tmp_path_factory):
    stack = request.param
    work = tmp_path_factory.mktemp(f"k8s-{stack}")
    secrets = work / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(TEST_SECRETS))
    assert (
        main(["render", "--stack", stack, "--out", str(work / "out"), "--secrets", str(secrets), "--kubernetes"]) == 0
    )
    text = (work / "out" / kubernetes.KUBERNETES_FILE).read_text()
    plan = build_plan(require(load_definition(stack=stack)))
    return stack, plan, text, list(yaml.safe_load_all(text))


def test_every_operator_object_is_valid_against_its_crd(rendered):
    stack, _, _, objects = rendered
    operator_objects = [o for o in objects if o["apiVersion"].startswith("rabbitmq.com/")]
    assert operator_objects
    for obj in operator_objects:
        assert _errors(obj) == [], (obj["kind"], obj["metadata"]["name"])
        schema = SCHEMAS[(obj["apiVersion"], obj["kind"])]
        assert _cel_rules_on(schema, obj) == [], "a CEL rule applies: check it by hand, then allow it here"


def test_every_object_has_a_unique_dns_name_in_the_stacks_namespace(rendered):
    stack, _, _, objects = rendered
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names))
    for obj in objects:
        assert DNS_LABEL.match(obj["metadata"]["name"]), obj["metadata"]["name"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == stack


def test_the_topology_is_the_plans(rendered):
    _, plan, _, objects = rendered
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj["spec"] if "spec" in obj else obj)
    t = plan.topology
    assert sorted((q["vhost"], q["name"], q["type"]) for q in by_kind["Queue"]) == sorted(
        (q.vhost, q.name, q.type) for q in t.queues
    )
    assert all(q["durable"] and not q["autoDelete"] and "arguments" not in q for q in by_kind["Queue"])
    assert sorted(
        (p["vhost"], p["name"], p["pattern"], p["applyTo"], p["priority"], str(p["definition"]))
        for p in by_kind["Policy"]
    ) == sorted((p.vhost, p.name, p.pattern, p.apply_to, p.priority, str(p.definition)) for p in t.policies)
    assert sorted((b["vhost"], b["source"], b["destination"], b["routingKey"]) for b in by_kind["Binding"]) == sorted(
        (b.vhost, b.source, b.destination, b.routing_key) for b in t.bindings
    )
    assert sorted((e["vhost"], e["name"], e["type"]) for e in by_kind["Exchange"]) == sorted(
        (e.vhost, e.name, e.type) for e in t.exchanges
    )
    # The deployer's admin is the operators' default user on Kubernetes: not rendered.
    admin = plan.broker.admin_user
    users = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "User"}
    assert sorted(users) == sorted(kubernetes.object_name("user", u.name) for u in t.users if u.name != admin)
    permissions = by_kind.get("Permission", [])
    assert sorted((p["userReference"]["name"], p["vhost"], p["permissions"]["read"]) for p in permissions) == sorted(
        (kubernetes.object_name("user", p.user), p.vhost, p.read) for p in t.permissions if p.user != admin
    )
    assert all(p["userReference"]["name"] in users for p in permissions)
    deletion = {q["deletionPolicy"] for q in by_kind["Queue"]}
    assert deletion == ({"retain"} if plan.environment == "prod" else {"delete"})


def test_the_cluster_carries_the_brokers_settings(rendered):
    _, plan, _, objects = rendered
    [cluster] = [o for o in objects if o["kind"] == "RabbitmqCluster"]
    assert cluster["metadata"]["name"] == "rabbitmq"  # the services' broker host, as under Docker
    assert cluster["spec"]["replicas"] == plan.broker.nodes
    config = cluster["spec"]["rabbitmq"]["additionalConfig"]
    assert f"consumer_timeout = {plan.broker.consumer_timeout_ms}" in config
    assert f"vm_memory_high_watermark.relative = {plan.broker.memory_high_watermark}" in config
    assert "listeners." not in config and "load_definitions" not in config  # the operator owns these
    assert all(
        o["spec"]["rabbitmqClusterReference"] == {"name": "rabbitmq"}
        for o in objects
        if o["apiVersion"].startswith("rabbitmq.com/") and o["kind"] != "RabbitmqCluster"
    )


def test_the_workloads_are_the_plans_services(rendered):
    _, plan, _, objects = rendered
    workloads = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("Deployment", "StatefulSet")}
    assert sorted(workloads) == sorted(s.name for s in plan.services)
    secrets = {s.name: set(s.keys) for s in kubernetes.secrets_to_create(plan)}
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config_map["data"]["celery.json"] == render_celery_json(plan)
    for spec in plan.services:
        workload = workloads[spec.name]
        pod = workload["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container.get("args", []) == list(spec.command)
        assert workload["spec"]["selector"]["matchLabels"] == workload["spec"]["template"]["metadata"]["labels"]
        assert pod["terminationGracePeriodSeconds"] == spec.stop_timeout_s
        defined = set()
        for var in container["env"]:
            for used in re.findall(r"\$\((\w+)\)", var.get("value", "")):
                assert used in defined, f"{spec.name}: {var['name']} uses {used} before it is defined"
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], ref
            defined.add(var["name"])
        assert {n for n, _ in spec.env} | {n for n, _ in spec.secret_env} <= defined
        if spec.runs_app:
            assert {"name": "celery-json", "mountPath": "/etc/app", "readOnly": True} in container["volumeMounts"]
    assert workloads.get("beat", {"spec": {"strategy": {"type": "Recreate"}}})["spec"]["strategy"] == {
        "type": "Recreate"
    }


def render_celery_json(plan) -> str:
    from infra.render.files import celery_json

    return celery_json(plan)


def test_no_credential_is_in_the_file(rendered):
    _, _, text, _ = rendered
    for value in TEST_SECRETS.values():
        assert value not in text


def test_the_validator_refuses_what_the_api_server_would_prune_or_reject():
    """The schema check is not vacuous: a misspelt field and a wrong type are both caught."""
    queue = {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": "Queue",
        "metadata": {"name": "q"},
        "spec": {"name": "q", "rabbitmqClusterReference": {"name": "rabbitmq"}},
    }
    assert _errors(queue) == []
    assert _errors({**queue, "spec": {**queue["spec"], "durabel": True}})
    assert _errors({**queue, "spec": {**queue["spec"], "durable": "yes"}})
    assert _errors({**queue, "spec": {"name": "q"}})  # no cluster reference


def test_a_three_node_stack_is_a_three_replica_cluster_that_pauses_its_minority(tmp_path):
    overlay = tmp_path / "cluster.yaml"
    overlay.write_text("broker: {nodes: 3}\n")
    plan = build_plan(require(load_definition(stack="prod", overlays=(overlay,))))
    [cluster] = [o for o in kubernetes.manifests(plan, "app:1", "{}") if o["kind"] == "RabbitmqCluster"]
    assert cluster["spec"]["replicas"] == 3
    assert "cluster_partition_handling = pause_minority" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    assert _errors(cluster) == []


def test_object_names_stay_distinct_and_within_a_dns_label():
    assert kubernetes.object_name("queue", "root", "player-sync") == "queue-root-player-sync"
    assert kubernetes.object_name("queue", "root", "player_sync") != "queue-root-player-sync"
    long = kubernetes.object_name("queue", "root", "q" * 300)
    assert len(long) <= 63 and DNS_LABEL.match(long)
    assert long != kubernetes.object_name("queue", "root", "q" * 299)
