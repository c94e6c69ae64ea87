"""`broker.hosts` outside the Pulumi program: every refusal names its file, line and key and writes nothing,
the render targets that cannot carry it, and what `diff` says when a node changes host."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infra.cli.main import main
from infra.ops import changes
from infra.ops.changes import Impact
from tests.unit.test_diff import GIT, diff, overlay, plans, repo, rows  # noqa: F401 (repo: a fixture)

REFUSED = sorted(Path("tests/data/invalid").glob("hosts-*.yaml"))
HOSTS = [{"docker": f"ssh://deploy@10.0.0.1{i}", "address": f"10.0.0.1{i}"} for i in (1, 2, 3)]


def test_every_refusal_has_a_broken_file():
    assert {p.stem for p in REFUSED} >= {
        "hosts-on-one-node",
        "hosts-fewer-than-nodes",
        "hosts-public-address",
        "hosts-loopback-address",
        "hosts-address-not-ipv4",
        "hosts-docker-url-scheme",
        "hosts-shared-by-two-nodes",
        "hosts-ssh-opts-without-ssh",
        "hosts-port-clashes-with-erlang-distribution",
    }


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.stem)
def test_a_refused_hosts_list_renders_nothing(path, tmp_path, capsys):
    out, secrets = tmp_path / "out", tmp_path / "secrets.yaml"
    assert main(["render", "--file", str(path), "--out", str(out), "--secrets", str(secrets)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and (": broker.hosts" in err or ": broker.listeners" in err)
    assert "nothing written" in err and not out.exists() and not secrets.exists()


@pytest.fixture
def hosts_overlay(tmp_path) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "broker:\n  nodes: 3\n  hosts:\n"
        + "".join(f'    - {{docker: "{h["docker"]}", address: {h["address"]}}}\n' for h in HOSTS)
    )
    return path


def test_compose_refuses_nodes_on_hosts_of_their_own(hosts_overlay, tmp_path, capsys):
    out, secrets = tmp_path / "out", tmp_path / "secrets.yaml"
    status = main(
        [
            "render",
            "--stack",
            "dev",
            "--overlay",
            str(hosts_overlay),
            "--compose",
            "--out",
            str(out),
            "--secrets",
            str(secrets),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert f"{hosts_overlay}:3: broker.hosts: a compose file runs every node on one Docker host" in err
    assert "nothing written" in err and not out.exists() and not secrets.exists()


def test_kubernetes_leaves_the_hosts_out_with_a_warning(hosts_overlay, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(
        [
            "render",
            "--stack",
            "dev",
            "--overlay",
            str(hosts_overlay),
            "--kubernetes",
            "--out",
            str(out),
            "--secrets",
            str(tmp_path / "secrets.yaml"),
        ]
    )
    assert status == 0
    assert f"{hosts_overlay}:3: broker.hosts: warning: left out of kubernetes.yaml" in capsys.readouterr().err
    manifest = (out / "kubernetes.yaml").read_text()
    assert "replicas: 3" in manifest and "10.0.0.11" not in manifest


def test_moving_a_node_to_another_host_loses_its_data():
    moved = [HOSTS[0], {**HOSTS[1], "docker": "ssh://deploy@10.0.0.22"}, HOSTS[2]]
    base, head = plans({"broker": {"nodes": 3, "hosts": HOSTS}}, {"broker": {"nodes": 3, "hosts": moved}})
    (change,) = [c for c in changes.classify(base, head) if c.subject.startswith("node")]
    assert change.impact is Impact.DATA_LOSS and change.subject == "node rabbitmq-2"
    assert "empty data volume (the old one stays on ssh://deploy@10.0.0.12)" in change.what


def test_diff_exits_3_when_a_node_changes_host(repo):
    overlay(repo, "broker: {nodes: 3, hosts: %s}" % json.dumps(HOSTS))
    subprocess.run(GIT + ["-C", str(repo), "commit", "-qam", "three nodes on three hosts"], check=True)
    overlay(repo, "broker: {hosts: %s}" % json.dumps([HOSTS[0], HOSTS[1], {**HOSTS[2], "docker": "unix:///x.sock"}]))
    result = diff(repo)
    assert result.returncode == 3, result.stdout + result.stderr
    assert ("data loss", "node rabbitmq-3") in {(impact, subject) for impact, subject, _ in rows(result.stdout)}


def test_setting_or_removing_hosts_on_a_running_cluster_loses_data():
    for base_hosts, head_hosts, said in (([], HOSTS, "broker.hosts set"), (HOSTS, [], "broker.hosts removed")):
        base, head = plans({"broker": {"nodes": 3, "hosts": base_hosts}}, {"broker": {"nodes": 3, "hosts": head_hosts}})
        (change,) = [c for c in changes.classify(base, head) if c.impact is Impact.DATA_LOSS]
        assert change.subject == "broker" and change.what.startswith(said)


def test_a_new_address_restarts_the_node_and_new_ssh_options_change_nothing_running():
    head_hosts = [{**HOSTS[0], "address": "10.0.0.21"}, {**HOSTS[1], "ssh_opts": ["-p", "2222"]}, HOSTS[2]]
    base, head = plans({"broker": {"nodes": 3, "hosts": HOSTS}}, {"broker": {"nodes": 3, "hosts": head_hosts}})
    found = {c.subject: c for c in changes.classify(base, head)}
    moved = found["node rabbitmq-1"]
    assert moved.impact is Impact.RESTART and "10.0.0.11 → 10.0.0.21" in moved.what
    assert found["node rabbitmq-2"].impact is Impact.IN_PLACE
    assert not any(c.impact is Impact.DATA_LOSS for c in found.values())
