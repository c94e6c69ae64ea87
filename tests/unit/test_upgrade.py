"""The blue-green upgrade's pure layer: which version changes need it, the steps left from what is observed,
and `diff`'s class for it (and its refusal of a downgrade)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.ops import changes
from infra.ops.broker_api import BrokerAPIError
from infra.ops.changes import Impact
from infra.ops.upgrade import (
    ALL_STEPS,
    DRAIN_DELIVERY_LIMIT,
    Observed,
    Step,
    UpgradePath,
    drain_policies,
    remaining,
    upgrade_path,
)
from tests.unit.test_diff import diff, overlay, plans, repo  # noqa: F401 — repo is a fixture


@pytest.mark.parametrize(
    "old, new, path",
    [
        ("3.10", "3.10", UpgradePath.SAME),
        ("3.10.8", "3.10", UpgradePath.SAME),  # a patch release of the series
        ("3.12", "3.13", UpgradePath.IN_PLACE),
        ("3.13", "4.0", UpgradePath.BLUE_GREEN),  # a major version
        ("3.10.8", "4.0", UpgradePath.BLUE_GREEN),
        ("3.10", "3.12", UpgradePath.BLUE_GREEN),  # skips 3.11
        ("4.0.5", "4.1", UpgradePath.IN_PLACE),
        ("4.0", "3.13", UpgradePath.DOWNGRADE),
        ("3.13.7", "3.10", UpgradePath.DOWNGRADE),
    ],
)
def test_which_version_changes_the_broker_takes_in_place(old, new, path):
    assert upgrade_path(old, new) is path


BLUE, NEW_RUNNING, NEW_STOPPED = (False, True), (True, True), (True, False)
RUNNING, STOPPED = (True, True), (True, False)


@pytest.mark.parametrize(
    "observed, first",
    [
        (Observed(service=BLUE, green=None), Step.START_GREEN),
        (Observed(service=BLUE, green=RUNNING), Step.TOPOLOGY),
        (Observed(service=BLUE, green=RUNNING, switched=True), Step.SWITCH),
        (Observed(service=None, green=RUNNING, switched=True), Step.START_NEW),  # blue removed
        (Observed(service=NEW_RUNNING, green=RUNNING, switched=True), Step.NEW_TOPOLOGY),
        (Observed(service=NEW_RUNNING, green=RUNNING, switched=False), Step.SWITCH_BACK),  # switched back
    ],
)
def test_the_steps_left_follow_from_what_the_containers_hold(observed, first):
    steps = remaining(observed)
    assert steps[0] is first
    assert steps == ALL_STEPS[ALL_STEPS.index(first) :]


def test_nothing_to_do_when_the_broker_runs_the_new_image_or_there_is_none():
    assert remaining(Observed(service=NEW_RUNNING, green=None)) == []
    assert remaining(Observed(service=None, green=None)) == []  # a first deploy


def test_a_container_found_stopped_after_a_reboot_is_started_again():
    assert remaining(Observed(service=BLUE, green=STOPPED))[:3] == [Step.START_GREEN, Step.TOPOLOGY, Step.SWITCH]
    assert remaining(Observed(service=BLUE, green=STOPPED, switched=True))[:2] == [Step.START_GREEN, Step.SWITCH]
    assert remaining(Observed(service=NEW_STOPPED, green=RUNNING))[:2] == [Step.START_NEW, Step.SWITCH_BACK]


def test_a_major_version_is_its_own_class_with_its_steps():
    base, head = plans({}, {"broker": {"version": "4.0", "image": "rabbitmq:4.0-management"}})
    (change,) = [c for c in changes.classify(base, head) if c.subject == "broker"]
    assert change.impact is Impact.UPGRADE
    assert change.what.startswith("version 3.13 → 4.0: RabbitMQ 4.0 cannot start on 3.13's data")
    assert "`python -m infra upgrade`" in change.what and "pause" in change.what
    assert len(change.warnings) == len(ALL_STEPS) and change.warnings[0].startswith("upgrade step 1: start green")


def test_the_next_series_stays_a_restart():
    base, head = plans(
        {"broker": {"version": "3.12", "image": "rabbitmq:3.12-management"}},
        {"broker": {"version": "3.13", "image": "rabbitmq:3.13-management"}},
    )
    (change,) = [c for c in changes.classify(base, head) if c.subject == "broker"]
    assert change.impact is Impact.RESTART
    assert change.what.startswith("version 3.12 → 3.13 (in place: the next series); ")


def test_diff_reports_the_upgrade_and_exits_0(repo):  # noqa: F811
    overlay(repo, "broker: {version: '4.0', image: 'rabbitmq:4.0-management'}")
    result = diff(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upgrade (blue-green)  broker" in result.stdout
    assert "1 upgrade (blue-green)" in result.stdout and "Exit 3" not in result.stdout


def test_diff_refuses_a_downgrade_with_file_line_and_key(repo):  # noqa: F811
    overlay(repo, "broker: {version: '4.0', image: 'rabbitmq:4.0-management'}")
    import subprocess

    from tests.unit.test_diff import GIT

    subprocess.run(GIT + ["-C", str(repo), "commit", "-qam", "4.0"], check=True)
    overlay(repo, "broker: {version: '3.13', image: 'rabbitmq:3.13-management'}")
    result = diff(repo)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "broker.version" in x]
    assert line.split(": ")[0].endswith("stacks/dev.yaml:" + line.split(":")[1])
    assert "broker.version: 3.13 is older than the broker's 4.0: a downgrade is refused" in line
    assert result.stdout == ""


def test_a_task_queue_is_shovelled_by_its_name_and_a_delayed_level_keeps_each_messages_routing_key():
    from infra.ops.migration import shovel_value

    uri = "amqp://admin:pw@rabbitmq-green:5672"
    task = shovel_value("/", "player_sync", "player_sync", uri)
    assert (task["dest-exchange"], task["dest-exchange-key"]) == ("", "player_sync")
    assert task["dest-uri"] == f"{uri}/%2F" and task["ack-mode"] == "on-confirm"
    # Celery's level 5 dead-letters by the message's own key ("…0.#" to level 4): re-keyed, it would not route
    level = shovel_value("/", "celery_delayed_5", "celery_delayed_5", uri)
    assert level["dest-exchange"] == "celery_delayed_5" and "dest-exchange-key" not in level
    assert (
        shovel_value("/", "celery_delayed_events", "celery_delayed_events", uri)["dest-exchange"] == ""
    )  # not a level
    # a migration's shovel: to another queue of the same broker, by that queue's name
    moved = shovel_value("/", "effects", "effects.migrating")
    assert (moved["dest-uri"], moved["dest-exchange"], moved["dest-exchange-key"]) == (
        "amqp:///%2F",
        "",
        "effects.migrating",
    )


def test_on_a_tls_stack_the_shovels_cross_over_amqps_verifying_the_broker_and_presenting_the_apps_certificate():
    """prod's TLS (AMQPS only, mutual TLS): a shovel's URI checks the other broker's certificate against the
    stack's CA for the name every broker's certificate carries, presents the app's client certificate, from
    files on the shovel's own broker; the vhost goes before the options."""
    from urllib.parse import parse_qs, urlsplit

    from infra.cli.compose_upgrade import ComposeContainers
    from infra.cli.docker_brokers import SHOVEL_TLS_DIR
    from infra.ops.migration import shovel_value

    (plan,) = plans({}, {"broker": {"tls": {"enabled": True, "plain_listeners": False, "verify_peer": True}}})[1:]
    containers = ComposeContainers(plan, "p@ss/word", project="p", out=Path("out"), compose=print)
    uri = shovel_value("/", "player_sync", "player_sync", containers.amqp_uri("green"))["dest-uri"]
    parts = urlsplit(uri)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("amqps", "rabbitmq-green", 5671, "/%2F")
    assert parts.password == "p%40ss%2Fword"
    assert parse_qs(parts.query) == {
        "cacertfile": [f"{SHOVEL_TLS_DIR}/ca.pem"],
        "certfile": [f"{SHOVEL_TLS_DIR}/client.pem"],
        "keyfile": [f"{SHOVEL_TLS_DIR}/client.key"],
        "verify": ["verify_peer"],
        "server_name_indication": ["rabbitmq"],
    }
    assert "rabbitmq" in plan.broker.tls.server_names  # the name checked is on the broker's certificate


