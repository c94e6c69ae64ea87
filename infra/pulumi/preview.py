"""The program on the real Pulumi SDK with the engine mocked: every registration kept, for the tests and
for `python -m infra plan`, which prints them as the tree of resources `pulumi up` would create.

No Pulumi CLI, no provider plugin, no credential and no Docker are involved: the mocks answer each
registration with its own inputs.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from infra.paths import CA_DIR
from infra.plan.plan import Plan, build_plan


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
        """The parent's name; "" for the stack's own children."""
        return "" if not self.parent or "::pulumi:pulumi:Stack::" in self.parent else self.parent.rsplit("::", 1)[-1]


TLS_OUTPUTS = {
    "tls:index/privateKey:PrivateKey": "privateKeyPem",
    "tls:index/selfSignedCert:SelfSignedCert": "certPem",
    "tls:index/locallySignedCert:LocallySignedCert": "certPem",
    "tls:index/certRequest:CertRequest": "certRequestPem",
}


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":  # what the provider would compute
            state["result"] = f"{args.name}-generated-value"
        elif args.typ in TLS_OUTPUTS:  # pulumi_tls: a placeholder PEM per resource and inputs, so a changed
            # request changes the certificate downstream, as the provider would
            digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:12]
            state[TLS_OUTPUTS[args.typ]] = f"{args.name} {TLS_OUTPUTS[args.typ]} (mock {digest})"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self):
        super().__init__(_Mocks())
        self.registered: list[Registered] = []
        self.outputs: dict = {}  # the stack's exports, as the engine receives them (secrets still wrapped)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.registered.append(
                Registered(request.type, request.name, inputs, request.parent, response.urn, request)
            )
        return response

    def RegisterResourceOutputs(self, request):
        if "::pulumi:pulumi:Stack::" in request.urn:
            self.outputs = pulumi.runtime.rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        return super().RegisterResourceOutputs(request)

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

    def body():
        result["value"] = program()

    # As the SDK's entry point runs a program: inside a Stack resource, so exports reach the monitor.
    pulumi.runtime.settings.set_root_resource(None)
    _sync_await(run_in_stack(body))
    return monitor, result.get("value")


# --- `python -m infra plan`: the program under mocks, as a tree of resources -------------------------

SECRET = "[secret]"
PLACEHOLDER = "placeholder-not-a-credential"

# The inputs a reviewer wants to see per resource type, by their engine (camelCase) names.
KEY_INPUTS = {
    "docker:index/network:Network": ("name",),
    "docker:index/volume:Volume": ("name",),
    "docker:index/remoteImage:RemoteImage": ("name",),
    "docker:index/image:Image": ("imageName", "build.context"),
    "docker:index/container:Container": ("name", "image", "command", "ports", "hosts", "envs", "uploads"),
    "pulumi:providers:docker": ("host", "sshOpts"),
    "pulumi:providers:rabbitmq": ("endpoint", "username", "password"),
    "random:index/randomPassword:RandomPassword": ("length",),
    "tls:index/privateKey:PrivateKey": ("algorithm", "ecdsaCurve"),
    "tls:index/selfSignedCert:SelfSignedCert": ("subject.commonName", "validityPeriodHours"),
    "tls:index/certRequest:CertRequest": ("subject.commonName", "dnsNames", "ipAddresses"),
    "tls:index/locallySignedCert:LocallySignedCert": ("allowedUses", "validityPeriodHours"),
    "rabbitmq:index/vHost:VHost": ("name",),
    "rabbitmq:index/user:User": ("name", "tags", "password"),
    "rabbitmq:index/permissions:Permissions": ("user", "vhost", "permissions"),
    "rabbitmq:index/exchange:Exchange": ("name", "vhost", "settings.type"),
    "rabbitmq:index/queue:Queue": ("name", "vhost", "settings.argumentsJson"),
    "rabbitmq:index/binding:Binding": ("vhost", "source", "destination", "routingKey"),
    "rabbitmq:index/policy:Policy": ("name", "vhost", "policy.definition"),
}


def is_secret(value) -> bool:
    """A registered input or output that is secret arrives wrapped in the engine's secret envelope."""
    rpc = pulumi.runtime.rpc
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


@dataclass
class Preview:
    stack: str
    resources: list[Registered]
    outputs: dict
    notes: list[str]  # what `pulumi up` would need that the stack config does not have


