"""app/bin: the web entry point and the container health check."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.rabbit_node import free_ports

BIN = Path(__file__).resolve().parents[3] / "app" / "bin"


def test_bin_scripts_are_executable_and_web_is_posix_sh():
    for name in ("web", "healthcheck"):
        assert (BIN / name).stat().st_mode & stat.S_IXUSR, name
    assert (BIN / "web").read_text().startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(BIN / "web")]).returncode == 0
    text = (BIN / "web").read_text()
    assert "python manage.py migrate --noinput" in text
    assert (
        "exec gunicorn config.wsgi:application --bind 0.0.0.0:${WEB_PORT:-8000} --workers ${WEB_CONCURRENCY:-2}" in text
    )


@pytest.fixture
def healthz():
    """A /healthz answering `state["status"]`, recording the Host header it was asked with."""
    state = {"status": 200, "hosts": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state["hosts"].append(self.headers.get("Host"))
            self.send_response(state["status"] if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(port: int, **env) -> int:
    base = {k: v for k, v in os.environ.items() if k not in ("WEB_PORT", "DJANGO_ALLOWED_HOSTS")}
    return subprocess.run(
        [str(BIN / "healthcheck")], env={**base, "WEB_PORT": str(port), **env}, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_is_0_only_for_a_200(healthz):
    port, state = healthz
    assert run_healthcheck(port, DJANGO_ALLOWED_HOSTS=".example.org, web") == 0
    assert state["hosts"] == ["example.org"]  # a host Django accepts, not 127.0.0.1
    state["status"] = 503
    assert run_healthcheck(port) == 1
    assert run_healthcheck(free_ports(1)[0]) == 1  # nothing listening
