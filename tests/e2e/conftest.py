import os

import pytest

from tests.e2e.harness import PLAYERS, ImagesMissing, running_stack


@pytest.fixture(scope="session")
def e2e_stack():
    try:
        with running_stack(PLAYERS, {"timeline": 1.5}, project=f"rce2e{os.getpid()}") as stack:
            yield stack
    except ImagesMissing as exc:
        raise pytest.UsageError(str(exc)) from None
