"""The program writes the stack's CA certificate for the rabbitmq provider: into a temp dir in these tests."""

import pytest

from infra.pulumi import program


@pytest.fixture(autouse=True)
def ca_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(program, "CA_DIR", tmp_path / "pulumi-tls")
    return tmp_path / "pulumi-tls"
