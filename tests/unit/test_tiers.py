"""Each test's tier comes from its folder (tests/conftest.py): the marker `make test-fast` selects by, and the
tier's default timeout."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, TIERS, tier_of


def test_each_tiers_folder_maps_to_it_and_a_test_elsewhere_is_refused():
    assert tier_of(REPO / "tests/unit/app/test_views.py") == "unit"
    assert tier_of(REPO / "tests/app/test_reliability.py") == "app_live"
    assert tier_of(REPO / "tests/e2e/test_first_run.py") == "e2e"
    assert {tier_of(REPO / folder / "test_x.py") for folder, _ in TIERS.values()} == set(TIERS)
    with pytest.raises(pytest.UsageError, match="outside the tiers' folders"):
        tier_of(REPO / "tests/test_stray.py")


def test_this_test_carries_its_tier_and_the_tiers_timeout(request):
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("timeout").args == (TIERS["unit"][1],)
