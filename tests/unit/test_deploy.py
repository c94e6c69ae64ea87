"""`python -m infra deploy` where it cannot run `pulumi up`: a clear message and exit 1, never a traceback,
and nothing written. The CLI download is sent to a closed port on loopback, so no test reaches the internet."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from infra.paths import REPO
from infra.pulumi import deploy
from tests.support.rabbit_node import free_ports

PROJECT_STACKS = ("dev", "staging", "prod", "local")


def run_deploy(*args: str, **env: str) -> subprocess.CompletedProcess:
    (closed,) = free_ports(1)
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "https_proxy": f"http://127.0.0.1:{closed}",
        "HTTPS_PROXY": f"http://127.0.0.1:{closed}",
        "no_proxy": "",
        "NO_PROXY": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "infra", "deploy", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
        cwd=REPO,
    )


def test_without_a_passphrase_it_says_what_to_set_and_writes_nothing():
    result = run_deploy("--stack", "dev")
    assert result.returncode == 1, result.stderr
    assert "Set PULUMI_CONFIG_PASSPHRASE" in result.stderr and "Traceback" not in result.stderr
    assert not (REPO / ".pulumi-state").exists()


def test_without_a_cli_it_says_how_to_build_one_and_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no pulumi on PATH, and no download is attempted
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase")
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    with pytest.raises(deploy.DeployError) as refused:
        deploy.up("dev", install_root=tmp_path / "no-build")
    assert "not on PATH and none is built in" in str(refused.value) and "make pulumi" in str(refused.value)
    assert not (tmp_path / "state").exists()  # the backend is not touched before a CLI is found
    assert not (tmp_path / "no-build").exists()  # and nothing is installed


def test_the_cli_built_by_make_pulumi_is_used_when_none_is_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    cli = tmp_path / "built" / "bin" / "pulumi"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\necho v3.274.0\n")
    cli.chmod(0o755)
    assert deploy.pulumi_command(tmp_path / "built").command == str(cli)


def test_deploy_env_downloads_nothing_and_finds_the_built_language_host(monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase")
    env = deploy.environment().env_vars
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PATH"].split(os.pathsep)[0] == str(REPO / ".pulumi" / "bin")


def test_an_invalid_definition_stops_before_pulumi():
    result = run_deploy("--stack", "no-such-stack", PULUMI_CONFIG_PASSPHRASE="test-passphrase")
    assert result.returncode == 2, result.stderr
    assert "no-such-stack" in result.stderr and "nothing deployed" in result.stderr


def test_pinned_cli_version_is_the_sdks():
    pinned = [l for l in (REPO / "requirements.txt").read_text().splitlines() if l.startswith("pulumi==")]
    assert pinned == [f"pulumi=={deploy.PULUMI_VERSION}"]


def test_stack_config_files_hold_no_plaintext_secret():
    """stacks/Pulumi.<env>.yaml: one per environment; any secret key in them must be `secure:`."""
    from infra.definition.load import load_definition, require
    from infra.plan.plan import build_plan

    for stack in PROJECT_STACKS:
        path = REPO / "stacks" / f"Pulumi.{stack}.yaml"
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        secret_keys = {ref.secret for _, ref in build_plan(require(load_definition(stack=stack))).all_secrets()}
        for key, value in config.items():
            if key.split(":", 1)[-1] in secret_keys:
                assert isinstance(value, dict) and set(value) == {"secure"}, (path, key)


def test_config_keys_are_the_settings_files_keys_without_their_namespace(tmp_path):
    settings = tmp_path / "Pulumi.dev.yaml"
    assert deploy.config_keys(settings) == set()
    settings.write_text("config: {}\n")
    assert deploy.config_keys(settings) == set()
    settings.write_text("config:\n  rabbitmq-celery:rabbitmqAdminPassword:\n    secure: v1:abc\n  plain: 1\n")
    assert deploy.config_keys(settings) == {"rabbitmqAdminPassword", "plain"}


def test_last_outputs_are_the_root_stacks_with_secrets_as_their_values():
    deployment = {
        "resources": [
            {"type": "docker:index/network:Network", "outputs": {"name": "net"}},
            {
                "type": "pulumi:pulumi:Stack",
                "outputs": {
                    "url": "http://127.0.0.1:8000",
                    "rabbitmqAdminPassword": {
                        deploy.SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270",
                        "plaintext": '"s3cret"',
                    },
                },
            },
        ]
    }
    assert deploy.last_outputs(deployment) == {"url": "http://127.0.0.1:8000", "rabbitmqAdminPassword": "s3cret"}
    assert deploy.last_outputs({}) == {}
