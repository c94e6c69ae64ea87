"""`make deploy STACK=env`: `pulumi up` on a project-local file backend, through the Automation API.

No Pulumi Cloud account: state lives in `.pulumi-state/` (or wherever `PULUMI_BACKEND_URL` points) and
secrets are encrypted with a passphrase (`PULUMI_CONFIG_PASSPHRASE` or `PULUMI_CONFIG_PASSPHRASE_FILE`).
The Pulumi CLI is the one on PATH, else the one `make pulumi` built from Go modules into `.pulumi/bin/`;
nothing is ever downloaded (no CLI, no plugin): with neither, the user is told how to get one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Callable, Optional

import yaml
from pulumi import automation as auto

from infra.paths import LOCAL_CLI_ROOT, LOCAL_STATE, REPO, STACKS_DIR
from infra.pulumi import engine

PULUMI_VERSION = "3.272.0"  # the CLI that matches the pinned SDK (requirements.txt: pulumi==3.272.0)
LOCAL_BACKEND = f"file://{LOCAL_STATE}"
INSTALL_HINT = (
    f"Run `make pulumi` (it builds the CLI from Go modules into .pulumi/bin/), or install the Pulumi "
    f"CLI v{PULUMI_VERSION} and put it on PATH, then run the command again."
)
# Set for the program once `deploy` has carried out the pending queue migrations (or printed them, for a preview):
# without it the program checks for them itself and stops before touching the broker (infra/cli/program_entry.py).
MIGRATIONS_CHECKED = "RABBITMQ_CELERY_MIGRATIONS_CHECKED"
# Set by a blue-green upgrade's own `pulumi up` runs (infra/cli/pulumi_upgrade.py): the program declares green too.
UPGRADE_GREEN = "RABBITMQ_CELERY_UPGRADE_GREEN"
# Nothing is fetched behind the user's back: no update check, no plugin download (`make pulumi` installs them).
OFFLINE = {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}


class DeployError(Exception):
    """A reason `pulumi up` cannot start, worded for the user."""


@dataclass
class Environment:
    backend_url: str
    env_vars: dict[str, str]


def cli_root(install_root: Path = LOCAL_CLI_ROOT) -> Optional[str]:
    """Where the CLI is: None for the one on PATH, else `install_root` (`make pulumi`'s build); never a download."""
    if shutil.which("pulumi"):
        return None
    if (install_root / "bin" / "pulumi").is_file():
        return str(install_root)
    raise DeployError(f"The Pulumi CLI is not on PATH and none is built in {install_root / 'bin'}. {INSTALL_HINT}")


def pulumi_command(install_root: Path = LOCAL_CLI_ROOT) -> auto.PulumiCommand:
    return auto.PulumiCommand(root=cli_root(install_root))


def environment(env: dict[str, str] | None = None) -> Environment:
    env = dict(os.environ if env is None else env)
    if not (env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        raise DeployError(
            "Set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE): the stack's secrets "
            "are encrypted with it. Keep it out of the repository, e.g. in a password manager."
        )
    backend = env.get("PULUMI_BACKEND_URL") or LOCAL_BACKEND
    # The CLI finds the language host and its exec script on PATH: the built ones first. Then this virtualenv's
    # python, which has the SDKs (Pulumi.yaml's `virtualenv` says the same to the language host).
    path = os.pathsep.join([str(LOCAL_CLI_ROOT / "bin"), str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return Environment(backend, {"PULUMI_BACKEND_URL": backend, "PATH": path, **OFFLINE})


def up(
    stack_name: str,
    *,
    preview_only: bool = False,
    install_root: Path = LOCAL_CLI_ROOT,
    before_up: Callable[[Callable[[str], Optional[str]], "Engine"], bool] | None = None,
) -> None:
    """Select or create the stack on the backend and run `pulumi up` (or `preview`), streaming its output.
    `before_up(stack_value, engine)` runs first (a blue-green upgrade, the queue migrations), with the stack's
    config and outputs by key and `Engine` for targeted `up`s; when it changed the broker it returns True and
    `up` refreshes the state from the broker first, so a queue re-created with its new type is not replaced
    again."""
    env = environment()
    root = cli_root(install_root)
    cli = os.path.join(root, "bin", "pulumi") if root else "pulumi"
    # The plugin check (`pulumi plugin ls`) runs beside the CLI's version check (`pulumi version`, which
    # PulumiCommand makes): two CLI processes of about 0.2 s each. Nothing is written before both have passed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        missing_parts = pool.submit(engine.missing_parts, cli, {**os.environ, **env.env_vars})
        command = auto.PulumiCommand(root=root)
        missing = missing_parts.result()
    if missing:
        raise DeployError(
            f"The Pulumi CLI {command.version or ''} is here, but not {', '.join(missing)}; "
            f"automatic plugin downloads are off. `make pulumi` builds those the Go module proxy "
            f"serves (docs/pulumi-engine.md says which it does not)."
        )
    if env.backend_url.startswith("file://"):
        Path(env.backend_url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    print(f"pulumi {command.version or ''} · backend {env.backend_url} · stack {stack_name}", file=sys.stderr)
    stack = auto.create_or_select_stack(
        stack_name,
        work_dir=str(REPO),
        opts=auto.LocalWorkspaceOptions(pulumi_command=command, env_vars=env.env_vars, secrets_provider="passphrase"),
    )
    state = stack.export_stack()  # once, secrets decrypted: the interrupted operations and the last outputs
    interrupted = clear_interrupted(stack, state) if not preview_only else False
    outputs = last_outputs(state.deployment or {})
    on_engine = Engine(stack, state.deployment or {})
    changed = before_up(partial(_stack_value, stack, outputs), on_engine) if before_up else False
    changed = changed or interrupted
    stack.workspace.env_vars[MIGRATIONS_CHECKED] = "1"
    # The engine's errors come on stderr: streamed too, so a failed `up` says why where the user looks.
    errors = partial(print, file=sys.stderr)
    if preview_only:
        stack.preview(on_output=print, on_error=errors, diff=True, refresh=changed)
    else:
        run_up(stack, refresh=changed, on_error=errors)


def run_up(
    stack: auto.Stack,
    refresh: bool,
    on_error: Callable[[str], object],
    targets: tuple[str, ...] = (),
    env: Optional[dict[str, str]] = None,
    on_output: Callable[[str], object] = print,
) -> None:
    """`pulumi up` as `Stack.up` runs it (of `targets` alone, if given), without the three CLI runs (`stack
    output` twice, `stack history`, about 1 s) that `Stack.up` makes after it for a result this command does not
    use. A failure raises `CommandError`, as `Stack.up` does."""
    args = ["up", "--yes", "--skip-preview", "--exec-kind", "auto.local", "--stack", stack.name]
    # The whole stack's `up` shows each change's properties; an upgrade step's, which replaces a container the
    # user did not edit, its steps alone.
    args += ["--diff"] * (not targets) + ["--refresh"] * refresh + [a for urn in targets for a in ("--target", urn)]
    workspace = stack.workspace
    variables = {**workspace.env_vars, **(env or {})}
    workspace.pulumi_command.run(args, workspace.work_dir, variables, on_output=on_output, on_error=on_error)


@dataclass
class Engine:
    """What `before_up` may run on the engine: `pulumi up` of chosen resources of the program, which then
    declares a blue-green upgrade's green node too when asked (UPGRADE_GREEN). Its output goes to stderr, with
    the upgrade's progress."""

    stack: auto.Stack
    deployment: dict = field(default_factory=dict)  # the stack as exported before `before_up`, secrets plain

    def outputs_of(self, name: str) -> dict[str, object]:
        """The last `up`'s outputs of the program's resource `name` (deploy.resource_outputs)."""
        return resource_outputs(self.deployment, name)

    @cached_property
    def project(self) -> str:
        return self.stack.workspace.project_settings().name  # Pulumi.yaml, read once

    @property
    def prefix(self) -> str:
        """The Docker objects' name prefix the program uses: `<project>-<stack>`."""
        return f"{self.project}-{self.stack.name}"

    def urn(self, parent_type: str, type_token: str, name: str) -> str:
        """The URN of a child `name` of a top-level component of type `parent_type`."""
        return f"urn:pulumi:{self.stack.name}::{self.project}::{parent_type}${type_token}::{name}"

    def up(self, urns: list[str], *, green: bool) -> None:
        env = {MIGRATIONS_CHECKED: "1", **({UPGRADE_GREEN: "1"} if green else {})}
        to_stderr = partial(print, file=sys.stderr)
        run_up(self.stack, False, on_error=to_stderr, targets=tuple(urns), env=env, on_output=to_stderr)


def _stack_value(stack: auto.Stack, outputs: dict[str, object], key: str) -> Optional[str]:
    """The stack's config value `key` (secrets decrypted), else its output `key` from the last `up`. The CLI
    is asked for the config only when the stack's file sets the key: each CLI run decrypts the stack anew."""
    if key in config_keys(STACKS_DIR / f"Pulumi.{stack.name}.yaml"):
        return stack.get_config(key).value
    value = outputs.get(key)
    return None if value is None else str(value)


def config_keys(settings: Path) -> set[str]:
    """The keys a stack's settings file sets, without their `project:` namespace."""
    if not settings.is_file():
        return set()
    config = (yaml.safe_load(settings.read_text()) or {}).get("config") or {}
    return {key.split(":", 1)[-1] for key in config}


# How `pulumi stack export --show-secrets` writes a secret value: its signature key, the JSON text in `plaintext`.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def last_outputs(deployment: dict) -> dict[str, object]:
    """The root stack's outputs in an exported deployment, secrets as their plain values."""
    return _outputs_where(deployment, lambda r: r.get("type") == "pulumi:pulumi:Stack")


def resource_outputs(deployment: dict, name: str) -> dict[str, object]:
    """The outputs of the resource named `name` (its URN's last part) in an exported deployment, secrets as
    their plain values; {} when there is none."""
    return _outputs_where(deployment, lambda r: r.get("urn", "").rsplit("::", 1)[-1] == name)


def _outputs_where(deployment: dict, match: Callable[[dict], bool]) -> dict[str, object]:
    for resource in deployment.get("resources") or []:
        if match(resource):
            return {
                key: json.loads(value["plaintext"]) if isinstance(value, dict) and SECRET_SIG in value else value
                for key, value in (resource.get("outputs") or {}).items()
            }
    return {}


def clear_interrupted(stack: auto.Stack, state: auto.Deployment) -> bool:
    """After an `up` that was killed half-way: its pending operations cleared from the state, so the user has
    nothing to clear by hand, and True (the caller refreshes from the live resources). A container whose
    creation was under way may exist without being in the state: it is removed (its data lives in its volume),
    so this `up` creates it again instead of failing on its name. `state`: the stack as exported."""
    deployment = dict(state.deployment or {})
    pending = deployment.get("pending_operations") or []
    if not pending:
        return False
    for operation in pending:
        resource = operation.get("resource", {})
        name = (resource.get("inputs") or {}).get("name")
        if operation.get("type") == "creating" and resource.get("type") == CONTAINER and name:
            _remove_container(name)
    described = ", ".join(
        f"{o.get('type')} {o.get('resource', {}).get('urn', '?').rsplit('::', 1)[-1]}" for o in pending
    )
    state.deployment = {**deployment, "pending_operations": []}
    try:
        stack.import_stack(state)
    except auto.CommandError as exc:
        if "currently locked" not in str(exc):
            raise
        raise DeployError(
            f"the stack {stack.name} is still locked by the interrupted update. If no `pulumi` runs on it any more, "
            f"`pulumi cancel --stack {stack.name} --yes` removes the lock; then run the deploy again."
        ) from None
    print(f"the last update was interrupted ({described}): cleared, refreshing from what is running", file=sys.stderr)
    return True


CONTAINER = "docker:index/container:Container"


def _remove_container(name: str) -> None:
    import docker  # the Docker SDK (requirements.txt), on the local engine the stack's containers run on

    try:
        docker.from_env().containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
