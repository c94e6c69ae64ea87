"""The engine parts `pulumi up` needs besides the CLI, as the pinned SDKs name them (infra/pulumi/engine.py)."""

from __future__ import annotations

from infra.paths import REPO
from infra.pulumi import engine


def pins() -> dict[str, str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return dict(l.split("#")[0].strip().split("==") for l in lines if l.startswith("pulumi-"))


def test_each_provider_sdk_asks_for_the_plugin_of_its_own_pinned_version():
    wanted = {f"pulumi-{p.name}": p.version for p in engine.required_plugins()}
    assert set(wanted) == {"pulumi-docker", "pulumi-rabbitmq", "pulumi-tls", "pulumi-random"}
    assert wanted == {name: version for name, version in pins().items() if name in wanted}


def test_a_machine_without_language_host_or_plugins_is_told_each_missing_part(tmp_path):
    cli = tmp_path / "pulumi"  # answers `plugin ls --json` like a CLI with no plugin installed
    cli.write_text("#!/bin/sh\necho '[]'\n")
    cli.chmod(0o755)
    missing = engine.missing_parts(str(cli), {"PATH": str(tmp_path)})
    assert missing[0] == "the Python language host (pulumi-language-python)"
    assert missing[1:] == [f"the {p} resource plugin" for p in engine.required_plugins()]
