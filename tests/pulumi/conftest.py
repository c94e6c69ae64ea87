import shutil

import pytest

from infra.paths import LOCAL_CLI_ROOT


@pytest.fixture(scope="session")
def pulumi_cli() -> str:
    """The CLI on PATH, else the one `make pulumi` built; missing, the tier fails loudly rather than skips."""
    cli = shutil.which("pulumi") or shutil.which("pulumi", path=str(LOCAL_CLI_ROOT / "bin"))
    if not cli:
        raise pytest.UsageError("no Pulumi CLI: run `make pulumi` (it builds one from Go modules), or `make test`")
    return cli
