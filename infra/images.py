"""The app image's name: its repository tagged with a digest of the build context, so a changed app gets a
new tag (and its containers are replaced) and an unchanged one gets none. Used by the Pulumi program and
the compose file alike."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .model import App

IGNORED_IN_CONTEXT = {"__pycache__", ".venv", "db.sqlite3", ".pytest_cache", ".git"}


class MissingBuildContext(Exception):
    pass


def context_digest(context: Path) -> str:
    """A digest of the build context's files (names and bytes), caches and local databases left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        relative = path.relative_to(context)
        if IGNORED_IN_CONTEXT & set(relative.parts) or path.suffix == ".pyc":
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build_context(app: App, project_root: Path) -> Path | None:
    """The directory `app.build` names, checked: it must hold a Dockerfile. None when the image is pulled."""
    if app.build is None:
        return None
    context = project_root / app.build
    if not (context / "Dockerfile").is_file():
        raise MissingBuildContext(f"app.build: {context / 'Dockerfile'} does not exist (set app.build to the "
                                  f"directory holding the app's Dockerfile, or `app.build: ~` to pull app.image)")
    return context


def app_image_name(app: App, project_root: Path) -> str:
    context = build_context(app, project_root)
    return app.image if context is None else f"{app.image}:{context_digest(context)}"
