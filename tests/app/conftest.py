"""tests/app: the Django project under test settings (eager Celery, in-memory SQLite), and the fake Riot API.

The reliability tests (test_reliability.py) start their own real parts: a broker, web and workers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "app"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from tests.app.fake_riot import FakeRiot  # noqa: E402

setup_test_environment()
call_command("migrate", verbosity=0, interactive=False)  # the in-memory database of this process


@pytest.fixture
def db():
    """Each test in a transaction rolled back afterwards."""
    with transaction.atomic():
        yield connection
        transaction.set_rollback(True)


@pytest.fixture
def riot(settings_override):
    fake = FakeRiot().start()
    settings_override(RIOT_API_BASE_URL=fake.base_url)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def settings_override():
    from django.test import override_settings

    active = []

    def apply(**values):
        o = override_settings(**values)
        o.enable()
        active.append(o)

    yield apply
    for o in reversed(active):
        o.disable()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """item.rep_call: whether the test body failed (fixtures print the processes' logs then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
