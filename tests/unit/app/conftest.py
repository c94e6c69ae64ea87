"""The Django app's eager tier: pytest-django's test database (in-memory SQLite, each test rolled back), eager
Celery on an in-memory broker (config.settings.test), and the fake Riot API on loopback."""

from __future__ import annotations

import pytest

from sample_riot.server import FakeRiot


@pytest.fixture
def riot(settings):
    fake = FakeRiot().start()
    settings.RIOT_API_BASE_URL = fake.base_url
    try:
        yield fake
    finally:
        fake.close()
