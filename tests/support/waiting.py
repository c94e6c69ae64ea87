"""The one bounded wait of the test suite: poll a condition until it holds or the time is up."""

from __future__ import annotations

import time


class WaitTimeout(AssertionError):
    pass


def wait_for(condition, timeout: float, what: str, interval: float = 0.25):
    """condition() until truthy, for at most `timeout` seconds; its last value, or WaitTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"not within {timeout}s: {what}")
        time.sleep(interval)
