"""tests/app: the Django app against real brokers, web and Celery workers (each module starts its own parts:
tests/app/deployment.py); its eager tests are in tests/unit/app. pytest-django sets up the test settings."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """item.rep_call: whether the test body failed (fixtures print the processes' logs then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
