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
    "B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}

_RATE = re.compile(r"^\d+(\.\d+)?(/[smh])?$")


class Duration(int):
    """A duration in milliseconds, written `500ms`, `90s`, `30m`, `2h` or `1d`."""

    label = "duration"
    expected = "a duration such as 90s, 30m or 2h"

    @classmethod
    def parse(cls, raw: object) -> "Duration":
        match = _DURATION.match(raw) if isinstance(raw, str) else None
        if not match:
            raise ValueError(f"expected {cls.expected}, got {raw!r}")
        value = int(match.group(1)) * _DURATION_MS[match.group(2)]
        if value <= 0:
            raise ValueError(f"expected a positive duration, got {raw!r}")
        return cls(value)

    @property
    def seconds(self) -> float:
        return self / 1000

    def __str__(self) -> str:
        for unit in ("d", "h", "m", "s"):
            if self % _DURATION_MS[unit] == 0:
                return f"{self // _DURATION_MS[unit]}{unit}"
        return f"{int(self)}ms"


class Size(int):
    """A size in bytes, written `512MB`, `2GB` (powers of 1000) or `512MiB`, `2GiB` (powers of 1024)."""

    label = "size"
    expected = "a size such as 512MB or 2GB"

    @classmethod
    def parse(cls, raw: object) -> "Size":
        match = _SIZE.match(raw) if isinstance(raw, str) else None
        if not match:
            raise ValueError(f"expected {cls.expected}, got {raw!r}")
        value = int(match.group(1)) * _SIZE_BYTES[match.group(2)]
        if value <= 0:
            raise ValueError(f"expected a positive size, got {raw!r}")
        return cls(value)

    def __str__(self) -> str:
        for unit in ("TB", "GB", "MB", "kB"):
            if self % _SIZE_BYTES[unit] == 0:
                return f"{self // _SIZE_BYTES[unit]}{unit}"
        return f"{int(self)}B"


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
