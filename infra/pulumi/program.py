"""The Pulumi program: the stack's definition → plan → Broker, Topology and Services components, and the
stack outputs.

`pulumi up` runs it through the root `__main__.py`; the tests run it under mocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import pulumi
import pulumi_rabbitmq as rabbitmq

from infra.definition.load import load_definition, require
from infra.definition.model import StackDefinition
from infra.paths import CA_DIR, REPO
from infra.plan.plan import APP_TLS_FILES, BROKER_TLS_FILES, Plan, boot_definitions_file, build_plan, protects_queues
from infra.plan.services import broker_url, client_host, node_addresses, published_endpoints
from infra.pulumi.components.app_services import Services, ServicesArgs
from infra.pulumi.components.broker import Broker, BrokerArgs
from infra.pulumi.components.tls import Certificates, CertificatesArgs
from infra.pulumi.components.topology import Topology, TopologyArgs
from infra.pulumi.stack_config import passwords as stack_passwords
from infra.pulumi.stack_config import provided_pems
from infra.render import files as render

# The stack's CA certificate (public) for the rabbitmq provider, which reads it from a file: git-ignored.


def ca_file(stack: str, ca_pem: pulumi.Output[str], ca_dir: Path) -> pulumi.Output[str]:
    """The path of a file (under `ca_dir`) holding `ca_pem`, written once the certificate is known (never in a
    preview of a new stack, where the provider's configuration stays unknown until then)."""
    path = ca_dir / stack / "ca.pem"

    def write(pem: str) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pem)
        return str(path)

    return ca_pem.apply(write)


def broker_files(plan, passwords: dict) -> dict[str, pulumi.Input[str]]:
    """The broker's files. definitions.json holds the admin user alone (the Topology component manages
    the rest through the API); it is computed from the secret password and stays secret."""
    admin_key = plan.topology.password_key(plan.broker.admin_user)
    definitions = passwords[admin_key].apply(lambda value: render.boot_definitions_json(plan, {admin_key: value}))
    return {**render.config_files(plan), boot_definitions_file(plan.broker.nodes): pulumi.Output.secret(definitions)}


# Called with the admin's password and the stack's CA certificate (None without TLS) before anything reaches the
# broker; raising stops the update there (the root __main__.py passes the pending-migration check).
BrokerGate = Callable[[str, Optional[str]], None]


def main(
    definition: StackDefinition | None = None,
    plan: Plan | None = None,
    ca_dir: Path | None = None,
    before_broker: BrokerGate | None = None,
    green: bool = False,
) -> None:
    """`pulumi up`'s entry point: the stack's definition (loaded here when not given) and its plan, the CA
    certificate written under CA_DIR. `python -m infra plan` passes the definition and plan it has already
    built, and a scratch `ca_dir`. `green`: a blue-green upgrade's green node too (infra/cli/pulumi_upgrade.py)."""
    stack = pulumi.get_stack()
    definition = definition or require(load_definition(stack=stack))
    plan = plan or build_plan(definition)
    passwords = stack_passwords(plan)
    admin = definition.broker.admin_user
    admin_key = plan.topology.password_key(admin)

    prefix = f"{pulumi.get_project()}-{stack}"
    certificates = None
    if plan.broker.tls:
        certificates = Certificates("tls", CertificatesArgs(plan.broker.tls, stack, provided_pems(plan)))
    if before_broker is not None:
        # Every broker file and the provider's login wait for the admin password, so gating it gates them all.
        ca_pem = certificates.pems["ca_cert"] if certificates else None
        passwords[admin_key] = pulumi.Output.secret(
            pulumi.Output.all(passwords[admin_key], ca_pem).apply(lambda v: _gated(before_broker, v[0], v[1]))
        )
    files = {**broker_files(plan, passwords), **(certificates.broker_files(BROKER_TLS_FILES) if certificates else {})}
    cookie = plan.broker.erlang_cookie
    broker = Broker(
        "broker",
        BrokerArgs(
            plan.broker,
            files,
            resource_prefix=prefix,
            erlang_cookie=passwords[cookie.secret] if cookie else None,
            green=green,
        ),
    )
    # With TLS the provider talks HTTPS to the management API and verifies it against the stack's CA. Every
    # node healthy first: a quorum queue gets its members when it is declared.
    provider = rabbitmq.Provider(
        "broker-api",
        endpoint=broker.management_url,
        username=admin,
        password=passwords[admin_key],
        cacert_file=ca_file(stack, certificates.pems["ca_cert"], ca_dir or CA_DIR) if certificates else None,
        opts=pulumi.ResourceOptions(depends_on=broker.containers),
    )
    topology = Topology(
        "topology",
        TopologyArgs(
            plan.topology,
            passwords,
            provider,
            admin_user=admin,
            protect_queues=protects_queues(definition.environment),
            depends_on=[broker],
        ),
    )
    # With hosts of their own the nodes are reached at their addresses, not over a network the app shares.
    addresses = node_addresses(plan.broker)
    services = Services(
        "app",
        ServicesArgs(
            definition.app,
            plan.services,
            render.celery_json(plan),
            passwords,
            None if addresses else broker.network.name,
            resource_prefix=prefix,
            project_root=REPO,
            depends_on=[topology],
            tls_files=certificates.files(APP_TLS_FILES) if certificates else None,
            broker_addresses=addresses,
        ),
    )

    # web's URL (a publisher: the least a client on the host needs) to every node, as the host sees them.
    celery_url = broker_url(
        definition, published_endpoints(plan.broker, plan.broker.client_port), "web", scheme=plan.broker.client_scheme
    )
    pulumi.export("management_url", broker.management_url)
    # The admin's password, generated or set, for `deploy`'s migration check and the operator (secret).
    pulumi.export(admin_key, pulumi.Output.secret(passwords[admin_key]))
    pulumi.export("amqp_url", pulumi.Output.secret(passwords[celery_url.key].apply(celery_url.fill)))
    pulumi.export("web_url", f"http://{client_host(plan.broker.publish_ip)}:{definition.app.web.port}")
    pulumi.export("worker_pools", {w.name: list(w.queues) for w in plan.workers})
    pulumi.export("containers", {n: c.name for n, c in services.containers.items()})
    if certificates:
        pulumi.export("ca_cert", certificates.pems["ca_cert"])  # public: clients outside the stack trust it


def _gated(gate: BrokerGate, password: str, ca_pem: Optional[str]) -> str:
    gate(password, ca_pem)
    return password
