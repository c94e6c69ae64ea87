"""What lets `make test` run the live tiers on parallel workers without dropping a test: each worker's ports
are its own, and the Makefile's passes together cover every tier's folder."""

from __future__ import annotations

import re

from tests.conftest import REPO, TIERS
from tests.support import rabbit_node

PORTS = range(1024, 1024 + 96 * rabbit_node.PORT_CHUNK)  # 96 chunks: enough to see each share's size


def test_each_xdist_worker_picks_ports_no_other_worker_picks(monkeypatch):
    monkeypatch.delenv("TEST_PORT_SHARE", raising=False)
    picked = {}
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
        picked[worker] = set(rabbit_node.free_ports(20))
        assert all(rabbit_node.own_port(p) for p in picked[worker])
        assert sum(rabbit_node.own_port(p) for p in PORTS) == len(PORTS) // 3  # a third
    assert not picked["gw0"] & picked["gw1"] and not picked["gw1"] & picked["gw2"] and not picked["gw0"] & picked["gw2"]
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert all(rabbit_node.own_port(p) for p in PORTS)  # alone: every port
    # two runs side by side (TEST_PORT_SHARE), one of them on two workers: three disjoint shares
    shares = []
    for share, worker in (("0/2", "gw0"), ("0/2", "gw1"), ("1/2", None)):
        monkeypatch.setenv("TEST_PORT_SHARE", share)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        if worker:
            monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        else:
            monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
        shares.append({p for p in PORTS if rabbit_node.own_port(p)})
    assert not shares[0] & shares[1] and not shares[0] & shares[2] and not shares[1] & shares[2]
    assert [len(share) for share in shares] == [
        len(PORTS) // 4,
        len(PORTS) // 4,
        len(PORTS) // 2,
    ]  # a quarter each, half


def test_a_clusters_ports_are_far_enough_apart_that_no_node_publishes_anothers(monkeypatch):
    """A definition of n nodes reads each port as the first of n (node i publishes port + i): ports closer
    than n would make `validate` refuse it (a CI run hit amqps + 1 == management)."""
    monkeypatch.delenv("TEST_PORT_SHARE", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    for _ in range(20):
        ports = sorted(rabbit_node.free_ports(18, gap=3))
        assert len(ports) == 18 and all(b - a >= 3 for a, b in zip(ports, ports[1:]))


def test_make_test_runs_every_tier():
    makefile = (REPO / "Makefile").read_text()
    live = re.search(r"^LIVE_TIERS = (.*)$", makefile, re.M).group(1).split()
    live += re.search(r"^DOCKER_TIERS = (.*)$", makefile, re.M).group(1).split()
    fast = re.search(r"^test-fast:.*\n\t\$\(PY\) -m pytest -q (\S+)$", makefile, re.M).group(1)
    assert re.search(r"^test-offline:.*\n.*\btest-fast\b", makefile, re.M)
    assert sorted([fast, *live]) == sorted(folder.rstrip("/") for folder, _ in TIERS.values())
    assert "$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(LIVE_TIERS)" in makefile
    assert "$(PY) -m pytest $(DOCKER_TIERS)" in makefile
