import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.chdir(REPO)  # findings name files relative to the working directory, as users see them

# Each test's tier, from its folder, and the tier's default bound (seconds, pytest-timeout; a test's own
# @pytest.mark.timeout wins). unit needs no broker, Docker or network beyond loopback: `make test-fast`.
TIERS = {
    "unit": ("tests/unit/", 120),
    "broker": ("tests/broker/", 900),
    "app_live": ("tests/app/", 900),
    "e2e": ("tests/e2e/", 1800),
    "pulumi": ("tests/pulumi/", 900),
}


def tier_of(path: Path) -> str:
    relative = path.resolve().relative_to(REPO).as_posix()
    for tier, (folder, _) in TIERS.items():
        if relative.startswith(folder):
            return tier
    raise pytest.UsageError(f"{relative}: a test outside the tiers' folders ({', '.join(f for f, _ in TIERS.values())})")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(Path(str(item.fspath)))
        item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIERS[tier][1]))
    # Tests under tests/broker/ start real RabbitMQ nodes; they need Debian's rabbitmq-server, which
    # `make test` installs. Missing, they fail loudly rather than skip: a skipped broker test proves nothing.
    if any("tests/broker/" in str(item.fspath) for item in items) and not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        raise pytest.UsageError("rabbitmq-server is not installed: run `make test`, which installs it")
