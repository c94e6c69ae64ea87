"""No plaintext credential anywhere it should not be: tracked files, rendered files, `plan --json`, command
output, and a real node's logs after right and wrong logins. A control shows the scan does find one.

The credentials are the test stacks' (TEST_SECRETS) and every value `render` generated into its secrets
file. They are looked for as written and percent-encoded (as in an AMQP URL).
"""

from __future__ import annotations

import secrets as random_source
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pika
import pytest
import requests
import yaml

from infra.cli.main import ExitStatus, main
from tests.support.stacks import TEST_SECRETS, booted

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["dev", "staging", "prod", "local"]
# The one tracked file allowed to hold the test stacks' fake credentials: it defines them.
FIXTURE = "tests/support/stacks.py"


PRIVATE_KEY = b"PRIVATE " + b"KEY-----"  # any PEM private key block (spelled apart: this file holds none)


def is_certificate(value: str) -> bool:
    return "-----BEGIN CERTIFICATE-----" in value


def forms(credential: str) -> set[bytes]:
    return {credential.encode(), urllib.parse.quote(credential, safe="").encode()}


def scan(texts: dict[str, bytes], credentials: dict[str, str]) -> set[tuple[str, str]]:
    """(where, secret key) for every credential found in any text."""
    return {
        (where, key)
        for where, text in texts.items()
        for key, value in credentials.items()
        if any(form in text for form in forms(value))
    }


