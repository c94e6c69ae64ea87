"""`python -m infra validate|render|plan|diff|migrate|upgrade|deploy|verify|docs`: parse arguments, call the core, print,
return an exit status."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from infra.cli.table import table
from infra.definition import reference as docs
from infra.definition import validate
from infra.definition.findings import format_finding
from infra.definition.units import Duration, Size
from infra.paths import REPO, STACKS_DIR
from infra.plan import plan as planning
from infra.plan.stack import Stack
from infra.pulumi import preview
from infra.render import files as render
from infra.render import secrets
from infra.render.images import MissingBuildContext, app_image_name, build_context


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    INVALID = 2
    DATA_LOSS = 3
    DRIFT = 4
    USAGE = 64  # EX_USAGE


# What each status means: docs/commands.md's table of exit statuses is generated from it.
EXIT_MEANING = {
    ExitStatus.OK: "done (warnings may be printed)",
    ExitStatus.ERROR: "the command could not do its work (I/O, a broker that does not answer, a timeout)",
    ExitStatus.INVALID: "the definition has errors: nothing is written, deployed or migrated",
    ExitStatus.DATA_LOSS: "`diff`: a change loses queued messages, and `--allow-data-loss` was not given",
    ExitStatus.DRIFT: "`verify`: the live broker differs from the definition",
    ExitStatus.USAGE: "the command line itself is wrong",
}


def diff_exit(impacts, allow_data_loss: bool) -> ExitStatus:
    """`diff`'s exit status for changes of these classes (the docs' table of classes is generated from it)."""
    from infra.ops.changes import Impact

    lost = any(i is Impact.DATA_LOSS for i in impacts)
    return ExitStatus.DATA_LOSS if lost and not allow_data_loss else ExitStatus.OK


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2, which here means "invalid definition"
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(ExitStatus.USAGE)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", metavar="ENV", help="stacks/base.yaml overlaid with stacks/ENV.yaml")
    which.add_argument("--file", metavar="PATH", type=Path, help="one definition file, no overlay")
    parser.add_argument(
        "--overlay",
        metavar="PATH",
        type=Path,
        action="append",
        default=[],
        help="another file laid over the definition (repeatable, in order)",
    )
    parser.add_argument("--stacks-dir", metavar="DIR", type=Path, default=None, help=argparse.SUPPRESS)


def _add_login_arguments(
    parser: argparse.ArgumentParser, url_help: str, required: bool = False, secrets_use: str = "the admin's password"
) -> None:
    parser.add_argument("--management-url", metavar="URL", required=required, help=url_help)
    parser.add_argument(
        "--user",
        metavar="U",
        help="management user (default: broker.admin_user); its password "
        "from $RABBITMQ_PASSWORD, else from the secrets file",
    )
    parser.add_argument(
        "--secrets",
        metavar="PATH",
        type=Path,
        help=f"secrets file (default .secrets/<environment>.yaml): {secrets_use}",
    )
    parser.add_argument(
        "--ca-cert",
        metavar="PATH",
        help="the CA an https:// management URL is verified with, e.g. "
        "the rendered tls/ca.pem or `pulumi stack output ca_cert`",
    )


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="python -m infra", description="RabbitMQ + Celery stacks from one definition.")
    commands = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    v = commands.add_parser("validate", help="check a definition; exit 2 on any error")
    _add_source_arguments(v)
    r = commands.add_parser("render", help="write rabbitmq.conf, enabled_plugins, definitions.json, celery.json")
    _add_source_arguments(r)
    r.add_argument("--out", metavar="DIR", type=Path, required=True)
    r.add_argument(
        "--secrets", metavar="PATH", type=Path, help="secrets file (default .secrets/<environment>.yaml, created 0600)"
    )
    r.add_argument(
        "--target",
        choices=("container", "host"),
        default="container",
        help="container: listen on all interfaces inside the container, files in /etc/rabbitmq; "
        "host: listen on listeners.bind, files where --out is",
    )
    r.add_argument(
        "--compose",
        action="store_true",
        help="also docker-compose.yml and its 0600 env files: the whole stack for docker-compose",
    )
    r.add_argument(
        "--kubernetes",
        action="store_true",
        help="also kubernetes.yaml: a RabbitmqCluster, the topology as Messaging Topology Operator "
        "objects, and the app's Deployments",
    )
    r.add_argument(
        "--monitoring",
        action="store_true",
        help="also prometheus.yml, alerts.yml and dashboard.json (Grafana) for this stack",
    )
    p = commands.add_parser(
        "plan",
        help="the resources `pulumi up` would create: the Pulumi program run "
        "under mocks, offline (no Pulumi CLI, credentials or Docker)",
    )
    _add_source_arguments(p)
    p.add_argument("--json", action="store_true", help="the resources, their inputs and the outputs as JSON")
    f = commands.add_parser(
        "diff", help="classify the changes since a git ref: in place, restart, data loss; exit 3 on data loss"
    )
    f.add_argument("--stack", metavar="ENV", required=True)
    f.add_argument("--base", metavar="GIT_REF", required=True, help="e.g. origin/main, HEAD~1, a tag")
    f.add_argument(
        "--format", choices=("text", "markdown"), default="text", help="markdown: for a pull-request comment"
    )
    f.add_argument("--allow-data-loss", action="store_true", help="exit 0 even when a change loses messages")
    f.add_argument("--stacks-dir", metavar="DIR", type=Path, default=None, help=argparse.SUPPRESS)
    m = commands.add_parser(
        "migrate",
        help="move the messages of queues whose type changed or that were renamed "
        "(renamed_from) on a live broker; prints the steps first",
    )
    _add_source_arguments(m)
    _add_login_arguments(m, "default: the stack's own, from its listeners")
    m.add_argument("--dry-run", action="store_true", help="print the steps and where the broker is; change nothing")
    m.add_argument(
        "--timeout", metavar="S", type=float, default=3600, help="give up after S seconds (run again to carry on)"
    )
    u = commands.add_parser(
        "upgrade",
        help="replace a compose stack's broker blue-green when broker.version is one it cannot take in place "
        "(a major version, a skipped series); prints the steps first (deploy does it on a Pulumi stack)",
    )
    u.add_argument("--stack", metavar="ENV", required=True, help="the stack: stacks/base.yaml + stacks/ENV.yaml")
    u.add_argument("--overlay", metavar="PATH", type=Path, action="append", default=[], help="a file laid over it")
    u.add_argument("--secrets", metavar="PATH", type=Path, help="secrets file (default .secrets/<environment>.yaml)")
    u.add_argument("--out", metavar="DIR", type=Path, help="the compose render directory (default build/ENV)")
    u.add_argument("--project", metavar="NAME", help="the compose project (default rabbitmq-celery-ENV)")
    u.add_argument("--dry-run", action="store_true", help="print the steps and where things are; change nothing")
    u.add_argument(
        "--timeout", metavar="S", type=float, default=3600, help="give up after S seconds (run again to carry on)"
    )
    d = commands.add_parser(
        "deploy",
        help="validate, upgrade the broker blue-green and migrate queues if it must, then `pulumi up` the stack "
        "on a local file backend",
    )
    d.add_argument("--stack", metavar="ENV", required=True, help="the stack: stacks/base.yaml + stacks/ENV.yaml")
    d.add_argument("--preview", action="store_true", help="`pulumi preview --diff` instead of `up`")
    y = commands.add_parser("verify", help="compare a live broker with the definition; exit 4 on drift")
    _add_source_arguments(y)
    _add_login_arguments(
        y,
        "e.g. http://127.0.0.1:15672",
        required=True,
        secrets_use="users' passwords are checked against the broker's hashes",
    )
    y.add_argument("--json", action="store_true", help="the findings as JSON")
    commands.add_parser("docs", help="print the definition's field reference (Markdown)")
    return top


def _load(args) -> Stack:
    """The stack the command line names, loaded once; the command passes it down."""
    kwargs = {"stacks_dir": args.stacks_dir} if args.stacks_dir else {}
    return Stack.load(stack=args.stack, file=args.file, overlays=tuple(args.overlay), **kwargs)


def _report(findings) -> None:
    for finding in findings:
        print(format_finding(finding), file=sys.stderr)


def _summary(loaded: Stack) -> str:
    errors = len(loaded.errors)
    warnings = len(loaded.findings) - errors
    return f"{' + '.join(loaded.files)}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def _valid(loaded: Stack, nothing: str) -> Stack | None:
    """`loaded` with its findings printed, or None after saying `nothing` happened (it has errors)."""
    _report(loaded.findings)
    if not loaded.ok:
        print(f"{_summary(loaded)}; {nothing}", file=sys.stderr)
        return None
    return loaded


def cmd_validate(args) -> ExitStatus:
    loaded = _load(args)
    _report(loaded.findings)
    print(_summary(loaded), file=sys.stderr)
    return ExitStatus.OK if loaded.ok else ExitStatus.INVALID


def _compose_files(
    definition, the_plan: planning.Plan, values: dict[str, str], rendered: dict[str, str]
) -> dict[str, str]:
    from infra.render import compose

    document = compose.compose_file(
        the_plan,
        rendered,
        app_image_name(definition.app, REPO),
        build_context(definition.app, REPO),
        definition.app.base_image,
    )
    return {compose.COMPOSE_FILE: compose.compose_yaml(document), **compose.env_files(the_plan, values)}


def _kubernetes_files(loaded: Stack, celery_json: str) -> dict[str, str]:
    from infra.render import kubernetes

    the_plan = loaded.plan  # pods reach the nodes over the cluster's network, as containers do
    objects = kubernetes.manifests(the_plan, app_image_name(loaded.definition.app, REPO), celery_json)
    return {kubernetes.KUBERNETES_FILE: kubernetes.kubernetes_yaml(the_plan, objects)}


def _known_secrets(args, environment: str) -> tuple[Path, dict[str, str] | None]:
    """`--secrets` or `.secrets/<environment>.yaml`, and its values (None, reported, when unreadable)."""
    path = args.secrets or secrets.SECRETS_DIR / f"{environment}.yaml"
    try:
        return path, secrets.read_secrets_file(path)
    except (OSError, ValueError) as exc:
        print(f"{path}: cannot read the secrets file: {exc}", file=sys.stderr)
        return path, None


def cmd_render(args) -> ExitStatus:
    loaded = _valid(_load(args), "nothing written")
    if loaded is None:
        return ExitStatus.INVALID
    if args.monitoring and "rabbitmq_prometheus" not in loaded.definition.broker.plugins:
        print(
            "python -m infra render: --monitoring scrapes the rabbitmq_prometheus plugin; add it to broker.plugins",
            file=sys.stderr,
        )
        return ExitStatus.INVALID
    targets = validate.render_target_findings(
        loaded.definition, loaded.source, compose=args.compose, kubernetes=args.kubernetes
    )
    _report(targets)
    if any(f.is_error for f in targets):
        print(f"{' + '.join(loaded.files)}: not renderable as asked; nothing written", file=sys.stderr)
        return ExitStatus.INVALID
    if args.compose and args.target == "host":
        print("python -m infra render: --compose runs the broker in a container; drop --target host", file=sys.stderr)
        return ExitStatus.USAGE
    layout = (
        planning.NodeLayout(listen_on_bind=True, config_dir=str(args.out.resolve()))
        if args.target == "host"
        else planning.CONTAINER
    )
    the_plan = loaded.plan_for(layout)
    secrets_path, known = _known_secrets(args, loaded.definition.environment)
    if known is None:
        return ExitStatus.ERROR
    wanted = the_plan.all_secrets() if args.compose else the_plan.secrets()
    resolved = secrets.resolve(wanted, known, loaded.source)
    tls = secrets.resolve_tls(the_plan, known, loaded.source)
    if resolved.findings or tls.findings:
        _report(resolved.findings + tls.findings)
        print(f"{len(resolved.findings + tls.findings)} secret(s) missing; nothing written", file=sys.stderr)
        return ExitStatus.INVALID
    files = {**render.render_files(the_plan, resolved.values), **render.tls_files(the_plan, tls.values)}
    try:
        if args.compose:
            files.update(_compose_files(loaded.definition, the_plan, resolved.values, files))
        if args.kubernetes:
            files.update(_kubernetes_files(loaded, files["celery.json"]))
    except MissingBuildContext as exc:
        print(f"python -m infra render: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    if args.monitoring:
        from infra.render import monitoring

        files.update(monitoring.monitoring_files(loaded.definition, the_plan))
    generated = resolved.generated + tls.generated
    if generated:
        secrets.write_secrets_file(secrets_path, {**known, **resolved.values, **tls.values})
    written = render.write_files(files, args.out)
    rows = [(str(path), f"{path.stat().st_size} B", oct(path.stat().st_mode & 0o777)) for path in written]
    if generated:
        rows.append((str(secrets_path), f"{len(generated)} generated", "0o600"))
    print(table(("file", "size", "mode"), rows))
    return ExitStatus.OK


_SHORT = {
    "message-ttl": ("ttl", lambda v: str(Duration(v))),
    "max-length": ("max", str),
    "max-length-bytes": ("max", lambda v: str(Size(v))),
    "overflow": ("", str),
    "dead-letter-routing-key": ("dlq", str),
    "delivery-limit": ("limit", str),
}


def _policy_summary(definition: dict) -> str:
    parts = [f"{_SHORT[k][0]}={_SHORT[k][1](v)}" if _SHORT[k][0] else v for k, v in definition.items() if k in _SHORT]
    return " ".join(parts) or "-"


def cmd_plan(args) -> ExitStatus:
    loaded = _valid(_load(args), "nothing planned")
    if loaded is None:
        return ExitStatus.INVALID
    stack = args.stack or loaded.definition.environment
    try:
        result = preview.preview(loaded.definition, stack, args.stacks_dir or STACKS_DIR, plan=loaded.plan)
    except MissingBuildContext as exc:
        print(f"python -m infra plan: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(preview.as_json(result), indent=2))
        return ExitStatus.OK
    print(preview.tree(result))
    print()
    the_plan = loaded.plan
    policies = {(p.vhost, p.pattern): p.definition for p in the_plan.topology.policies}
    consumers = {q: w.name for w in the_plan.workers for q in w.queues}
    rows = [
        (
            q.vhost,
            q.name,
            q.type,
            consumers.get(q.name, "-"),
            _policy_summary(policies.get((q.vhost, f"^{re.escape(q.name)}$"), {})),
        )
        for q in the_plan.topology.queues
    ]
    print(table(("vhost", "queue", "type", "pool", "policy"), rows))
    print()
    print(
        table(
            ("pool", "queues", "concurrency", "pool type", "prefetch"),
            [(w.name, ",".join(w.queues), w.concurrency, w.pool, w.prefetch_multiplier) for w in the_plan.workers],
        )
    )
    t = the_plan.topology
    print(
        f"\n{len(result.resources)} resources: {len(t.vhosts)} vhost(s), {len(t.users)} user(s), "
        f"{len(t.exchanges)} exchange(s), {len(t.queues)} queue(s), {len(t.bindings)} binding(s), "
        f"{len(t.policies)} polic(ies), {len(the_plan.services)} container(s) of the app"
    )
    return ExitStatus.OK


def cmd_diff(args) -> ExitStatus:
    from infra.cli import diff_report
    from infra.ops import changes, gitref, upgrade

    stacks_dir = args.stacks_dir or STACKS_DIR
    head = _valid(Stack.load(stack=args.stack, stacks_dir=stacks_dir), "nothing compared")
    if head is None:
        return ExitStatus.INVALID
    with tempfile.TemporaryDirectory(prefix="stacks-at-ref-") as copy_dir:
        try:
            base = gitref.definition_at(args.base, args.stack, stacks_dir, Path(copy_dir))
        except gitref.GitError as exc:
            print(f"python -m infra diff: cannot read {args.base!r}: {exc}", file=sys.stderr)
            return ExitStatus.ERROR
        if base is not None and not base.ok:
            for finding in base.findings:
                print(f"{args.base}: " + format_finding(finding).replace(copy_dir + "/", "stacks/"), file=sys.stderr)
            print(f"the definition at {args.base} is invalid; nothing compared", file=sys.stderr)
            return ExitStatus.INVALID
    if base is not None:  # a downgrade is refused before anything is compared
        refused = upgrade.downgrade_finding(
            head.source, upgrade.VERSION_KEY, base.definition.broker.version, head.definition.broker.version
        )
        if refused:
            _report([refused])
            print("nothing compared", file=sys.stderr)
            return ExitStatus.INVALID
    base_plan = None if base is None else planning.build_plan(base.definition)
    head_plan = head.plan
    found = changes.classify(base_plan, head_plan)
    report = diff_report.markdown if args.format == "markdown" else diff_report.text
    print(report(args.stack, args.base, found, changes.rendered_diffs(base_plan, head_plan), args.allow_data_loss))
    return diff_exit([c.impact for c in found], args.allow_data_loss)


class VersionRefused(Exception):
    """`deploy` stopped on a downgrade of the running broker: a finding on broker.version."""


def upgrades_blue_green(b) -> bool:
    """A stack whose broker `deploy` upgrades blue-green (infra/cli/pulumi_upgrade.py): one node."""
    return b.nodes == 1 and not b.hosts


def _blue_green(loaded: Stack, password: str, engine, stack_value, dry_run: bool) -> bool:
    """The blue-green upgrade the running broker needs, from wherever the containers are (printed only with
    --preview); True when it changed the broker. A downgrade is refused with its finding."""
    from pulumi.automation import CommandError

    from infra.cli.pulumi_upgrade import PulumiContainers, shovel_pems
    from infra.cli.upgrade_command import say, say_pending
    from infra.ops import upgrade
    from infra.ops.broker_api import BrokerAPIError
    from infra.ops.upgrader import Downgrade, Upgrader, UpgradeTimeout
    from infra.pulumi.deploy import DeployError

    the_plan = loaded.plan
    containers = PulumiContainers(the_plan, password, engine=engine)
    try:
        running, steps = Upgrader(containers, the_plan, b"{}", progress=say).pending_when_answering()
    except Downgrade as exc:
        finding = upgrade.downgrade_finding(loaded.source, upgrade.VERSION_KEY, exc.running, exc.wanted)
        raise VersionRefused(format_finding(finding)) from None
    except BrokerAPIError as exc:
        raise DeployError(f"upgrade: {exc}; nothing was changed") from None
    if not steps:
        return False
    say_pending(engine.prefix, running, steps, the_plan.broker)
    if dry_run:
        return False
    try:
        containers.pems = shovel_pems(the_plan.broker, stack_value, engine)
        Upgrader(containers, the_plan, containers.definitions(), progress=say).run()
    except (BrokerAPIError, UpgradeTimeout, RuntimeError, TimeoutError, CommandError) as exc:
        raise DeployError(f"upgrade: {exc}; run the deploy again to carry it on") from None
    say(f"upgraded: the broker runs {the_plan.broker.image}")
    return True


def _migrations_before_up(loaded: Stack, dry_run: bool):
    """`deploy`'s first steps: the blue-green upgrade a single node needs, carried out (a version
    another stack cannot take in place refused: infra/ops/upgrade.py `pulumi_refusal`), then the queue
    migrations the live broker needs (printed only with --preview). The admin's password from
    $RABBITMQ_PASSWORD, the stack's config, or the secrets file; no broker answering yet (a first deploy) means
    nothing to migrate. Here, not in infra/pulumi: the program's layer does not reach into ops."""
    from infra.ops import broker_api, migrator, upgrade
    from infra.pulumi.deploy import DeployError

    the_plan = loaded.plan
    b = the_plan.broker

    def before_up(stack_value, engine=None) -> bool:
        key = the_plan.topology.password_key(b.admin_user)
        path = secrets.SECRETS_DIR / f"{the_plan.environment}.yaml"
        known = secrets.read_secrets_file(path) if path.exists() else {}
        password = os.environ.get("RABBITMQ_PASSWORD") or stack_value(key) or known.get(key)
        if password is None and broker_api.answers(b.management_url):
            raise DeployError(
                f"cannot check for queue migrations: no password for {b.admin_user!r} (set "
                f"RABBITMQ_PASSWORD, or `pulumi config set --secret {key}`)"
            )
        if password is None:  # a first deploy: the program generates it, and nothing is there to migrate
            print(f"no broker answers at {b.management_url} yet: no queue to migrate", file=sys.stderr)
            return False
        # No engine: the hook run on its own (tests/app/test_migrate.py), on a broker no stack's containers hold.
        upgraded = (
            engine is not None
            and upgrades_blue_green(b)
            and _blue_green(loaded, password, engine, stack_value, dry_run)
        )
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca:
            if b.tls:  # the stack's own CA, as the last `up` exported it
                ca.write(stack_value("ca_cert") or known.get(b.tls.secrets.ca_cert, ""))
                ca.flush()
            client = broker_api.ManagementClient(
                b.management_url, b.admin_user, password, ca_cert=ca.name if b.tls else None
            )
            try:
                if not upgrades_blue_green(b):
                    live = upgrade.running_version(client)
                    stack = engine.stack.name if engine else the_plan.environment
                    refusal = upgrade.pulumi_refusal(loaded.source, live, b.version, stack)
                    if refusal is not None:
                        raise (VersionRefused if refusal.invalid else DeployError)(refusal.text)
                return (bool(run_migrations(the_plan, client, dry_run=dry_run)) or upgraded) and not dry_run
            except broker_api.BrokerAPIError as exc:
                if str(exc).startswith("cannot reach"):
                    print(f"no broker answers at {b.management_url} yet: no queue to migrate", file=sys.stderr)
                    return upgraded
                raise DeployError(f"queue migration: {exc}") from None
            except migrator.MigrationTimeout as exc:
                raise DeployError(f"queue migration: {exc}") from None

    return before_up


