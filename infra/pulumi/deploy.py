"""`make deploy STACK=env`: `pulumi up` on a project-local file backend, through the Automation API.

No Pulumi Cloud account: state lives in `.pulumi-state/` (or wherever `PULUMI_BACKEND_URL` points) and
secrets are encrypted with a passphrase (`PULUMI_CONFIG_PASSPHRASE` or `PULUMI_CONFIG_PASSPHRASE_FILE`).
The Pulumi CLI is the one on PATH, else the pinned version installed into `.pulumi/` — and where that
download cannot happen, the user is told what to install instead of seeing a traceback.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from pulumi import automation as auto
from semver import VersionInfo

from infra.paths import LOCAL_CLI_ROOT, LOCAL_STATE, REPO

PULUMI_VERSION = "3.272.0"  # the CLI that matches the pinned SDK (requirements.txt: pulumi==3.272.0)
LOCAL_BACKEND = f"file://{LOCAL_STATE}"
INSTALL_HINT = (f"Install the Pulumi CLI v{PULUMI_VERSION} (https://www.pulumi.com/docs/install/, or "
                f"`curl -fsSL https://get.pulumi.com | sh -s -- --version {PULUMI_VERSION}`), put it on PATH, and "
                f"run the command again.")


class DeployError(Exception):
    """A reason `pulumi up` cannot start, worded for the user."""


@dataclass
class Environment:
    backend_url: str
    env_vars: dict[str, str]


def pulumi_command(install_root: Path = LOCAL_CLI_ROOT) -> auto.PulumiCommand:
    """The CLI on PATH, or the pinned one under `install_root` (installed there if missing)."""
    if shutil.which("pulumi"):
        return auto.PulumiCommand()
    try:
        return auto.PulumiCommand.install(root=str(install_root), version=VersionInfo.parse(PULUMI_VERSION))
    except Exception as exc:  # noqa: BLE001 — a failed download surfaces as urllib, OS or subprocess errors
        reason = str(getattr(exc, "reason", "") or exc).strip() or type(exc).__name__
        raise DeployError(f"The Pulumi CLI is not on PATH, and installing v{PULUMI_VERSION} into "
                          f"{install_root} failed ({reason}). {INSTALL_HINT}") from None


def environment(env: dict[str, str] | None = None) -> Environment:
    env = dict(os.environ if env is None else env)
    if not (env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        raise DeployError("Set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE): the stack's secrets "
                          "are encrypted with it. Keep it out of the repository, e.g. in a password manager.")
    backend = env.get("PULUMI_BACKEND_URL") or LOCAL_BACKEND
    return Environment(backend, {"PULUMI_BACKEND_URL": backend})


def up(stack_name: str, *, preview_only: bool = False, install_root: Path = LOCAL_CLI_ROOT,
       before_up: Callable[[Callable[[str], Optional[str]]], bool] | None = None) -> None:
    """Select or create the stack on the backend and run `pulumi up` (or `preview`), streaming its output.
    `before_up(stack_value)` runs first (the queue migrations), with the stack's config and outputs by key; when
    it changed the broker it returns True and `up` refreshes the state from the broker first, so a queue
    re-created with its new type is not replaced again."""
    env = environment()
    command = pulumi_command(install_root)
    if env.backend_url.startswith("file://"):
        Path(env.backend_url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    print(f"pulumi {command.version or ''} · backend {env.backend_url} · stack {stack_name}", file=sys.stderr)
    stack = auto.create_or_select_stack(stack_name, work_dir=str(REPO), opts=auto.LocalWorkspaceOptions(
        pulumi_command=command, env_vars=env.env_vars, secrets_provider="passphrase"))
    changed = before_up(lambda key: _stack_value(stack, key)) if before_up else False
    if preview_only:
        stack.preview(on_output=print, diff=True, refresh=changed)
    else:
        stack.up(on_output=print, diff=True, show_secrets=False, refresh=changed)


def _stack_value(stack: auto.Stack, key: str) -> Optional[str]:
    """The stack's config value `key` (secrets decrypted), else its output `key` from the last `up`."""
    config = stack.get_all_config().get(f"{stack.workspace.project_settings().name}:{key}")
    if config is not None:
        return config.value
    output = stack.outputs().get(key)
    return None if output is None else str(output.value)
