"""The whole program under mocks: broker container, topology behind it, secrets, outputs."""
from __future__ import annotations

import json

import pulumi
import pytest
from pulumi.runtime import rpc

from infra import program, render
from infra.definition import load_definition, require
from infra.plan import build_plan
from infra.stack_config import MissingSecret
from tests.support.pulumi_mocks import run
from tests.support.stacks import TEST_SECRETS

PROJECT = "rabbitmq-celery"


def with_config(values: dict[str, str]):
    pulumi.runtime.set_all_config({f"{PROJECT}:{k}": v for k, v in values.items()},
                                  secret_keys=[f"{PROJECT}:{k}" for k in values])


def is_secret(value) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap(value):
    return value["value"] if is_secret(value) else value


@pytest.fixture(autouse=True)
def clean_config():
    yield
    pulumi.runtime.set_all_config({})


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_broker_container_gets_the_rendered_files_and_waits_healthy(stack):
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack=stack)
    plan = build_plan(require(load_definition(stack=stack)))
    container = monitor.named("broker-container")
    inputs = container.inputs
    assert inputs["name"] == f"{PROJECT}-{stack}-rabbitmq" and inputs["hostname"] == "rabbitmq"
    assert inputs["wait"] is True and inputs["restart"] == "unless-stopped"
    assert container.request.deleteBeforeReplace
    assert inputs["healthcheck"]["tests"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    # definitions.json is secret, so the whole uploads input travels as one secret
    assert is_secret(inputs["uploads"])
    uploads = {u["file"]: u for u in unwrap(inputs["uploads"])}
    expected = render.render_files(plan, TEST_SECRETS)
    for name in ("rabbitmq.conf", "enabled_plugins", "definitions.json"):
        assert unwrap(uploads[f"/etc/rabbitmq/{name}"]["content"]) == expected[name], name
    assert uploads["/etc/rabbitmq/definitions.json"]["permissions"] == "0600"
    ports = {(p["internal"], p["external"], p["ip"]) for p in inputs["ports"]}
    b = plan.broker
    assert ports == {(p, p, "127.0.0.1") for p in (b.amqp_port, b.management_port, b.prometheus_port)}
    assert inputs["volumes"] == [{"containerPath": "/var/lib/rabbitmq", "volumeName": f"{PROJECT}-{stack}-rabbitmq-data"}]
    assert monitor.named("broker-data").request.retainOnDelete
    assert all(monitor.named(n).parent_name == "broker" for n in
               ("broker-network", "broker-data", "broker-image", "broker-container"))


def test_topology_provider_uses_the_admin_secret_after_the_container():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="dev")
    provider = monitor.named("broker-api")
    assert provider.inputs["endpoint"] == "http://127.0.0.1:15672" and provider.inputs["username"] == "admin"
    assert is_secret(provider.inputs["password"])
    assert unwrap(provider.inputs["password"]) == TEST_SECRETS["rabbitmqAdminPassword"]
    assert monitor.named("broker-container").urn in provider.request.dependencies


def test_unset_secrets_are_generated_as_random_passwords():
    monitor, _ = run(program.main, stack="dev")
    generated = {r.name for r in monitor.of_type("random:index/randomPassword:RandomPassword")}
    assert generated == {"secret-rabbitmqAdminPassword", "secret-rabbitmqAppPassword",
                         "secret-rabbitmqMonitorPassword"}
    assert all(is_secret(u.inputs["password"]) for u in monitor.of_type("rabbitmq:index/user:User"))


def test_a_secret_that_may_not_be_generated_must_be_set(tmp_path, monkeypatch):
    plan = build_plan(require(load_definition(file="tests/data/valid/behaviour.yaml")))
    from infra.stack_config import passwords
    with pytest.raises(MissingSecret, match="pulumi config set --secret"):
        run(lambda: passwords(plan), stack="behaviour")


def test_no_plaintext_credential_in_any_registered_input():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="prod")
    for r in monitor.registered:
        plain = json.dumps({k: v for k, v in r.inputs.items()}, default=str)
        # secrets travel wrapped; strip them, and nothing of a password may be left
        def strip(value):
            if is_secret(value):
                return "[secret]"
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items()}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value
        visible = json.dumps(strip(r.inputs), default=str)
        assert not any(s in visible for s in TEST_SECRETS.values()), (r.name, plain[:200])