def cmd_deploy(args) -> ExitStatus:
    from pulumi.automation import CommandError

    from infra.pulumi import deploy

    loaded = _valid(Stack.load(stack=args.stack), "nothing deployed")
    if loaded is None:
        return ExitStatus.INVALID
    try:
        deploy.up(args.stack, preview_only=args.preview, before_up=_migrations_before_up(loaded, args.preview))
    except VersionRefused as exc:
        print(f"{exc}\nnothing deployed", file=sys.stderr)
        return ExitStatus.INVALID
    except deploy.DeployError as exc:
        print(f"python -m infra deploy: {exc}", file=sys.stderr)
        return ExitStatus.ERROR
    except CommandError:  # pulumi's own output has been streamed above
        print("python -m infra deploy: pulumi failed; its output is above", file=sys.stderr)
        return ExitStatus.ERROR
    return ExitStatus.OK


@dataclass
class _Login:
    user: str
    password: str
    passwords: dict[str, str]  # every user's password the secrets file holds
    secrets_path: Path


def _login(args, loaded: Stack) -> "_Login | ExitStatus":
    """The management user and password of --user/$RABBITMQ_PASSWORD/--secrets, or why there is none."""
    secrets_path, known = _known_secrets(args, loaded.definition.environment)
    if known is None:
        return ExitStatus.ERROR
    passwords = {u.name: known[u.password.secret] for u in loaded.plan.topology.users if u.password.secret in known}
    user = args.user or loaded.definition.broker.admin_user
    password = os.environ.get("RABBITMQ_PASSWORD") or passwords.get(user)
    if password is None:
        print(
            f"python -m infra {args.command}: no password for {user!r}: set RABBITMQ_PASSWORD or pass --secrets",
            file=sys.stderr,
        )
        return ExitStatus.USAGE
    return _Login(user, password, passwords, secrets_path)