def test_pulumi_up_is_refused_a_blue_green_jump_and_a_downgrade_before_it_reaches_the_broker():
    """`deploy` and the program's gate stop on these (the program would start the new image on the old data)."""
    from infra.ops.upgrade import pulumi_refusal
    from infra.plan.stack import Stack

    source = Stack.load(stack="local").source
    assert pulumi_refusal(source, "3.10.8", "3.10", "local") is None
    # in place: the container restarts on the new image
    assert pulumi_refusal(source, "3.12.1", "3.13", "local") is None
    jump = pulumi_refusal(source, "3.10.8", "4.0", "local")
    assert jump is not None and not jump.invalid
    assert "RabbitMQ 3.10.8" in jump.text and "cannot take in place" in jump.text and "nothing was changed" in jump.text
    assert "python -m infra deploy --stack local" in jump.text
    down = pulumi_refusal(source, "4.0.5", "3.10", "local")
    assert down is not None and down.invalid
    file_line, key, message = down.text.split(": ", 2)
    assert file_line.split(":")[0].endswith("stacks/local.yaml") and key == "broker.version"
    assert message.startswith("3.10 is older than the broker's 4.0.5: a downgrade is refused")


@pytest.mark.parametrize("stack", ["dev", "local", "staging", "prod"])
def test_the_drain_policy_outranks_every_policy_of_the_stack_and_keeps_only_a_delivery_limit_out_of_reach(stack):
    """A shovel's message refused by the next broker returns to the source's queue, each return counting
    toward its delivery-limit: while the source drains, its policy must be the drain policy, in every vhost."""
    from collections import defaultdict

    from infra.definition.load import load_definition, require
    from infra.plan.plan import build_plan
    from infra.render.files import definitions

    plan = build_plan(require(load_definition(stack=stack)))
    rendered = definitions(plan.topology, defaultdict(str))
    vhosts = [v["name"] for v in rendered["vhosts"]]
    policies = drain_policies(vhosts + vhosts[:1])  # a vhost named twice: one policy
    assert [p["vhost"] for p in policies] == sorted(vhosts)
    assert all(p["priority"] > q["priority"] for p in policies for q in rendered["policies"])
    limits = [q["definition"].get("delivery-limit", 0) for q in rendered["policies"]]
    for p in policies:
        assert p["pattern"] == ".*" and p["apply-to"] == "queues"
        assert p["definition"] == {"delivery-limit": DRAIN_DELIVERY_LIMIT} and DRAIN_DELIVERY_LIMIT > 1000 * max(limits)


