"""The real Pulumi CLI (`make pulumi`'s, or one on PATH) with `python -m infra deploy`: nothing is downloaded,
and a machine short of the language host or a resource plugin is told which, before the engine starts.
A private PULUMI_HOME per test stands for a machine whose plugin cache holds only what the test installs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.paths import REPO
from infra.pulumi import engine
from tests.support.rabbit_node import free_ports

pytestmark = pytest.mark.pulumi


def offline_env(cli: str, home: Path, **extra: str) -> dict[str, str]:
    (closed,) = free_ports(1)  # any download attempt goes to a closed port on loopback
    return {
        "PATH": os.pathsep.join([str(Path(cli).parent), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "PULUMI_HOME": str(home / ".pulumi"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "https_proxy": f"http://127.0.0.1:{closed}",
        "HTTPS_PROXY": f"http://127.0.0.1:{closed}",
        **extra,
    }


def test_the_built_cli_runs_offline_at_or_above_the_sdks_version(pulumi_cli, tmp_path):
    result = subprocess.run(
        [pulumi_cli, "version"], env=offline_env(pulumi_cli, tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    major, minor, _ = (int(x) for x in result.stdout.strip().removeprefix("v").split("-")[0].split("."))
    assert (major, minor) >= (3, 272)


def test_a_plugin_installed_from_a_file_is_found_and_the_others_are_named(pulumi_cli, tmp_path):
    env = offline_env(pulumi_cli, tmp_path)
    docker = next(p for p in engine.required_plugins() if p.name == "docker")
    binary = tmp_path / "pulumi-resource-docker"  # only listed by `plugin ls`, never started
    binary.write_bytes(b"#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)
    subprocess.run(
        [pulumi_cli, "plugin", "install", "resource", docker.name, docker.version, "--file", str(binary)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert docker in engine.installed_plugins(pulumi_cli, env)
    missing = engine.missing_parts(pulumi_cli, env)
    assert f"the {docker} resource plugin" not in missing
    assert [m for m in missing if "resource plugin" in m] == [
        f"the {p} resource plugin" for p in engine.required_plugins() if p != docker
    ]


def test_deploy_without_the_plugins_stops_before_the_engine_and_writes_no_state(pulumi_cli, tmp_path):
    state = tmp_path / "state"
    env = offline_env(
        pulumi_cli, tmp_path, PULUMI_CONFIG_PASSPHRASE="test-passphrase", PULUMI_BACKEND_URL=f"file://{state}"
    )
    result = subprocess.run(
        [sys.executable, "-m", "infra", "deploy", "--stack", "local"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for plugin in engine.required_plugins():
        assert f"the {plugin} resource plugin" in result.stderr
    assert "make pulumi" in result.stderr
    assert not state.exists()
