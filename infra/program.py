"""The Pulumi program: the stack's definition → plan → Broker, Topology and Services components, and the
stack outputs.

`pulumi up` runs it through the root `__main__.py`; the tests run it under mocks.
"""
from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_rabbitmq as rabbitmq

from . import render
from .components.broker import Broker, BrokerArgs
from .components.services import Services, ServicesArgs
from .components.topology import Topology, TopologyArgs
from .definition import load_definition, require
from .model import StackDefinition
from .plan import boot_definitions_file, build_plan, protects_queues
from .services import broker_url, client_host, published_endpoints
from .stack_config import passwords as stack_passwords


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def broker_files(plan, passwords: dict) -> dict[str, pulumi.Input[str]]:
    """The broker's files. definitions.json holds the admin user alone (the Topology component manages
    the rest through the API); it is computed from the secret password and stays secret."""
    admin_key = plan.topology.password_key(plan.broker.admin_user)
    definitions = passwords[admin_key].apply(lambda value: render.boot_definitions_json(plan, {admin_key: value}))
    return {**render.config_files(plan),
            boot_definitions_file(plan.broker.nodes): pulumi.Output.secret(definitions)}


def main(definition: StackDefinition | None = None) -> None:
    """`pulumi up`'s entry point; `python -m infra plan` passes the definition it has already loaded."""
    stack = pulumi.get_stack()
    definition = definition or require(load_definition(stack=stack))
    plan = build_plan(definition)
    passwords = stack_passwords(plan)
    admin = definition.broker.admin_user

    prefix = f"{pulumi.get_project()}-{stack}"
    cookie = plan.broker.erlang_cookie
    broker = Broker("broker", BrokerArgs(plan.broker, broker_files(plan, passwords), resource_prefix=prefix,
                                         erlang_cookie=passwords[cookie.secret] if cookie else None))
    # Every node healthy first: a quorum queue gets its members when it is declared.
    provider = rabbitmq.Provider("broker-api", endpoint=broker.management_url, username=admin,
                                 password=passwords[plan.topology.password_key(admin)],
                                 opts=pulumi.ResourceOptions(depends_on=broker.containers))
    topology = Topology("topology", TopologyArgs(plan.topology, passwords, provider, admin_user=admin,
                                                 protect_queues=protects_queues(definition.environment),
                                                 depends_on=[broker]))
    services = Services("app", ServicesArgs(
        definition.app, plan.services, render.celery_json(plan), passwords, broker.network.name,
        resource_prefix=prefix, project_root=PROJECT_ROOT, depends_on=[topology]))

    # The same URL the containers use, with the host's view of the published port.
    celery_url = broker_url(definition, published_endpoints(plan.broker.nodes, plan.broker.publish_ip,
                                                            plan.broker.amqp_port))
    pulumi.export("management_url", broker.management_url)
    pulumi.export("amqp_url", pulumi.Output.secret(passwords[celery_url.key].apply(celery_url.fill)))
    pulumi.export("web_url", f"http://{client_host(plan.broker.publish_ip)}:{definition.app.web.port}")
    pulumi.export("worker_pools", {w.name: list(w.queues) for w in plan.workers})
    pulumi.export("containers", {n: c.name for n, c in services.containers.items()})
