"""Rendering: golden files per shipped stack, determinism, file modes, secrets, hashes."""

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from infra.cli.main import main
from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.render import files as render
from infra.render.secrets import hash_for, password_hash, stable_salt
from tests.support.stacks import TEST_SECRETS

GOLDEN = Path("tests/golden")
STACKS = ["dev", "staging", "prod"]


def rendered(stack: str) -> dict[str, str]:
    return render.render_files(build_plan(require(load_definition(stack=stack))), TEST_SECRETS)


@pytest.mark.parametrize("stack", STACKS)
def test_golden_files(stack):
    """Set UPDATE_GOLDEN=1 (`make golden`) to rewrite them after an intended change; review the diff."""
    files = rendered(stack)
    if os.environ.get("UPDATE_GOLDEN"):
        (GOLDEN / stack).mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (GOLDEN / stack / name).write_text(content)
    assert sorted(p.name for p in (GOLDEN / stack).iterdir()) == sorted(files)
    for name, content in files.items():
        assert (GOLDEN / stack / name).read_text() == content, f"{stack}/{name} differs from its golden file"


@pytest.mark.parametrize("stack", STACKS)
def test_rendering_is_deterministic_and_complete(stack):
    first, second = rendered(stack), rendered(stack)
    assert first == second
    for name, content in first.items():
        assert "{{" not in content and "{%" not in content and "}}" not in content, name
    json.loads(first["definitions.json"]) and json.loads(first["celery.json"])


@pytest.mark.parametrize("stack", STACKS)
def test_no_plaintext_password_in_any_rendered_file(stack):
    text = "".join(rendered(stack).values())
    assert not any(secret in text for secret in TEST_SECRETS.values())


def test_password_hash_is_rabbitmqs_salted_sha256():
    salt = b"\x90\x8d\xc6\x0a"
    expected = base64.b64encode(salt + hashlib.sha256(salt + b"test12").digest()).decode()
    assert password_hash("test12", salt) == expected
    raw = base64.b64decode(hash_for("app", "pw"))
    assert len(raw) == 4 + 32 and raw[:4] == stable_salt("app", "pw")
    assert hash_for("app", "pw") == hash_for("app", "pw")  # stable: no spurious diffs between renders
    assert hash_for("app", "pw") != hash_for("web", "pw")  # salted per user
    assert hash_for("app", "pw") != hash_for("app", "pw2")


def test_render_cli_writes_files_with_their_modes_and_generates_secrets(tmp_path, capsys):
    out, secrets = tmp_path / "out", tmp_path / "secrets" / "dev.yaml"
    assert main(["render", "--stack", "dev", "--out", str(out), "--secrets", str(secrets)]) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == render.FILES
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    generated = yaml.safe_load(secrets.read_text())
    assert set(generated) == {
        "rabbitmqAdminPassword",
        "rabbitmqMonitorPassword",
        "rabbitmqWebPassword",
        "rabbitmqBeatPassword",
        "rabbitmqWorkerSyncPassword",
        "rabbitmqWorkerMatchesPassword",
        "rabbitmqWorkerBackgroundPassword",
    }
    first = (out / "definitions.json").read_text()
    assert not any(value in first for value in generated.values())
    # A second render reuses the kept secrets: same bytes.
    assert main(["render", "--stack", "dev", "--out", str(out), "--secrets", str(secrets)]) == 0
    assert (out / "definitions.json").read_text() == first
    assert yaml.safe_load(secrets.read_text()) == generated
    assert "definitions.json" in capsys.readouterr().out


def test_render_refuses_a_missing_secret_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "render",
            "--file",
            "tests/data/valid/behaviour.yaml",
            "--out",
            str(out),
            "--secrets",
            str(tmp_path / "none.yaml"),
        ]
    )
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "tests/data/valid/behaviour.yaml:12: users.admin.password: secret 'rabbitmqAdminPassword' is not set" in err


@pytest.mark.parametrize(
    "content, expected_code, message",
    [
        ("rabbitmqAdminPassword: [unclosed\n", 1, "cannot read the secrets file: not valid YAML"),
        (
            "rabbitmqAdminPassword:\npublisherPassword: p\nconsumerPassword: c\n",
            2,
            "secret 'rabbitmqAdminPassword' is not set",
        ),  # empty is unset, never the password "None"
    ],
)
def test_bad_secrets_files_are_reported(tmp_path, capsys, content, expected_code, message):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(content)
    code = main(
        [
            "render",
            "--file",
            "tests/data/valid/behaviour.yaml",
            "--out",
            str(tmp_path / "out"),
            "--secrets",
            str(secrets),
        ]
    )
    assert code == expected_code and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("version, closed", [("3.13", False), ("4.0", True)])
def test_tls_only_on_4_turns_off_the_plain_prometheus_listener(tmp_path, version, closed):
    # 4.x opens 0.0.0.0:15692 unless `prometheus.tcp.listener = none`, a key 3.x does not know (boot fails)
    overlay = tmp_path / "version.yaml"
    overlay.write_text(f'broker: {{version: "{version}", image: "rabbitmq:{version}-management"}}\n')
    plan = build_plan(require(load_definition(stack="prod", overlays=(overlay,))))
    assert ("prometheus.tcp.listener = none" in render.rabbitmq_conf(plan)) == closed


@pytest.mark.parametrize("version, shortened", [("3.13", False), ("4.0", True)])
def test_a_4_cluster_does_not_wait_out_peer_discovery_for_nodes_that_start_after_it(tmp_path, version, shortened):
    # 4.x peer discovery retries 30 times for a second listed node; ours start one after another
    overlay = tmp_path / "cluster.yaml"
    overlay.write_text(f'broker: {{version: "{version}", image: "rabbitmq:{version}-management", nodes: 3}}\n')
    conf = render.rabbitmq_conf(build_plan(require(load_definition(stack="dev", overlays=(overlay,)))))
    assert "cluster_formation.classic_config.nodes.3" in conf
    assert ("cluster_formation.discovery_retry_limit = 1" in conf) == shortened