def masked(value):
    """The value as a preview shows it: every secret as [secret], unknowns as (unknown), a map's keys in
    sorted order. The engine's wire form (a protobuf Struct) does not keep a map's order, and its iteration
    order changes from one process to the next; sorted, the same stack prints the same plan every time."""
    if is_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: masked(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if value is pulumi.runtime.rpc.UNKNOWN or value == pulumi.runtime.rpc.UNKNOWN:
        return "(unknown)"
    if isinstance(value, float) and value.is_integer():  # the wire has no integers
        return int(value)
    return value


def stack_config(stacks_dir: Path, stack: str, project: str) -> tuple[dict[str, str], set[str]]:
    """(plain values, keys set as secrets) of `stacks/Pulumi.<stack>.yaml`; the ciphertexts stay unread."""
    path = stacks_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return {}, set()
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    plain, secure = {}, set()
    for key, value in config.items():
        name = key.split(":", 1)[1] if key.startswith(f"{project}:") else None
        if name is None:
            continue
        if isinstance(value, dict) and "secure" in value:
            secure.add(name)
        else:
            plain[name] = str(value)
    return plain, secure


def preview(
    definition,
    stack: str,
    stacks_dir: Path,
    project: str = "rabbitmq-celery",
    *,
    plan: Plan | None = None,
    shortcuts: bool = True,
) -> Preview:
    """What `pulumi up` on `stack` would register, with the stack config's keys (not its secrets); `plan`: the
    definition's, when the caller has built it already. `shortcuts`: skip the SDK's work that the mocks
    discard (infra/pulumi/sdk_shortcuts.py); same result."""
    from infra.pulumi import program, sdk_shortcuts

    plan = plan or build_plan(definition)
    plain, secure = stack_config(stacks_dir, stack, project)
    notes = []
    config = {**plain, **{k: PLACEHOLDER for k in secure}}
    for _, ref in plan.all_secrets():
        if ref.secret not in config and not ref.generate:
            notes.append(
                f"{ref.secret} is not set in {stacks_dir / f'Pulumi.{stack}.yaml'}: `pulumi up` would "
                f"stop; run `pulumi config set --secret {ref.secret} ...`"
            )
            config[ref.secret] = PLACEHOLDER
    # The program reads the stack config as under `pulumi up`, where the engine sets it.
    pulumi.runtime.set_all_config(
        {f"{project}:{k}": v for k, v in config.items()},
        secret_keys=[f"{project}:{k}" for k in set(config) - set(plain)],
    )
    try:
        with sdk_shortcuts.applied(shortcuts), tempfile.TemporaryDirectory(prefix="plan-ca-") as scratch:
            # the mock CA certificate is not written where `pulumi up` keeps it
            monitor, _ = run(lambda: program.main(definition, plan, ca_dir=Path(scratch)), stack=stack, project=project)
            # shown as where `pulumi up` writes it, so the plan reads the same in every run
            for registered in monitor.registered:
                registered.inputs.update(_replaced(registered.inputs, scratch, str(CA_DIR)))
    finally:
        pulumi.runtime.set_all_config({})
    return Preview(stack, monitor.registered, masked(monitor.outputs), notes)


def _replaced(value, old: str, new: str):
    """`value` with `old` replaced by `new` in every string inside it."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _replaced(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, old, new) for v in value]
    return value


def _pick(inputs: dict, dotted: str):
    value = inputs
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _short(value, width: int = 110) -> str:
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_short(v, width)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_short(v, width) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def key_inputs(r: Registered) -> str:
    inputs = masked(r.inputs)
    if r.type == "docker:index/container:Container":
        if isinstance(inputs.get("uploads"), list):
            inputs["uploads"] = [
                u["file"] + (" " + SECRET if u.get("content") == SECRET else "") for u in inputs["uploads"]
            ]
        if isinstance(inputs.get("ports"), list):
            inputs["ports"] = [f"{p.get('ip', '0.0.0.0')}:{p['external']}->{p['internal']}" for p in inputs["ports"]]
        if isinstance(inputs.get("command"), list):
            inputs["command"] = " ".join(inputs["command"])
        if isinstance(inputs.get("hosts"), list):
            inputs["hosts"] = [f"{h['host']}={h['ip']}" for h in inputs["hosts"]]
    fields = KEY_INPUTS.get(r.type, ("name",))
    if r.type.startswith("docker:") and r.request.provider:  # a node's own Docker host (`broker.hosts`)
        inputs["provider"], fields = provider_name(r.request.provider), ("provider", *fields)
    shown = [(f, _pick(inputs, f)) for f in fields]
    return "  ".join(f"{f.rsplit('.', 1)[-1]}={_short(v)}" for f, v in shown if v not in (None, [], {}))


def provider_name(reference: str) -> str:
    """The resource name in a provider reference (`<urn>::<id>`, the URN ending in `::<name>`)."""
    return reference.rsplit("::", 2)[-2]


def _flags(r: Registered) -> str:
    flags = [
        name
        for name, on in (
            ("protect", r.request.protect),
            ("delete-before-replace", r.request.deleteBeforeReplace),
            ("retain-on-delete", r.request.retainOnDelete),
        )
        if on
    ]
    return f"  ({', '.join(flags)})" if flags else ""


def tree(p: Preview) -> str:
    """One line per resource, children under their parent: name, type, key inputs."""
    by_parent: dict[str, list[Registered]] = {}
    for r in p.resources:
        by_parent.setdefault("" if not r.parent or "::pulumi:pulumi:Stack::" in r.parent else r.parent, []).append(r)
    lines = [f"{p.stack} (pulumi:pulumi:Stack)"]

    def walk(parent: str, prefix: str) -> None:
        children = sorted(by_parent.get(parent, []), key=lambda r: r.name)
        for i, r in enumerate(children):
            last = i == len(children) - 1
            detail = key_inputs(r)
            lines.append(
                f"{prefix}{'└─ ' if last else '├─ '}{r.name}  {r.type}{_flags(r)}"
                + (f"\n{prefix}{'   ' if last else '│  '}   {detail}" if detail else "")
            )
            walk(r.urn, prefix + ("   " if last else "│  "))

    walk("", "")
    lines.append("")
    lines.append("Outputs:")
    lines += [f"  {k}: {_short(v)}" for k, v in p.outputs.items()]
    return "\n".join(lines)


def as_json(p: Preview) -> dict:
    names = {r.urn: r.name for r in p.resources}
    return {
        "stack": p.stack,
        "resources": [
            {
                "type": r.type,
                "name": r.name,
                "parent": names.get(r.parent, ""),
                "inputs": masked(r.inputs),
                "protect": r.request.protect,
                "delete_before_replace": r.request.deleteBeforeReplace,
                "retain_on_delete": r.request.retainOnDelete,
                "depends_on": sorted({names[u] for u in r.request.dependencies if u in names}),
                **({"provider": provider_name(r.request.provider)} if r.request.provider else {}),
            }
            for r in sorted(p.resources, key=lambda r: (names.get(r.parent, ""), r.name))
        ],
        "outputs": p.outputs,
        "notes": p.notes,
    }
