"""The Pulumi program bench/pulumi_stack.py runs for its topology figure: the product's own Topology component
(infra/pulumi/components/topology.py, the real rabbitmq provider) with a generated definition's plan, against a
throwaway RabbitMQ node. Everything comes from the environment the bench sets: the definition file, the node's
management URL, and a 0600 JSON file with the users' passwords (the node booted with those users)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pulumi
import pulumi_rabbitmq as rabbitmq

from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.pulumi.components.topology import Topology, TopologyArgs


def main() -> None:
    plan = build_plan(require(load_definition(file=Path(os.environ["BENCH_DEFINITION"]))))
    passwords = {
        k: pulumi.Output.secret(v) for k, v in json.loads(Path(os.environ["BENCH_SECRETS"]).read_text()).items()
    }
    admin = plan.broker.admin_user
    provider = rabbitmq.Provider(
        "bench-api",
        endpoint=os.environ["BENCH_ENDPOINT"],
        username=admin,
        password=passwords[plan.topology.password_key(admin)],
    )
    Topology("topology", TopologyArgs(plan.topology, passwords, provider, admin_user=admin))
