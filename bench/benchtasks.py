"""The benchmark's tasks, loaded into the app's real workers with `-I benchtasks` (bench/ on PYTHONPATH).

They run under the app's Celery settings (acks late, reject on worker lost, persistent, confirms) and are
routed by queue name through the rendered celery.json; they are not part of the app.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import requests
from celery import shared_task

_local = threading.local()


@shared_task(name="bench.noop")
def noop(tag: str) -> str:
    """Nothing: the pipeline's own cost per task. Returns its tag, which the worker logs with the success."""
    return tag


@shared_task(name="bench.fetch")
def fetch(tag: str, url: str) -> str:
    """One HTTP GET to the fake Riot API (which answers after 50 ms): an I/O-bound task."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    session.get(url, timeout=10)
    return tag


@shared_task(name="bench.hold")
def hold(tag: str, seconds: float, mark_file: str) -> str:
    """Writes '<tag> <worker> <time>' when it starts, then sleeps: the recovery benchmark kills its worker."""
    with open(mark_file, "a") as out:
        out.write(f"{tag} {os.environ.get('BENCH_WORKER', socket.gethostname())} {time.time():.6f}\n")
    time.sleep(seconds)
    return tag
