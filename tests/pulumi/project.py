"""A copy of this repository as a Pulumi project of the test's own, deployed with the real engine and plugins.

The copy has a project name of its own (every Docker object is named `<project>-<stack>-…`), free loopback ports
written into its stack file, a file backend and a passphrase in a temporary folder, so a test never meets
`make local`, another test or the user's own stacks, and never writes into the work tree. The CLI, language host
and plugins are the ones `make pulumi` built and installed (PULUMI_HOME as the user has it).
"""

from __future__ import annotations

import json
import os
import secrets as random_secrets
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pika
import requests
import yaml

from infra.paths import LOCAL_CLI_ROOT, REPO, SAMPLE_RIOT_PLAYERS
from tests.e2e.harness import docker, free_port_blocks
from tests.support.rabbit_node import free_ports
from tests.support.waiting import wait_for

PASSPHRASE = "test-passphrase-not-a-secret"


def merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@dataclass
class Project:
    root: Path
    stack: str
    name: str
    ports: dict
    env: dict = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{self.name}-{self.stack}"

    def run(self, *argv: str, timeout: float = 900, check: bool = True, env: dict | None = None):
        result = subprocess.run(
            argv, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def infra(self, *args: str, **kwargs):
        """`python -m infra …` of the copy (its definition, its Pulumi.yaml)."""
        return self.run(sys.executable, "-m", "infra", *args, **kwargs)

    def pulumi(self, *args: str, **kwargs):
        return self.run("pulumi", *args, "--stack", self.stack, "--non-interactive", **kwargs)

    def deploy(self, **kwargs):
        return self.infra("deploy", "--stack", self.stack, **kwargs)

    def start_deploy(self) -> subprocess.Popen:
        """`python -m infra deploy` started in a session of its own (SIGKILL its group), output and errors piped."""
        return subprocess.Popen(
            [sys.executable, "-m", "infra", "deploy", "--stack", self.stack],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def outputs(self) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json", "--show-secrets").stdout)

    def preview_steps(self, *extra: str) -> dict[str, str]:
        """The engine's own plan: each resource's URN name (type::name) → its op (same, update, replace, create,
        delete…), from `pulumi preview --json`."""
        result = self.pulumi("preview", "--json", *extra, env={"RABBITMQ_CELERY_MIGRATIONS_CHECKED": "1"})
        steps = json.loads(result.stdout).get("steps", [])
        return {_short(s["urn"]): s["op"] for s in steps}

    def state_text(self) -> str:
        """The stack's checkpoint as stored by the file backend."""
        files = list((self.root.parent / "state").rglob(f"{self.stack}.json"))
        return "\n".join(f.read_text() for f in files if ".history" not in f.parts and "backups" not in f.parts)

    def edit_stack(self, overlay: dict) -> None:
        path = self.root / "stacks" / f"{self.stack}.yaml"
        path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), overlay), sort_keys=False))

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    def containers(self) -> list[str]:
        out = docker("ps", "-a", "--filter", f"name=^{self.prefix}-", "--format", "{{.Names}}")
        return sorted(out.split())

    def health(self) -> dict[str, str]:
        names = self.containers()
        if not names:
            return {}
        out = docker(
            "inspect", "--format", "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", *names
        )
        return dict(line.lstrip("/").split() for line in out.splitlines())

    def sync_sample_player(self) -> dict:
        """A sync started through the web API against the stack's sample Riot API, waited for until settled."""
        web = f"http://127.0.0.1:{self.ports['web']}"
        player = json.loads(SAMPLE_RIOT_PLAYERS.read_text())["players"][0]
        body = {k: player[k] for k in ("game_name", "tag_line", "region")}
        response = requests.post(f"{web}/api/players/sync", json=body, timeout=30)
        assert response.status_code == 202, response.text
        job = response.json()["job_id"]

        def settled():
            status = requests.get(f"{web}/api/jobs/{job}", timeout=30).json()
            return status if status["status"] in ("complete", "failed") else None

        return wait_for(settled, 240, f"job {job} settled", interval=1.0)

    def cleanup(self) -> None:
        """Whatever a failed test left: the stack destroyed if it can be, then every Docker object of the prefix."""
        self.pulumi("destroy", "--yes", "--skip-preview", timeout=600, check=False)
        names = self.containers()
        if names:
            docker("rm", "-f", *names, check=False, timeout=300)
        for kind in ("network", "volume"):
            listed = docker(kind, "ls", "-q", "--filter", f"name={self.prefix}-", check=False)
            if listed:
                docker(kind, "rm", *listed.split(), check=False)
        images = docker(
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=*:" + self.prefix + "-*",
            check=False,
        )
        if images:
            docker("rmi", *images.split(), check=False)


def _short(urn: str) -> str:
    """`urn:pulumi:stack::project::parent$type::name` → `type::name`."""
    _, _, qualified_type, name = urn.split("::", 3)
    return f"{qualified_type.split('$')[-1]}::{name}"