def _queue_depth(the_plan: planning.Plan, client):
    """A queue's ready messages by a passive declare, as the management API's user, on the AMQP(S) port of
    the host the management URL names."""
    import ssl
    from urllib.parse import urlsplit

    from infra.ops.amqp_depth import queue_depth

    host = urlsplit(client.base).hostname or "127.0.0.1"
    tls = ssl.create_default_context(cafile=client.ca_cert) if the_plan.broker.tls else None
    user, password = client.session.auth

    def depth(vhost: str, queue: str) -> int:
        return queue_depth(host, the_plan.broker.client_port, user, password, vhost, queue, tls=tls, timeout=3)

    return depth


def run_migrations(the_plan: planning.Plan, client, dry_run: bool = False, timeout_s: float = 3600) -> list:
    """The pending migrations' steps printed, then (unless `dry_run`) carried out; the migrations."""
    from infra.ops.migrator import Migrator, run_all

    migrator = Migrator(
        client,
        the_plan,
        progress=lambda line: print(line, file=sys.stderr),
        timeout_s=timeout_s,
        depth=_queue_depth(the_plan, client),
    )
    pending = migrator.pending()
    print(f"{len(pending)} queue migration(s) pending on {client.base}" + (":" if pending else ""), file=sys.stderr)
    for m in pending:
        print(f"  {m.describe()}", file=sys.stderr)
        for i, step in enumerate(m.steps(), 1):
            print(f"    {i}. {step}", file=sys.stderr)
    return pending if dry_run else run_all(migrator)


