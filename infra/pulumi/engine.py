"""The parts of the Pulumi engine `pulumi up` needs besides the CLI: the Python language host and one resource
plugin per provider SDK the program imports, at the version that SDK asks for. Automatic plugin downloads are
off (deploy.OFFLINE), so a missing part is named here before the engine starts, not as a gRPC error midway.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources

# The provider SDKs infra/pulumi/ imports (requirements.txt pins them).
PROVIDER_SDKS = ("pulumi_docker", "pulumi_rabbitmq", "pulumi_tls", "pulumi_random")
LANGUAGE_HOST = "pulumi-language-python"


@dataclass(frozen=True)
class Plugin:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def required_plugins() -> list[Plugin]:
    """Each SDK's `pulumi-plugin.json`: the resource plugin and version it registers its resources with."""
    plugins = []
    for package in PROVIDER_SDKS:
        spec = json.loads(resources.files(package).joinpath("pulumi-plugin.json").read_text())
        plugins.append(Plugin(spec["name"], spec["version"]))
    return plugins


def installed_plugins(cli: str, env: dict[str, str]) -> set[Plugin]:
    """The resource plugins `pulumi plugin ls` finds."""
    listing = subprocess.run(
        [cli, "plugin", "ls", "--json"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return {
        Plugin(p["name"], p["version"].removeprefix("v"))
        for p in json.loads(listing.stdout or "[]")
        if p.get("kind") == "resource"
    }


def missing_parts(cli: str, env: dict[str, str]) -> list[str]:
    """What `pulumi up` of this program would stop on, in words; empty when nothing is missing."""
    missing = (
        [] if shutil.which(LANGUAGE_HOST, path=env.get("PATH")) else [f"the Python language host ({LANGUAGE_HOST})"]
    )
    have = installed_plugins(cli, env)
    missing += [f"the {plugin} resource plugin" for plugin in required_plugins() if plugin not in have]
    return missing
