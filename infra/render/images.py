"""The app image's name: its repository tagged with a digest of the build context, so a changed app gets a
new tag (and its containers are replaced) and an unchanged one gets none. Used by the Pulumi program and
the compose file alike."""

from __future__ import annotations

import hashlib
from pathlib import Path

from docker.utils.build import PatternMatcher

from infra.definition.model import App


def ignore_patterns(context: Path) -> list[str]:
    """The context's .dockerignore: what `docker build` leaves out is what the digest leaves out."""
    path = context / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip().removeprefix("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: Path, matcher: PatternMatcher) -> bool:
    """Docker's rules, by the Docker SDK's own matcher: patterns anchored at the context's root, a pattern
    matches a path or one of its parents, `**` any depth, and a later `!pattern` takes a path back."""
    return matcher.matches(relative.as_posix())


class MissingBuildContext(Exception):
    pass


def context_digest(context: Path) -> str:
    """A digest of the build context's files (names and bytes), less what its .dockerignore leaves out."""
    matcher = PatternMatcher(ignore_patterns(context))
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        relative = path.relative_to(context)
        if ignored(relative, matcher) and relative != Path("Dockerfile"):  # the build reads it anyway
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build_context(app: App, project_root: Path) -> Path | None:
    """The directory `app.build` names, checked: it must hold a Dockerfile. None when the image is pulled."""
    if app.build is None:
        return None
    context = project_root / app.build
    if not (context / "Dockerfile").is_file():
        raise MissingBuildContext(
            f"app.build: {context / 'Dockerfile'} does not exist (set app.build to the "
            f"directory holding the app's Dockerfile, or `app.build: ~` to pull app.image)"
        )
    return context


def app_image_name(app: App, project_root: Path) -> str:
    context = build_context(app, project_root)
    return app.image if context is None else f"{app.image}:{context_digest(context)}"
