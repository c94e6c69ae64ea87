import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.chdir(REPO)  # findings name files relative to the working directory, as users see them
# No test may make the Pulumi CLI reach the internet: no update check, no plugin download (`make pulumi`
# builds what the tests use).
os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
os.environ.setdefault("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")


def pytest_collection_modifyitems(config, items):
    # Tests under tests/broker/ start real RabbitMQ nodes; they need Debian's rabbitmq-server, which
    # `make test` installs. Missing, they fail loudly rather than skip: a skipped broker test proves nothing.
    if any("tests/broker/" in str(item.fspath) for item in items) and not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        raise pytest.UsageError("rabbitmq-server is not installed: run `make test`, which installs it")