def copy_repository(target: Path) -> None:
    """The files git knows (tracked, or new and not ignored) of the work tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    for shared in (".venv", ".pulumi"):  # the venv with the SDKs, and `make pulumi`'s CLI and host
        (target / shared).symlink_to(REPO / shared)


def new_project(work: Path, stack: str = "local", nodes: int = 1) -> Project:
    name = f"rcp{random_secrets.token_hex(3)}"
    root = work / "project"
    root.mkdir(parents=True)
    copy_repository(root)
    pulumi_yaml = root / "Pulumi.yaml"
    pulumi_yaml.write_text(pulumi_yaml.read_text().replace("name: rabbitmq-celery", f"name: {name}", 1))
    amqp, management, prometheus = free_port_blocks(3, nodes)
    taken = {start + i for start in (amqp, management, prometheus) for i in range(nodes)}
    web = next(p for p in free_ports(len(taken) + 1) if p not in taken)
    ports = {"amqp": amqp, "management": management, "prometheus": prometheus, "web": web}
    (work / "state").mkdir()
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(LOCAL_CLI_ROOT / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]]),
        "PULUMI_BACKEND_URL": f"file://{work / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }
    env.pop("RABBITMQ_CELERY_MIGRATIONS_CHECKED", None)
    project = Project(root, stack, name, ports, env)
    project.edit_stack(
        {
            "broker": {
                "listeners": {"bind": "127.0.0.1", "amqp": amqp, "management": management, "prometheus": prometheus}
            },
            "app": {"web": {"port": web}},
        }
    )
    return project


def wait_healthy(project: Project, timeout: float = 240) -> dict[str, str]:
    def all_healthy():
        health = project.health()
        return health if health and all(s in ("healthy", "none") for s in health.values()) else None

    return wait_for(all_healthy, timeout, f"{project.prefix}: every container healthy", interval=2.0)


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


DEPLOY_TIMEOUT = 1800  # from nothing on a loaded 2-core machine: the app image build and every health check


def deployed(project: Project):
    """A module fixture's body: the project deployed from nothing, yielded, then cleaned up whatever happened."""
    try:
        _, seconds = timed(project.deploy, timeout=DEPLOY_TIMEOUT)
        print(f"{project.prefix}: deploy from nothing {seconds:.1f} s")
        yield project
    finally:
        project.cleanup()


def assert_every_container_healthy(project: Project, brokers: list[str]) -> None:
    health = project.health()
    expected = {*brokers, "postgres", "web", "beat", "riot-sample"}
    expected |= {f"worker-{pool}" for pool in ("sync", "matches", "background")}
    assert {name.removeprefix(f"{project.prefix}-") for name in health} == expected, health
    assert set(health.values()) <= {"healthy", "none"}, health


def admin(project: Project) -> tuple[str, str]:
    return "admin", project.outputs()["rabbitmqAdminPassword"]


def assert_destroyed(project: Project) -> None:
    project.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
    assert project.containers() == []
    assert docker("network", "ls", "-q", "--filter", f"name={project.prefix}-") == ""


def tls_listeners(project: Project, nodes: int = 1) -> dict:
    """`broker.tls` on with a generated CA, on two more blocks of free ports, one port per node (recorded as
    `amqps` and `https`: node i listens on each + i - 1)."""
    taken = {p + i for name, p in project.ports.items() for i in range(1 if name == "web" else nodes)}
    for _ in range(50):
        amqps, https = free_port_blocks(2, nodes)
        if not {p + i for p in (amqps, https) for i in range(nodes)} & taken:
            project.ports.update(amqps=amqps, https=https)
            return {"enabled": True, "ca": "generate", "amqps": amqps, "management": https}
    raise RuntimeError("no free TLS port blocks apart from the stack's own")


def management(project: Project, path: str):
    """GET `path` of the stack's management API (plain HTTP), as its admin."""
    response = requests.get(f"{project.management_url}/api/{path}", auth=admin(project), timeout=30)
    response.raise_for_status()
    return response.json()


def client_certificate(project: Project) -> tuple[str, str]:
    """The app's client certificate and key, as pulumi_tls issued them (the key a secret of the state)."""
    exported = json.loads(project.pulumi("stack", "export", "--show-secrets").stdout)
    resources = {r["urn"].rsplit("::", 1)[1]: r.get("outputs", {}) for r in exported["deployment"]["resources"]}

    def plain(value):  # a secret output, shown by --show-secrets, keeps its envelope: {…, "plaintext": JSON}
        return json.loads(value["plaintext"]) if isinstance(value, dict) else value

    return plain(resources["tls-client"]["certPem"]), plain(resources["tls-client-key"]["privateKeyPem"])


def tls_context(project: Project, work: Path) -> ssl.SSLContext:
    """Trusting only the stack's CA (`pulumi stack output ca_cert`), presenting the app's client certificate."""
    context = ssl.create_default_context(cadata=project.outputs()["ca_cert"])
    cert, key = client_certificate(project)
    (work / "client.pem").write_text(cert)
    (work / "client.key").write_text(key)
    (work / "client.key").chmod(0o600)
    context.load_cert_chain(str(work / "client.pem"), str(work / "client.key"))
    return context


def amqps_parameters(project: Project, context: ssl.SSLContext, node: int = 1, **extra) -> pika.ConnectionParameters:
    """Node `node`'s AMQPS listener, as the stack's admin, over `context`."""
    return pika.ConnectionParameters(
        "127.0.0.1",
        project.ports["amqps"] + node - 1,
        "/",
        pika.PlainCredentials(*admin(project)),
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
        **extra,
    )
