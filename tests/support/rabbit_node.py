"""A throwaway RabbitMQ node: Debian's rabbitmq-server on free loopback ports under a temp dir, of the series
`RABBITMQ_SERIES` selects (rabbit_series.py).

The node reads the files `python -m infra render --target host` writes. It runs as user `rabbitmq` when
the tests run as root (its data dirs are owned by that user), as the current user otherwise. Every wait
is bounded; `kill()` is SIGKILL to the node's whole process group, for fault tests.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pika
import requests

from .rabbit_series import Series, current

BOOT_TIMEOUT_S = 90
_counter = itertools.count()


# Test processes running side by side each take only ports of their own 64-port chunks (chunk number modulo
# the number of shares), so a port one picked, and released until its node binds it, is never handed to
# another: `TEST_PORT_SHARE=i/n` splits the ports between n pytest runs (make test), and a run's
# pytest-xdist workers split its share again.
PORT_CHUNK = 64


def port_share() -> tuple[int, int, int, int]:
    """(this run's share, how many runs share the ports, this xdist worker, how many workers)."""
    index, count = (int(x) for x in os.environ.get("TEST_PORT_SHARE", "0/1").split("/"))
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and workers > 1:
        return index, count, int(worker[2:]) % workers, workers
    return index, count, 0, 1


def own_port(port: int) -> bool:
    """`port` belongs to this test process's share (every port when it runs alone): its run's chunks, and
    of those every workers-th."""
    index, count, worker, workers = port_share()
    chunk = port // PORT_CHUNK
    return chunk % count == index and (chunk // count) % workers == worker


def free_ports(count: int, attempts: int = 2000, gap: int = 1) -> list[int]:
    """Ports the kernel hands out as free on 127.0.0.1, of this process's share, all held open until every
    one is picked; any two at least `gap` apart (a definition of n nodes reads each port as the first of
    n, node i publishing port + i, so n-node ports closer than n would collide)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(attempts):
            if len(sockets) == count:
                return [s.getsockname()[1] for s in sockets]
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if own_port(port) and all(abs(port - h.getsockname()[1]) >= gap for h in sockets):
                sockets.append(s)
            else:
                s.close()
        raise RuntimeError(f"no {count} free ports of this worker's share after {attempts} attempts")
    finally:
        for s in sockets:
            s.close()


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class Ports:
    amqp: int
    management: int
    prometheus: int
    dist: int
    amqps: int = 0  # the TLS listeners, used when the definition turns broker.tls on
    management_tls: int = 0

    @classmethod
    def pick(cls) -> "Ports":
        return cls(*free_ports(6))

    def overlay(self) -> str:
        """A definition overlay that puts the node's listeners on these ports, on loopback (the TLS ones
        too: they listen only when the definition enables TLS)."""
        return (
            "broker:\n  listeners:\n    bind: 127.0.0.1\n"
            f"    amqp: {self.amqp}\n    management: {self.management}\n    prometheus: {self.prometheus}\n"
            f"  tls:\n    amqps: {self.amqps}\n    management: {self.management_tls}\n"
        )


def node_name() -> str:
    """A node name no other node of this machine's test runs has."""
    return f"t{os.getpid()}x{next(_counter)}@localhost"


class BootFailed(RuntimeError):
    pass


class RabbitNode:
    def __init__(
        self,
        config_dir: Path,
        ports: Ports,
        name: str | None = None,
        tls_only: bool = False,
        series: Series | None = None,
        dist_env: dict[str, str] | None = None,
    ):
        """`config_dir` holds rabbitmq.conf, enabled_plugins and definitions.json, rendered with
        `--target host --out config_dir` (so the conf points at config_dir/definitions.json), and, for a
        cluster's node, the rendered erlang.cookie, which becomes the node's (and its CLI tools') cookie.
        `tls_only`: the plain listeners are off, so boot is awaited on the AMQPS and HTTPS ports.
        `dist_env`: with inter-node TLS, the node's and its CLI tools' Erlang flags (`TlsConfig.dist_env`)."""
        self.ports = ports
        self.dist_env = dict(dist_env or {})
        self.series = series or current()
        self.listening = (ports.amqps, ports.management_tls) if tls_only else (ports.amqp, ports.management)
        self.tls_dir = config_dir / "tls" if (config_dir / "tls" / "ca.pem").exists() else None
        self.tls_only = tls_only
        self.name = name or node_name()
        self.base = Path(tempfile.mkdtemp(prefix="rabbit-node-"))
        self.config_dir = config_dir
        for sub in ("mnesia", "log", "home"):
            (self.base / sub).mkdir()
        cookie = config_dir / "erlang.cookie"
        if cookie.exists():
            shutil.copyfile(cookie, self.base / "home" / ".erlang.cookie")
            (self.base / "home" / ".erlang.cookie").chmod(0o400)
        (self.base / "rabbitmq-env.conf").write_text("")
        self.process: subprocess.Popen | None = None
        self._run_as = "rabbitmq" if os.geteuid() == 0 else None
        self.base.chmod(0o755)
        if self._run_as:
            for path in (self.base, config_dir):
                shutil.chown(path, self._run_as, self._run_as)
                for child in path.rglob("*"):
                    shutil.chown(child, self._run_as, self._run_as)

    # -- environment -------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.base / "home"),  # the Erlang cookie lives here, for the node and the CLI
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(self.config_dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.config_dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_DIST_PORT": str(self.ports.dist),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            **self.dist_env,
            # Erlang distribution (clustering, CLI tools) on loopback too, not on every interface.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": " ".join(
                [
                    "-kernel inet_dist_use_interface {127,0,0,1}",
                    self.dist_env.get("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", ""),
                ]
            ).strip(),
            **self.series.env,
        }

    def _popen_kwargs(self) -> dict:
        if not self._run_as or self.series.root:  # chrooted: chroot itself switches user
            return {}
        account = pwd.getpwnam(self._run_as)
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _argv(self, tool: str) -> list[str]:
        account = pwd.getpwnam(self._run_as) if self._run_as else None
        return self.series.argv(tool, (account.pw_uid, account.pw_gid) if account else None)

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> "RabbitNode":
        since = len(self.console_output())  # an earlier boot's BOOT FAILED (a crashed resume) is not this one's
        log = open(self.base / "log" / "console.out", "ab")
        self.process = subprocess.Popen(
            self._argv("rabbitmq-server"),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._popen_kwargs(),
        )
        log.close()
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while not all(port_open("127.0.0.1", port) for port in self.listening):
            if self.process.poll() is not None or b"BOOT FAILED" in self.console_output()[since:]:
                console = self.console_output()[since:][-4000:].decode(errors="replace")
                raise BootFailed(f"node {self.name} did not boot:\n{console}")
            if time.monotonic() > deadline:  # what the node was waiting for (peers, tables) is in its log
                raise BootFailed(f"node {self.name} not listening after {BOOT_TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.2)
        self.ctl("rabbitmqctl", "await_startup", "--timeout", "60")
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the node's own log (RABBITMQ_LOG_BASE/<node>.log) and of its console."""
        tails = []
        for path in (self.base / "log" / f"{self.name}.log", self.base / "log" / "console.out"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(tails)

    def console_output(self) -> bytes:
        path = self.base / "log" / "console.out"
        return path.read_bytes() if path.exists() else b""

    def ctl(self, tool: str, *args: str, check: bool = True, timeout: float = 90) -> str:
        """Run rabbitmqctl / rabbitmq-diagnostics / rabbitmq-queues against this node."""
        result = subprocess.run(
            [*self._argv(tool), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **self._popen_kwargs(),
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout

    def stop(self) -> None:
        """A clean shutdown, as `docker stop` gives the official image."""
        if self.process and self.process.poll() is None:
            self.ctl("rabbitmqctl", "shutdown", check=False)
            self._reap(timeout=60)

    def kill(self) -> None:
        """SIGKILL to the node and every process it started: a crash, no chance to flush anything."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self._reap(timeout=30)

    def _reap(self, timeout: float) -> None:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while port_open("127.0.0.1", self.listening[0]) and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- clients -----------------------------------------------------------------------------------
    def api(self, user: str, password: str) -> "ManagementAPI":
        """The management API: over HTTPS, verified with the stack's CA, when the plain listener is off."""
        if self.tls_only:
            return ManagementAPI(
                f"https://127.0.0.1:{self.ports.management_tls}/api",
                user,
                password,
                verify=str(self.tls_dir / "ca.pem"),
            )
        return ManagementAPI(f"http://127.0.0.1:{self.ports.management}/api", user, password)

    def client_tls_context(self, cert: str | None = "client") -> ssl.SSLContext:
        """A client context that verifies the broker against the stack's CA (and its name), presenting
        `<cert>.pem` from the rendered tls/ directory (None: no certificate)."""
        context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.pem"))
        if cert:
            context.load_cert_chain(str(self.tls_dir / f"{cert}.pem"), str(self.tls_dir / f"{cert}.key"))
        return context

    def amqp_params(self, vhost: str, user: str, password: str, **kwargs) -> pika.ConnectionParameters:
        """How a client reaches this node: AMQPS with the app's client certificate when TLS is on."""
        credentials = pika.PlainCredentials(user, password)
        if self.tls_dir is None:
            return pika.ConnectionParameters("127.0.0.1", self.ports.amqp, vhost, credentials, **kwargs)
        return pika.ConnectionParameters(
            "127.0.0.1",
            self.ports.amqps,
            vhost,
            credentials,
            ssl_options=pika.SSLOptions(self.client_tls_context(), "127.0.0.1"),
            **kwargs,
        )


class ManagementAPI:
    def __init__(self, base: str, user: str, password: str, verify: str | bool = True):
        self.base = base
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.verify = verify  # per request: requests lets $REQUESTS_CA_BUNDLE override a session's verify

    def get(self, path: str, **params):
        response = self.session.get(f"{self.base}/{path}", params=params, timeout=30, verify=self.verify)
        response.raise_for_status()
        return response.json()

    def get_when(self, path: str, ready, timeout: float = 20.0, **params):
        """GET until `ready(result)`: node statistics appear a few seconds after boot. Bounded."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.get(path, **params)
            if ready(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.25)

    def status(self, path: str) -> int:
        return self.session.get(f"{self.base}/{path}", timeout=30, verify=self.verify).status_code
