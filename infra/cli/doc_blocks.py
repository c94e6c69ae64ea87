"""The parts of the docs that the code determines, generated from it: each a block of a page between
`<!-- NAME:start -->` and `<!-- NAME:end -->`, rewritten by `python -m infra.cli.regenerate` and checked
current by tests/unit/test_docs_current.py."""

from __future__ import annotations

from collections.abc import Callable

from infra.cli import localstack
from infra.cli.main import EXIT_MEANING, ExitStatus, diff_exit
from infra.definition.load import require
from infra.definition.reference import reference
from infra.ops.changes import MEANING, Impact
from infra.plan.stack import Stack


def _fenced(text: str, language: str = "") -> str:
    return f"```{language}\n{text.rstrip()}\n```\n"


def local_dev_workers(stack: str = "dev") -> str:
    """Each worker pool's command line as the plan gives it, run from app/ as the pool's own user."""
    loaded = Stack.load(stack=stack)
    definition, workers = require(loaded), {w.name: w for w in loaded.plan.workers}
    lines = []
    for name, pool in definition.celery.workers.items():
        secret = definition.users[pool.user].password.secret
        lines.append(f"CELERY_BROKER_URL=$(url {pool.user} {secret}) \\")
        lines.append("  ../.venv/bin/" + " ".join(workers[name].command))
    return _fenced("\n".join(lines), "sh")


def local_sample_output(stack: str = "local") -> str:
    """What `make local` prints after its URLs when it runs on the sample Riot API."""
    web = dict(localstack.urls(Stack.load(stack=stack)))["web"].removesuffix("/healthz")
    return _fenced(localstack.sample_note(stack, web))


def _code(status: ExitStatus) -> str:
    return f"{int(status)} ({status.name.lower().replace('_', ' ')})"


def diff_classes() -> str:
    """Every class `diff` can print, what falls in it, and its exit status: the one place they are described."""
    missing = [i.name for i in Impact if i not in MEANING]
    if missing:
        raise KeyError(f"infra/ops/changes.py: MEANING has no description of {', '.join(missing)}")
    rows = ["| impact | changes | exit of `diff` | with `--allow-data-loss` |", "| --- | --- | --- | --- |"]
    rows += [
        f"| {i.value} | {MEANING[i]} | {_code(diff_exit([i], False))} | {_code(diff_exit([i], True))} |" for i in Impact
    ]
    return "\n".join(rows) + "\n"


def exit_statuses() -> str:
    missing = [s.name for s in ExitStatus if s not in EXIT_MEANING]
    if missing:
        raise KeyError(f"infra/cli/main.py: EXIT_MEANING has no description of {', '.join(missing)}")
    rows = ["| exit | `ExitStatus` | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{int(s)}` | `{s.name}` | {EXIT_MEANING[s]} |" for s in ExitStatus]
    return "\n".join(rows) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "reference": reference,
    "local-dev-workers": local_dev_workers,
    "local-sample-output": local_sample_output,
    "diff-classes": diff_classes,
    "exit-statuses": exit_statuses,
}
