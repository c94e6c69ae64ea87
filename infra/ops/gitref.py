"""The stack definition as it was at a git ref: its files copied out of git into a temp directory, then
loaded like the working tree's. The only module that runs git."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from infra.definition.load import Loaded, load_definition


class GitError(Exception):
    pass


def _git(directory: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    if result.returncode:
        raise GitError(result.stderr.strip() or f"git {' '.join(args)} failed")
    return result.stdout


def definition_at(ref: str, stack: str, stacks_dir: Path, copy: Path) -> Optional[Loaded]:
    """The definition as it was at `ref`, its files copied into the directory `copy` (the caller's, and the
    caller removes it); None when the stack did not exist there. Raises GitError when `ref` is not a commit
    of the repository holding `stacks_dir`."""
    _git(stacks_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    prefix = _git(stacks_dir, "rev-parse", "--show-prefix").strip()
    top = Path(_git(stacks_dir, "rev-parse", "--show-toplevel").strip())  # ls-tree filters by the cwd
    try:
        names = _git(top, "ls-tree", "--name-only", f"{ref}:{prefix}").split()
    except GitError:
        return None  # the stacks directory did not exist at ref
    if f"{stack}.yaml" not in names:
        return None
    for name in names:
        if name.endswith(".yaml"):
            (copy / name).write_text(_git(top, "show", f"{ref}:{prefix}{name}"))
    return load_definition(stack=stack, stacks_dir=copy)
