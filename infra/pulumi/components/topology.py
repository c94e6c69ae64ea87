"""Topology: the plan's vhosts, users, permissions, exchanges, queues, bindings and policies as
pulumi-rabbitmq resources, through a provider pointed at the broker's management API.

The inputs come from the same `plan.Topology` that `render.definitions` writes to definitions.json; the
pure helpers below are what the equivalence tests read back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_rabbitmq as rabbitmq

from infra.plan.plan import BindingSpec, PolicySpec, QueueSpec
from infra.plan.plan import Topology as TopologyPlan


def slug(*parts: str) -> str:
    """A resource-name-safe form of object names: `/` becomes `root`, anything odd becomes `-`."""
    return "-".join(("root" if p == "/" else re.sub(r"[^A-Za-z0-9_.\-]", "-", p.strip("/"))) for p in parts)


def policy_definition_inputs(policy: PolicySpec) -> dict[str, str]:
    """The provider takes a policy definition as a map of strings and turns every string that reads as a
    whole number back into a number before it calls the API (cyrilgdn/terraform-provider-rabbitmq,
    `putPolicy`), so the broker receives the same JSON numbers as definitions.json carries."""
    return {key: str(value) for key, value in policy.definition.items()}


def queue_settings(queue: QueueSpec) -> rabbitmq.QueueSettingsArgs:
    # Explicit, durable, and the type as the only argument: everything else lives in the policy.
    return rabbitmq.QueueSettingsArgs(durable=True, auto_delete=False, arguments_json=json.dumps(queue.arguments))


@dataclass
class TopologyArgs:
    topology: TopologyPlan
    passwords: Mapping[str, pulumi.Input[str]]  # secret key → value (a secret Output)
    provider: rabbitmq.Provider
    admin_user: str = ""  # the provider's user: its permissions come first in each vhost
    protect_queues: bool = False  # prod: a durable queue is never deleted by an `up`
    depends_on: list = field(default_factory=list)


class Topology(pulumi.ComponentResource):
    def __init__(self, name: str, args: TopologyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("rabbitmq-celery:broker:Topology", name, None, opts)
        t = args.topology
        child = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=args.depends_on)

        # The admin is the provider's own login: deleted while `destroy` still deletes the rest, every later call
        # would fail with 401. The broker boots with it (definitions.json) and goes with its container anyway.
        admin_kept = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True))
        self.vhosts = {
            vname: rabbitmq.VHost(f"{name}-vhost-{slug(vname)}", name=vname, description=description, opts=child)
            for vname, description in t.vhosts
        }
        self.users = {
            u.name: rabbitmq.User(
                f"{name}-user-{slug(u.name)}",
                name=u.name,
                tags=list(u.tags),
                password=pulumi.Output.secret(args.passwords[u.password.secret]),
                opts=admin_kept if u.name == args.admin_user else child,
            )
            for u in t.users
        }
        self.permissions = {
            (p.user, p.vhost): rabbitmq.Permissions(
                f"{name}-permissions-{slug(p.user, p.vhost)}",
                user=self.users[p.user].name,
                vhost=self.vhosts[p.vhost].name,
                permissions=rabbitmq.PermissionsPermissionsArgs(configure=p.configure, write=p.write, read=p.read),
                opts=child,
            )
            for p in t.permissions
        }

        # The provider declares queues, exchanges, bindings and policies as the admin, who may do so in a
        # vhost only once its permissions there exist: the broker boots knowing the admin user alone.
        def in_vhost(vhost: str) -> pulumi.ResourceOptions:
            admin = self.permissions.get((args.admin_user, vhost))
            return pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[admin] if admin else []))

        self.exchanges = {
            (e.vhost, e.name): rabbitmq.Exchange(
                f"{name}-exchange-{slug(e.vhost, e.name)}",
                name=e.name,
                vhost=self.vhosts[e.vhost].name,
                settings=rabbitmq.ExchangeSettingsArgs(type=e.type, durable=e.durable, auto_delete=e.auto_delete),
                opts=in_vhost(e.vhost),
            )
            for e in t.exchanges
        }
        self.queues = {
            (q.vhost, q.name): rabbitmq.Queue(
                f"{name}-queue-{slug(q.vhost, q.name)}",
                name=q.name,
                vhost=self.vhosts[q.vhost].name,
                settings=queue_settings(q),
                opts=pulumi.ResourceOptions.merge(
                    in_vhost(q.vhost), pulumi.ResourceOptions(protect=args.protect_queues)
                ),
            )
            for q in t.queues
        }
        self.bindings = [self._binding(name, b, in_vhost(b.vhost)) for b in t.bindings]
        self.policies = [
            rabbitmq.Policy(
                f"{name}-policy-{slug(p.vhost, p.name)}",
                name=p.name,
                vhost=self.vhosts[p.vhost].name,
                policy=rabbitmq.PolicyPolicyArgs(
                    pattern=p.pattern, priority=p.priority, apply_to=p.apply_to, definition=policy_definition_inputs(p)
                ),
                opts=in_vhost(p.vhost),
            )
            for p in t.policies
        ]
        self.register_outputs({"vhosts": list(self.vhosts), "queues": [q for _, q in self.queues]})

    def _binding(self, name: str, b: BindingSpec, child: pulumi.ResourceOptions) -> rabbitmq.Binding:
        exchange, queue = self.exchanges[(b.vhost, b.source)], self.queues[(b.vhost, b.destination)]
        # A queue or exchange re-created under the same name drops its bindings on the broker; the
        # binding resource must then be re-created too, though none of its inputs changed.
        opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(replace_with=[exchange, queue]))
        return rabbitmq.Binding(
            f"{name}-binding-{slug(b.vhost, b.source, b.destination, b.routing_key)}",
            vhost=self.vhosts[b.vhost].name,
            source=exchange.name,
            destination=queue.name,
            destination_type="queue",
            routing_key=b.routing_key,
            opts=opts,
        )
