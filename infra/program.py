"""The Pulumi program: the stack's definition → plan → Broker and Topology components, and the outputs.

`pulumi up` runs it through the root `__main__.py`; the tests run it under mocks.
"""
from __future__ import annotations

import pulumi
import pulumi_rabbitmq as rabbitmq

from . import render
from .components.broker import Broker, BrokerArgs, client_host
from .components.topology import Topology, TopologyArgs
from .definition import load_definition, require
from .plan import build_plan
from .stack_config import passwords as stack_passwords


def broker_files(plan, passwords: dict) -> dict[str, pulumi.Input[str]]:
    """The broker's files; definitions.json is computed from the secret passwords and stays secret."""
    keys = sorted(passwords)
    definitions = pulumi.Output.all(*(passwords[k] for k in keys)).apply(
        lambda values: render.definitions_json(plan, dict(zip(keys, values))))
    return {**render.config_files(plan), "definitions.json": pulumi.Output.secret(definitions)}


def main() -> None:
    stack = pulumi.get_stack()
    definition = require(load_definition(stack=stack))
    plan = build_plan(definition)
    passwords = stack_passwords(plan)
    admin = definition.broker.admin_user

    broker = Broker("broker", BrokerArgs(plan.broker, broker_files(plan, passwords),
                                         resource_prefix=f"{pulumi.get_project()}-{stack}"))
    provider = rabbitmq.Provider("broker-api", endpoint=broker.management_url, username=admin,
                                 password=passwords[plan.topology.password_key(admin)],
                                 opts=pulumi.ResourceOptions(depends_on=[broker.container]))
    Topology("topology", TopologyArgs(plan.topology, passwords, provider,
                                      protect_queues=definition.environment == "prod", depends_on=[broker]))

    celery_user = plan.celery["broker_user"]
    vhost = plan.celery["broker_vhost"].replace("/", "%2F")
    pulumi.export("management_url", broker.management_url)
    pulumi.export("amqp_url", pulumi.Output.secret(pulumi.Output.concat(
        "amqp://", celery_user, ":", passwords[plan.topology.password_key(celery_user)], "@",
        client_host(plan.broker), ":", str(plan.broker.amqp_port), "/", vhost)))
    pulumi.export("worker_pools", {w.name: list(w.queues) for w in plan.workers})
