"""Render a definition for a throwaway node and boot it: the same core path as `python -m infra render`."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.definition.load import load_definition, require
from infra.plan.plan import NodeLayout, Plan, build_plan
from infra.render import certs
from infra.render import files as render

from .rabbit_node import Ports, RabbitNode
from .rabbit_series import current as current_series

# Fake credentials of the test stacks: every secret key the shipped and test definitions use.
TEST_SECRETS = {
    "rabbitmqAdminPassword": "admin-test-password",
    "rabbitmqWebPassword": "web-test-password",
    "rabbitmqBeatPassword": "beat-test-password",
    "rabbitmqWorkerSyncPassword": "worker-sync-test-password",
    "rabbitmqWorkerMatchesPassword": "worker-matches-test-password",
    "rabbitmqWorkerBackgroundPassword": "worker-background-test-password",
    "rabbitmqMonitorPassword": "monitor-test-password",
    "publisherPassword": "publisher-test-password",
    "consumerPassword": "consumer-test-password",
    "djangoSecretKey": "django-test-secret-key",
    "riotApiKey": "RGAPI-test-key",
    "postgresPassword": "postgres-test-password",
    "rabbitmqErlangCookie": "erlang-test-cookie",
}


@dataclass
class Rendered:
    plan: Plan
    config_dir: Path
    passwords: dict[str, str]

    @property
    def definitions(self) -> dict:
        return json.loads((self.config_dir / "definitions.json").read_text())

    @property
    def celery(self) -> dict:
        return json.loads((self.config_dir / "celery.json").read_text())

    def password(self, user: str) -> str:
        return self.passwords[self.plan.topology.password_key(user)]


def render_for_node(
    ports: Ports,
    *,
    stack: str | None = None,
    file: Path | None = None,
    passwords: dict[str, str] | None = None,
    overlays: tuple = (),
    node_names: tuple[str, ...] = (),
) -> Rendered:
    """Render with an overlay that puts the listeners on `ports` and one that sets the series of the tests'
    nodes (then `overlays`), for a node on this host; `node_names`: on a cluster, every node's name."""
    work = Path(tempfile.mkdtemp(prefix="rendered-"))
    work.chmod(0o755)
    overlay = work / "ports.yaml"
    overlay.write_text(ports.overlay())
    series = work / "series.yaml"
    series.write_text(current_series().overlay() or "{}\n")
    definition = require(load_definition(stack=stack, file=file, overlays=(overlay, series, *overlays)))
    config_dir = work / "etc"
    plan = build_plan(definition, NodeLayout(listen_on_bind=True, config_dir=str(config_dir), node_names=node_names))
    passwords = dict(passwords or TEST_SECRETS)
    for _, ref in plan.secrets():
        passwords.setdefault(ref.secret, f"{ref.secret}-generated")
    if plan.broker.tls:  # a fresh CA per render, from `cryptography`, as `render` issues one
        passwords.update(certs.issue(plan.broker.tls, passwords))
    render.write_files({**render.render_files(plan, passwords), **render.tls_files(plan, passwords)}, config_dir)
    return Rendered(plan, config_dir, passwords)


@contextlib.contextmanager
def booted(**source):
    """(node, rendered) for a definition (`stack=` or `file=`), torn down afterwards."""
    ports = Ports.pick()
    rendered = render_for_node(ports, **source)
    node = RabbitNode(rendered.config_dir, ports, tls_only=not rendered.plan.broker.plain)
    try:
        node.start()
        yield node, rendered
    finally:
        node.close()
