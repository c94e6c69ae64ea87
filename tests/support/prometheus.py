"""A real Prometheus (Debian's) on a loopback port, for the monitoring tests: started on a rendered
prometheus.yml, ready before it is handed out, stopped afterwards. Every wait is bounded."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import requests

from .rabbit_node import free_ports
from .waiting import wait_for


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/-/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def running_prometheus(config: Path, work: Path, timeout: float = 45) -> Iterator[str]:
    """Prometheus on `config`, its data and log under `work`; yields its base URL."""
    if shutil.which("prometheus") is None:
        raise RuntimeError("prometheus is not installed (make prometheus)")
    port = free_ports(1)[0]
    with open(work / "prometheus.log", "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), timeout, "prometheus ready", interval=0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
