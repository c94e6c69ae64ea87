"""Run Pulumi code on the real SDK with the engine mocked, and keep every registration for inspection."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi.runtime.mocks import MockMonitor


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict
    parent: str  # URN, "" for the stack's children
    urn: str
    request: object  # the RegisterResource request: protect, deleteBeforeReplace, replaceWith, ...

    @property
    def parent_name(self) -> str:
        return self.parent.rsplit("::", 1)[-1] if self.parent else ""


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":  # what the provider would compute
            state["result"] = f"{args.name}-generated-value"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self):
        super().__init__(_Mocks())
        self.registered: list[Registered] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.registered.append(Registered(request.type, request.name, inputs, request.parent, response.urn,
                                              request))
        return response

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.registered if r.type == type_]

    def named(self, name: str) -> Registered:
        (match,) = [r for r in self.registered if r.name == name]
        return match


def run(program, *, stack: str = "dev", project: str = "rabbitmq-celery") -> tuple[RecordingMonitor, object]:
    """Run `program()` under mocks; (the monitor with every registration, what the program returned)."""
    monitor = RecordingMonitor()
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
    result = {}

    @pulumi.runtime.test
    def body():
        result["value"] = program()
        return pulumi.Output.from_input(1)

    body()
    return monitor, result.get("value")