def cmd_migrate(args) -> ExitStatus:
    from infra.ops import broker_api, migrator

    loaded = _valid(_load(args), "nothing migrated")
    if loaded is None:
        return ExitStatus.INVALID
    the_plan = loaded.plan
    login = _login(args, loaded)
    if isinstance(login, ExitStatus):
        return login
    client = broker_api.ManagementClient(
        args.management_url or the_plan.broker.management_url, login.user, login.password, ca_cert=args.ca_cert
    )
    try:
        run_migrations(the_plan, client, dry_run=args.dry_run, timeout_s=args.timeout)
    except (broker_api.BrokerAPIError, migrator.MigrationTimeout) as exc:
        print(f"python -m infra migrate: {exc}", file=sys.stderr)
        return ExitStatus.ERROR
    return ExitStatus.OK


def cmd_upgrade(args) -> ExitStatus:
    """The compose stack's broker upgraded blue-green (infra/cli/upgrade_command.py)."""
    from infra.cli.upgrade_command import run_upgrade

    return run_upgrade(args)


def cmd_verify(args) -> ExitStatus:
    from infra.ops import broker_api, drift

    loaded = _valid(_load(args), "nothing compared")
    if loaded is None:
        return ExitStatus.INVALID
    topology = loaded.plan.topology
    login = _login(args, loaded)
    if isinstance(login, ExitStatus):
        return login
    passwords, secrets_path = login.passwords, login.secrets_path
    try:
        live = broker_api.read_snapshot(args.management_url, login.user, login.password, ca_cert=args.ca_cert)
    except broker_api.BrokerAPIError as exc:
        print(f"python -m infra verify: {exc}", file=sys.stderr)
        return ExitStatus.ERROR
    found = drift.compare(drift.expected_snapshot(topology), live, passwords)
    unchecked = sorted(u.name for u in topology.users if u.name not in passwords)
    if args.json:
        print(
            json.dumps(
                {"in_sync": not found, "drift": [d.as_dict() for d in found], "passwords_not_checked": unchecked},
                indent=2,
            )
        )
    else:
        if found:
            print(table(("kind", "object", "drift", "detail"), [(d.kind, d.name, d.state, d.detail) for d in found]))
        print(
            f"{len(found)} difference(s) between {' + '.join(loaded.files)} and {args.management_url}", file=sys.stderr
        )
        if unchecked:
            print(f"passwords not checked (not in {secrets_path}): {', '.join(unchecked)}", file=sys.stderr)
    return ExitStatus.DRIFT if found else ExitStatus.OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "docs":
        print(docs.reference(), end="")
        return ExitStatus.OK
    handler = {
        "validate": cmd_validate,
        "render": cmd_render,
        "plan": cmd_plan,
        "diff": cmd_diff,
        "migrate": cmd_migrate,
        "upgrade": cmd_upgrade,
        "deploy": cmd_deploy,
        "verify": cmd_verify,
    }[args.command]
    try:
        return handler(args)
    except OSError as exc:
        print(f"python -m infra {args.command}: {exc}", file=sys.stderr)
        return ExitStatus.ERROR
