"""The local PostgreSQL image (images/postgres): POSTGRES_PASSWORD is the password in force at every boot, so a
data volume kept across `pulumi destroy` (or a password changed in the stack config) never locks the app out."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from infra.definition.load import load_definition, require
from tests.support.waiting import wait_for

IMAGE = require(load_definition(stack="local")).app.database.image


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


def can_log_in(container: str, password: str) -> bool:
    """A query over TCP as the app's user with this password: the network's scram-sha-256 rule, not the
    socket's trust."""
    result = docker(
        "exec", "-e", f"PGPASSWORD={password}", container,
        "psql", "-X", "-h", "127.0.0.1", "-U", "app", "-d", "app", "-tAc", "select 1",
        check=False,
    )  # fmt: skip
    return result.stdout.strip() == "1"


@pytest.fixture
def volume():
    name = f"rcpg{os.getpid()}{uuid.uuid4().hex[:6]}"
    docker("volume", "create", name)
    yield name
    docker("rm", "-f", f"{name}-db", check=False)
    docker("volume", "rm", "-f", name, check=False)


def boot(volume: str, password: str) -> str:
    container = f"{volume}-db"
    docker("rm", "-f", container, check=False)
    docker(
        "run", "-d", "--name", container, "-v", f"{volume}:/var/lib/postgresql/data",
        "-e", "POSTGRES_USER=app", "-e", "POSTGRES_DB=app", "-e", f"POSTGRES_PASSWORD={password}", IMAGE,
    )  # fmt: skip
    wait_for(
        lambda: docker("exec", container, "pg_isready", "-h", "127.0.0.1", check=False).returncode == 0 or None,
        60,
        f"{container} accepting connections",
    )
    return container


def test_a_new_password_on_a_kept_volume_replaces_the_old_one(volume):
    first = boot(volume, "first-password")
    assert can_log_in(first, "first-password")
    docker("exec", first, "psql", "-X", "-U", "app", "-d", "app", "-c", "create table kept (id int)")
    second = boot(volume, "second-password")
    assert can_log_in(second, "second-password")
    assert not can_log_in(second, "first-password")
    tables = docker("exec", second, "psql", "-X", "-U", "app", "-d", "app", "-tAc", "select count(*) from kept")
    assert tables.stdout.strip() == "0"  # the same database, not a new one
    logs = docker("logs", second).stdout + docker("logs", second).stderr
    assert "second-password" not in logs and "database app created" not in logs
