import pytest

from infra.definition.units import Duration, RateLimit, Size


@pytest.mark.parametrize(
    "text, ms",
    [("500ms", 500), ("90s", 90_000), ("30m", 1_800_000), ("2h", 7_200_000), ("1d", 86_400_000), (" 4h ", 14_400_000)],
)
def test_durations(text, ms):
    assert Duration.parse(text) == ms


@pytest.mark.parametrize("bad", ["2 hours", "90", 90, "1.5h", "0s", "-1m", "", None, True, "2H"])
def test_bad_durations_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="duration"):
        Duration.parse(bad)


def test_duration_prints_in_its_largest_whole_unit():
    assert [str(Duration.parse(t)) for t in ("120m", "90s", "1500ms", "48h")] == ["2h", "90s", "1500ms", "2d"]


@pytest.mark.parametrize(
    "text, size",
    [("512MB", 512 * 10**6), ("2GB", 2 * 10**9), ("1kB", 1000), ("1KiB", 1024), ("2GiB", 2 * 2**30), ("10B", 10)],
)
def test_sizes_read_as_rabbitmq_reads_them(text, size):
    assert Size.parse(text) == size


@pytest.mark.parametrize("bad", ["2 gigs", 2048, "2gb", "0MB", "1.5GB", None])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="size"):
        Size.parse(bad)


@pytest.mark.parametrize("text, per_second", [("10/m", 10 / 60), ("5/s", 5), ("100/h", 100 / 3600), (2, 2)])
def test_rate_limits(text, per_second):
    assert RateLimit.parse(text).per_second == pytest.approx(per_second)


@pytest.mark.parametrize("bad", ["10 per minute", "10/d", "/m", "0/m", True, None])
def test_bad_rate_limits(bad):
    with pytest.raises(ValueError, match="rate"):
        RateLimit.parse(bad)
