import os
from pathlib import Path

import pytest

from tests.support.rabbit_series import current as current_series

REPO = Path(__file__).resolve().parent.parent
os.chdir(REPO)  # findings name files relative to the working directory, as users see them
# No test may make the Pulumi CLI reach the internet: no update check, no plugin download (`make pulumi`
# builds what the tests use).
os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
os.environ.setdefault("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")


def pytest_collection_modifyitems(config, items):
    # Tests under tests/broker/ start real RabbitMQ nodes; they need Debian's rabbitmq-server, which
    # `make test` installs. Missing, they fail loudly rather than skip: a skipped broker test proves nothing.
    series = current_series()  # RABBITMQ_SERIES: 3.10 (this host's package) or 4.0 (the trixie root)
    if any("tests/broker/" in str(item.fspath) for item in items) and not series.installed:
        raise pytest.UsageError(f"rabbitmq-server {series.name} is not installed: run `{series.install_hint}` "
                                f"(`make test` does)")
