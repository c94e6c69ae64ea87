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
    raise pytest.UsageError(
        f"{relative}: a test outside the tiers' folders ({', '.join(f for f, _ in TIERS.values())})"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(Path(str(item.fspath)))
        item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIERS[tier][1]))
    # Tests under tests/broker/ start real RabbitMQ nodes; they need Debian's rabbitmq-server, which
    # `make test` installs. Missing, they fail loudly rather than skip: a skipped broker test proves nothing.
    series = current_series()  # RABBITMQ_SERIES: 3.10 (this host's package) or 4.0 (the trixie root)
    if any("tests/broker/" in str(item.fspath) for item in items) and not series.installed:
        raise pytest.UsageError(
            f"rabbitmq-server {series.name} is not installed: run `{series.install_hint}` (`make test` does)"
        )


# Each file's seconds (setup, call and teardown of its tests), summed where the reports arrive: in one process,
# or in xdist's controller. A run of the live tiers lists the longest, to see what bounds its workers.
FILE_SECONDS: dict[str, float] = {}
LONGEST_FILES = 12


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    FILE_SECONDS[path] = FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if sum(FILE_SECONDS.values()) < 300:  # the unit tier: nothing to balance
        return
    terminalreporter.section(f"longest {LONGEST_FILES} files (s, summed over their tests)")
    for path, seconds in sorted(FILE_SECONDS.items(), key=lambda item: -item[1])[:LONGEST_FILES]:
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
    terminalreporter.write_line(f"{sum(FILE_SECONDS.values()):8.1f}  every file")