def read_tree(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Every shipped stack rendered with and without --compose (and --monitoring), with the command output:
    (texts to scan, credential-carrying files, credentials including generated ones)."""
    work = tmp_path_factory.mktemp("renders")
    texts, carriers, credentials = {}, {}, dict(TEST_SECRETS)
    for stack in SHIPPED:
        secrets_file = work / f"{stack}.secrets.yaml"
        # Leave one key out so `render` generates it too: generated values are scanned for as well.
        given = {k: v for k, v in TEST_SECRETS.items() if k != "rabbitmqMonitorPassword"}
        secrets_file.write_text(yaml.safe_dump(given))
        for extra in ([], ["--compose", "--monitoring"]):
            out = work / f"{stack}{'-compose' if extra else ''}"
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "infra",
                    "render",
                    "--stack",
                    stack,
                    "--out",
                    str(out),
                    "--secrets",
                    str(secrets_file),
                    *extra,
                ],
                cwd=ROOT,
                capture_output=True,
                timeout=120,
            )
            assert result.returncode == ExitStatus.OK, result.stderr.decode()
            texts[f"render {stack} {extra} output"] = result.stdout + result.stderr
            for path, content in read_tree(out).items():
                # The compose env files and the TLS private keys are where those credentials belong: 0600,
                # looked at apart.
                (carriers if path.endswith((".env", ".key")) else texts)[path] = content
        generated = yaml.safe_load(secrets_file.read_text())
        # certificates are public (rendered as tls/*.pem); private keys are credentials
        credentials.update(
            {
                f"{stack}:{k}": v
                for k, v in generated.items()
                if v not in TEST_SECRETS.values() and not is_certificate(v)
            }
        )
        assert secrets_file.stat().st_mode & 0o777 == 0o600
    return texts, carriers, credentials


def logs_through_probe(node) -> dict:
    """The node's log files, once a probe line logged now is in them: the node's logger writes in order, so
    every line logged before it (the logins above) is there too. Bounded."""
    node.ctl("rabbitmqctl", "eval", 'logger:info("hygiene probe").')
    deadline = time.monotonic() + 20
    while b"hygiene probe" not in b"".join((logs := read_tree(node.base / "log")).values()):
        assert time.monotonic() < deadline, "the node's log never showed the probe line"
        time.sleep(0.2)
    return logs


def test_no_tracked_file_holds_a_credential_but_the_fixture_that_defines_them(renders):
    _, _, credentials = renders
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
        .stdout.decode()
        .split("\0")
    )
    files = {name: (ROOT / name).read_bytes() for name in tracked if name and (ROOT / name).is_file()}
    assert len(files) > 100 and FIXTURE in files
    found = scan(files, credentials)
    assert {where for where, _ in found} == {FIXTURE}
    generated = {k: v for k, v in credentials.items() if k not in TEST_SECRETS}
    assert generated and scan(files, generated) == set()  # not even in the fixture


def test_no_rendered_file_or_render_output_holds_a_credential(renders):
    texts, carriers, credentials = renders
    assert sum(path.endswith("definitions.json") for path in texts) == 2 * len(SHIPPED)
    assert sum(path.endswith("docker-compose.yml") for path in texts) == len(SHIPPED)
    assert scan(texts, credentials) == set()
    assert not [path for path, text in texts.items() if PRIVATE_KEY in text]
    for path in carriers:
        assert Path(path).stat().st_mode & 0o777 == 0o600, path
    # the TLS stacks' private keys: 0600 files under tls/, twice per TLS stack (render, render --compose)
    keys = [path for path in carriers if path.endswith(".key")]
    assert len(keys) == 2 * 2 * 2 and all(PRIVATE_KEY in carriers[path] for path in keys)
    assert {k.split(":", 1)[1] for k in credentials if k.startswith("prod:")} >= {
        "tlsServerKey",
        "tlsClientKey",
        "tlsCaKey",
    }


def test_the_scan_finds_credentials_where_they_are(renders, tmp_path):
    """The control: the compose env files do carry the broker password (percent-encoded in the URL), and a
    credential planted in a rendered file, a log line or a tracked-file copy is found."""
    _, carriers, credentials = renders
    assert "rabbitmqWebPassword" in {key for _, key in scan(carriers, credentials)}
    planted = random_source.token_urlsafe(18) + "/+"
    texts = {"conf": b"listeners.tcp.default = 5672\n", "log": b"2026-01-01 [info] accepted\n"}
    assert scan(texts, {"planted": planted}) == set()
    texts["log"] += f"login with {urllib.parse.quote(planted, safe='')}\n".encode()
    texts["conf"] += planted.encode()
    assert scan(texts, {"planted": planted}) == {("log", "planted"), ("conf", "planted")}


def test_plan_json_holds_no_credential(capsys):
    for stack in SHIPPED:
        assert main(["plan", "--stack", stack, "--json"]) == ExitStatus.OK
        out = capsys.readouterr()
        assert '"resources"' in out.out
        assert scan({f"plan {stack}": (out.out + out.err).encode()}, TEST_SECRETS) == set()
        assert b"privateKeyPem (mock" not in (out.out + out.err).encode()  # the mocked keys stay masked


def test_no_tracked_file_holds_a_private_key():
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
        .stdout.decode()
        .split("\0")
    )
    holding = [
        name for name in tracked if name and (ROOT / name).is_file() and PRIVATE_KEY in (ROOT / name).read_bytes()
    ]
    assert holding == []


def test_a_tls_nodes_logs_hold_no_private_key_or_password_after_refused_handshakes(tmp_path):
    """prod (TLS only, mutual): good and refused clients; the log names failures, never key material."""
    from infra.render import certs

    with booted(stack="prod") as (node, rendered):
        pika.BlockingConnection(node.amqp_params("/", "web", rendered.password("web"))).close()
        impostor = certs.client_cert(certs.make_ca("another CA"), "app")
        (tmp_path / "i.pem").write_text(impostor.cert_pem)
        (tmp_path / "i.key").write_text(impostor.key_pem)
        refused = node.client_tls_context(cert=None)
        refused.load_cert_chain(str(tmp_path / "i.pem"), str(tmp_path / "i.key"))
        for context in (refused, node.client_tls_context(cert=None)):
            params = node.amqp_params("/", "web", rendered.password("web"), connection_attempts=1)
            params.ssl_options = pika.SSLOptions(context, "127.0.0.1")
            with pytest.raises(pika.exceptions.AMQPConnectionError):
                pika.BlockingConnection(params)
        logs = logs_through_probe(node)
        everything = b"".join(logs.values())
        assert PRIVATE_KEY not in everything
        key_bodies = {
            k: "".join(v.splitlines()[1:-1])[:64] for k, v in rendered.passwords.items() if "PRIVATE KEY" in v
        }
        assert len(key_bodies) == 3  # CA, server, client
        secrets = {k: v for k, v in rendered.passwords.items() if not is_certificate(v)}
        assert scan(logs, {**key_bodies, **{k: v for k, v in secrets.items() if k not in key_bodies}}) == set()
        assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (rendered.config_dir / "tls").glob("*.key"))


def test_a_nodes_logs_hold_no_credential_after_logins_and_failed_logins(tmp_path, capsys, monkeypatch):
    with booted(stack="dev") as (node, rendered):  # dev logs at debug level: the most it ever writes
        for user in rendered.plan.topology.users:
            password = rendered.password(user.name)
            for attempt in (password, password + "-wrong"):  # a wrong one embeds the right one
                params = pika.ConnectionParameters(
                    "127.0.0.1", node.ports.amqp, "/", pika.PlainCredentials(user.name, attempt), connection_attempts=1
                )
                try:
                    pika.BlockingConnection(params).close()
                except pika.exceptions.AMQPError:
                    pass
                requests.get(
                    f"http://127.0.0.1:{node.ports.management}/api/whoami", auth=(user.name, attempt), timeout=30
                )
        secrets_file = tmp_path / "dev.yaml"
        secrets_file.write_text(yaml.safe_dump(rendered.passwords))
        monkeypatch.setenv("RABBITMQ_PASSWORD", rendered.password("admin"))
        assert (
            main(
                [
                    "verify",
                    "--stack",
                    "dev",
                    "--management-url",
                    f"http://127.0.0.1:{node.ports.management}",
                    "--secrets",
                    str(secrets_file),
                ]
            )
            == ExitStatus.OK
        )
        out = capsys.readouterr()
        logs = logs_through_probe(node)
        everything = b"".join(logs.values())
        for user in rendered.plan.topology.users:  # the failed logins were logged, by name only
            assert f"PLAIN login refused: user '{user.name}'".encode() in everything
            assert f"HTTP access denied: user '{user.name}'".encode() in everything
        credentials = dict(rendered.passwords)
        assert scan({**logs, "verify output": (out.out + out.err).encode()}, credentials) == set()
