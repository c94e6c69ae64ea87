"""Generated definitions of varied shape on a real node: the broker holds exactly what was rendered."""

from __future__ import annotations

import pytest

from infra.definition.load import load_definition
from tests.support import stackgen
from tests.support.live import expected_topology, live_topology
from tests.support.stacks import booted


@pytest.mark.parametrize("seed, queues, vhosts", [(1, 40, 1), (2, 60, 4)])
def test_generated_definition_boots_with_exactly_its_topology(tmp_path, seed, queues, vhosts):
    path = stackgen.write(tmp_path / "generated.yaml", stackgen.generate(seed, queues, vhosts))
    loaded = load_definition(file=path)
    assert loaded.ok, loaded.findings
    with booted(file=path) as (node, rendered):
        live = live_topology(node.api("admin", rendered.password("admin")))
        expected = expected_topology(rendered.definitions)
        assert len(expected["queues"]) >= queues
        for kind in expected:
            assert live[kind] == expected[kind], kind
