"""Units the definition is written in: durations (`90s`), sizes (`512MB`) and Celery rate limits (`10/m`).

Each is an `int`/`str` subclass so the model stays plain data, with a `parse` that raises ValueError
carrying the message a user sees.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

# RabbitMQ's own reading of units: kB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024.
_SIZE = re.compile(r"^\s*(\d+)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$")
_SIZE_BYTES = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}

_RATE = re.compile(r"^\d+(\.\d+)?(/[smh])?$")
_RIOT_WINDOW = re.compile(r"^(\d+):(\d+)$")


class _Quantity(int):
    """A whole number written with a unit; subclasses name their pattern, unit table and wording."""

    pattern: re.Pattern
    units: dict[str, int]
    print_units: tuple[str, ...]
    smallest: str
    label = expected = ""

    @classmethod
    def parse(cls, raw: object):
        match = cls.pattern.match(raw) if isinstance(raw, str) else None
        if not match:
            raise ValueError(f"expected {cls.expected}, got {raw!r}")
        value = int(match.group(1)) * cls.units[match.group(2)]
        if value <= 0:
            raise ValueError(f"expected a positive {cls.label}, got {raw!r}")
        return cls(value)

    def __str__(self) -> str:
        """In the largest unit that divides it: 2h, 90s, 2GB."""
        for unit in self.print_units:
            if self % self.units[unit] == 0:
                return f"{self // self.units[unit]}{unit}"
        return f"{int(self)}{self.smallest}"


class Duration(_Quantity):
    """A duration in milliseconds, written `500ms`, `90s`, `30m`, `2h` or `1d`."""

    pattern, units, print_units, smallest = _DURATION, _DURATION_MS, ("d", "h", "m", "s"), "ms"
    label = "duration"
    expected = "a duration such as 90s, 30m or 2h"


class Size(_Quantity):
    """A size in bytes, written `512MB`, `2GB` (powers of 1000) or `512MiB`, `2GiB` (powers of 1024)."""

    pattern, units, print_units, smallest = _SIZE, _SIZE_BYTES, ("TB", "GB", "MB", "kB"), "B"
    label = "size"
    expected = "a size such as 512MB or 2GB"


class RateLimit(str):
    """A Celery rate limit: `10/m`, `5/s`, `100/h`, or a bare number of tasks per second."""

    label = "rate"
    expected = "a rate such as 10/m, 5/s or 100/h"

    @classmethod
    def parse(cls, raw: object) -> "RateLimit":
        text = str(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else raw
        if not isinstance(text, str) or not _RATE.match(text) or float(text.split("/")[0]) <= 0:
            raise ValueError(f"expected {cls.expected}, got {raw!r}")
        return cls(text)

    @property
    def per_second(self) -> float:
        count, _, unit = self.partition("/")
        return float(count) / {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


class RiotRateLimit(str):
    """Riot's rate-limit notation, as in its X-App-Rate-Limit header: `20:1,100:120` is 20 requests per
    second and 100 per 120 seconds."""

    label = "Riot rate limit"
    expected = "Riot's notation count:seconds[,count:seconds...], such as 20:1,100:120"

    @classmethod
    def parse(cls, raw: object) -> "RiotRateLimit":
        parts = raw.split(",") if isinstance(raw, str) else [None]
        windows = [_RIOT_WINDOW.match(p.strip()) if isinstance(p, str) else None for p in parts]
        if not all(windows) or any(int(w.group(1)) <= 0 or int(w.group(2)) <= 0 for w in windows):
            raise ValueError(f"expected {cls.expected}, got {raw!r}")
        if len({w.group(2) for w in windows}) != len(windows):
            raise ValueError(f"each window (seconds) once, got {raw!r}")
        return cls(",".join(f"{int(w.group(1))}:{int(w.group(2))}" for w in windows))
