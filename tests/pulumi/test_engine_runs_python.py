"""`make pulumi`'s CLI and Python language host run a Python program on the pinned SDK for real, the way
`python -m infra deploy` drives them (its PATH and offline settings, a file backend, the passphrase provider):
`up` from nothing, a second `up` that changes nothing, `refresh`, a config change, `destroy`; a secret never
reaches the state in plaintext. The program needs no resource plugin (the Go module proxy serves none yet): a
component, a child of it, config and a secret output exercise the engine, the language host and the SDK."""

from __future__ import annotations

import textwrap

import pytest
from pulumi import automation as auto

from infra.pulumi import deploy

pytestmark = pytest.mark.pulumi

PROGRAM = """
import pulumi

class Box(pulumi.ComponentResource):
    def __init__(self, name, size, opts=None):
        super().__init__("rce:test:Box", name, None, opts)
        self.size = pulumi.Output.from_input(size)
        self.register_outputs({"size": self.size})

config = pulumi.Config()
box = Box("box", config.require_int("size"))
Box("box-inner", 1, pulumi.ResourceOptions(parent=box))
pulumi.export("size", box.size)
pulumi.export("password", config.require_secret("password"))
"""
SECRET = "correct-horse-battery-staple-4711"


@pytest.fixture
def stack(pulumi_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase")
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "home"))
    (tmp_path / "state").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: enginecheck\nruntime: python\n")
    (project / "__main__.py").write_text(textwrap.dedent(PROGRAM))
    env = deploy.environment()
    stack = auto.create_or_select_stack(
        "test",
        work_dir=str(project),
        opts=auto.LocalWorkspaceOptions(
            pulumi_command=deploy.pulumi_command(), env_vars=env.env_vars, secrets_provider="passphrase"
        ),
    )
    stack.set_config("size", auto.ConfigValue("3"))
    stack.set_config("password", auto.ConfigValue(SECRET, secret=True))
    yield stack
    stack.workspace.remove_stack("test", force=True)


def test_up_then_no_change_then_destroy_with_the_secret_encrypted(stack, tmp_path):
    result = stack.up(color="never")
    assert result.summary.result == "succeeded"
    assert result.summary.resource_changes == {"create": 3}  # the stack and the two components
    assert result.outputs["size"].value == 3
    assert result.outputs["password"].secret and result.outputs["password"].value == SECRET
    # deploy's migration check reads the outputs from the one export it makes, secrets decrypted
    assert deploy.last_outputs(stack.export_stack().deployment) == {"size": 3, "password": SECRET}

    state = next((tmp_path / "state").rglob("test.json")).read_text()
    assert SECRET not in state and "ciphertext" in state  # encrypted with the passphrase
    assert SECRET not in (tmp_path / "project" / "Pulumi.test.yaml").read_text()

    again = stack.preview(expect_no_changes=True, color="never")  # raises if the engine plans any change
    assert again.change_summary == {"same": 3}
    refreshed = stack.refresh(color="never")  # components have nothing to read back: nothing drifts
    assert refreshed.summary.result == "succeeded" and refreshed.summary.resource_changes == {"same": 3}

    stack.set_config("size", auto.ConfigValue("4"))
    changed = stack.up(color="never")
    assert changed.summary.resource_changes == {"same": 3} and changed.outputs["size"].value == 4

    gone = stack.destroy(color="never")
    assert gone.summary.resource_changes == {"delete": 3}
    assert not stack.export_stack().deployment.get("resources")