class _BusyBlue:
    """Blue's container as the upgrade's first look sees it on a loaded machine: running, on the old image,
    its `rabbitmqctl version` timing out `busy` times before it answers (BrokerContainers' three reads)."""

    def __init__(self, busy: int):
        self.busy = busy

    def service(self):
        return (False, True)

    def green(self):
        return None

    def version(self, role):
        if self.busy:
            self.busy -= 1
            raise BrokerAPIError("blue: rabbitmqctl version: Command timed out after 120 seconds")
        return "3.10.8"


def test_the_first_look_waits_out_a_broker_too_busy_to_answer_and_says_so(monkeypatch):
    """`deploy`'s and `upgrade`'s first look (`pending_when_answering`) asks again while blue does not answer,
    within its bound; past it, the broker's own error is raised, as before."""
    from infra.ops import upgrader

    monkeypatch.setattr(upgrader, "RETRY_S", 0)
    (plan,) = plans({}, {"broker": {"version": "4.0", "image": "rabbitmq:4.0-management"}})[1:]
    said: list[str] = []
    found = upgrader.Upgrader(_BusyBlue(busy=2), plan, b"{}", progress=said.append).pending_when_answering()
    assert found == ("3.10.8", ALL_STEPS)
    assert said == ["  broker: blue: rabbitmqctl version: Command timed out after 120 seconds; retrying"] * 2
    with pytest.raises(BrokerAPIError, match="timed out"):
        upgrader.Upgrader(_BusyBlue(busy=1), plan, b"{}", progress=said.append).pending_when_answering(within_s=-1)


@pytest.mark.parametrize("ca", ["generate", "provided"])
def test_a_pulumi_stacks_shovels_get_the_stacks_ca_and_the_apps_client_certificate(ca):
    """`deploy` hands the shovels the PEMs from where the stack keeps them: with `ca: generate` the pulumi_tls
    resources in the exported state (a secret as the export writes it), with `ca: provided` the stack config."""
    from infra.cli.pulumi_upgrade import shovel_pems
    from infra.pulumi.deploy import SECRET_SIG, Engine

    (plan,) = plans({}, {"broker": {"tls": {"enabled": True, "ca": ca}}})[1:]

    def secret(text: str) -> dict:
        return {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "plaintext": json.dumps(text)}

    resources = [
        {"urn": "urn:pulumi:dev::p::rabbitmq-celery:tls:Certificates$tls:index/locallySignedCert:LocallySignedCert::tls-client",
         "outputs": {"certPem": "STATE CLIENT CERT"}},
        {"urn": "urn:pulumi:dev::p::rabbitmq-celery:tls:Certificates$tls:index/privateKey:PrivateKey::tls-client-key",
         "outputs": {"privateKeyPem": secret("STATE CLIENT KEY")}},
    ]  # fmt: skip
    config = {"tlsCaCert": "CONFIG CA", "tlsClientCert": "CONFIG CLIENT CERT", "tlsClientKey": "CONFIG CLIENT KEY"}
    outputs = {"ca_cert": "OUTPUT CA"}
    pems = shovel_pems(
        plan.broker, lambda key: config.get(key) or outputs.get(key), Engine(None, {"resources": resources})
    )
    if ca == "generate":
        assert pems == {"ca.pem": "OUTPUT CA", "client.pem": "STATE CLIENT CERT", "client.key": "STATE CLIENT KEY"}
    else:
        assert pems == {"ca.pem": "CONFIG CA", "client.pem": "CONFIG CLIENT CERT", "client.key": "CONFIG CLIENT KEY"}
    with pytest.raises(RuntimeError, match="not in its state"):
        shovel_pems(plan.broker, lambda key: None, Engine(None, {}))
