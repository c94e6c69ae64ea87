"""A prod stack on the real engine: its durable queues are `protect`ed, so an `up` that would delete one stops
with the engine's protection error and changes nothing, and so does `destroy` until they are unprotected.
(The local stack with `environment: prod`, TLS on as prod requires, and a Riot key in its stack config.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import docker
from tests.pulumi.project import assert_destroyed, deployed, new_project, tls_listeners

pytestmark = [pytest.mark.pulumi, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def prod_stack():
    project = new_project(Path(tempfile.mkdtemp(prefix="pulumi-prod-")))
    tls = tls_listeners(project)
    # a parking queue of its own, which the test then removes
    archive = {"archive": {"type": "quorum", "parking": True, "max_length": 1000}}
    project.edit_stack({"environment": "prod", "broker": {"tls": tls}, "vhosts": {"/": {"queues": archive}}})
    project.pulumi("stack", "init", "--secrets-provider", "passphrase")
    project.pulumi("config", "set", "--secret", "riotApiKey", "RGAPI-test-not-a-key")
    yield from deployed(project)


def test_removing_a_queue_in_prod_is_refused_and_changes_nothing(prod_stack):
    project = prod_stack
    broker = f"{project.prefix}-rabbitmq"
    before = docker("inspect", "--format", "{{.Id}}", broker)
    path = project.root / "stacks" / f"{project.stack}.yaml"
    data = yaml.safe_load(path.read_text())
    del data["vhosts"]["/"]["queues"]["archive"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = project.deploy(check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "protect" in out and "archive" in out, out
    assert docker("inspect", "--format", "{{.Id}}", broker) == before
    queues = project.run("docker", "exec", broker, "rabbitmqctl", "list_queues", "-q", "name").stdout.split()
    assert "archive" in queues


def test_destroy_of_prod_stops_on_its_protected_queues_until_unprotected(prod_stack):
    project = prod_stack
    result = project.pulumi("destroy", "--yes", "--skip-preview", check=False, timeout=900)
    assert result.returncode != 0 and "protect" in result.stdout + result.stderr, result.stdout + result.stderr
    assert f"{project.prefix}-rabbitmq" in project.containers()
    project.pulumi("state", "unprotect", "--all", "--yes")
    assert_destroyed(project)
