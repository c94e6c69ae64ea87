"""TLS in the Pulumi program under mocks: pulumi_tls resources and their parents, where the PEMs go, that
every private key travels only as a secret, the provider's HTTPS endpoint, and what a TLS change touches."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.pulumi import program
from infra.pulumi.preview import run
from infra.pulumi.stack_config import MissingSecret
from tests.support.stacks import TEST_SECRETS
from tests.unit.program.test_program import is_secret, unwrap, with_config

TLS = "tls:index/"
KEY_MARK = "privateKeyPem (mock"  # what the mocked PrivateKey resources compute


def definition(stack: str = "prod", overlay: str | None = None, tmp_path: Path | None = None):
    overlays = ()
    if overlay:
        (tmp_path / "overlay.yaml").write_text(overlay)
        overlays = (tmp_path / "overlay.yaml",)
    return require(load_definition(stack=stack, overlays=overlays))


def deployed(d, secrets: dict = TEST_SECRETS):
    with_config(secrets)
    try:
        monitor, _ = run(lambda: program.main(d), stack=d.environment)
    finally:
        pulumi.runtime.set_all_config({})
    return monitor


def uploads(resource) -> dict:
    value = resource.inputs.get("uploads")
    return {u["file"]: u for u in unwrap(value) or []}


def plain_strings(value, inside_secret: bool = False):
    """Every string of an input that is not inside a secret."""
    if is_secret(value):
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from plain_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from plain_strings(v)
    elif isinstance(value, str):
        yield value


def test_the_stacks_ca_issues_the_broker_and_app_certificates():
    d = definition()
    plan = build_plan(d)
    monitor = deployed(d)
    assert monitor.named("tls").type == "rabbitmq-celery:tls:Certificates"
    keys = monitor.of_type(f"{TLS}privateKey:PrivateKey")
    assert {k.name for k in keys} == {"tls-ca-key", "tls-server-key", "tls-client-key"}
    assert all(k.inputs == {"algorithm": "ECDSA", "ecdsaCurve": "P256"} and k.parent_name == "tls" for k in keys)
    ca = monitor.named("tls-ca")
    assert ca.inputs["isCaCertificate"] is True and ca.parent_name == "tls"
    assert ca.inputs["subject"]["commonName"] == "rabbitmq-celery prod CA"
    assert "cert_signing" in ca.inputs["allowedUses"]
    server_csr = monitor.named("tls-server-csr").inputs
    assert server_csr["dnsNames"] == ["rabbitmq", "localhost"] and server_csr["ipAddresses"] == ["127.0.0.1"]
    assert server_csr["subject"]["commonName"] == "rabbitmq"
    assert list(plan.broker.tls.server_names) == ["rabbitmq", "localhost", "127.0.0.1"]
    client_csr = monitor.named("tls-client-csr").inputs
    assert client_csr["subject"]["commonName"] == "app" and "dnsNames" not in client_csr
    server, client = monitor.named("tls-server").inputs, monitor.named("tls-client").inputs
    assert "server_auth" in server["allowedUses"] and "client_auth" in client["allowedUses"]
    assert server["validityPeriodHours"] == 365 * 24 and server["earlyRenewalHours"] == 30 * 24
    # signed by the CA: its key and certificate are the signer's inputs, the key as a secret
    for signed in (server, client):
        assert is_secret(signed["caPrivateKeyPem"]) and KEY_MARK in unwrap(signed["caPrivateKeyPem"])
        assert "tls-ca certPem" in signed["caCertPem"]


def test_the_broker_gets_its_certificate_and_key_and_the_app_its_client_certificate():
    monitor = deployed(definition())
    broker = uploads(monitor.named("broker-container"))
    assert "tls-ca certPem" in unwrap(broker["/etc/rabbitmq/tls/ca.pem"]["content"])
    assert "tls-server certPem" in unwrap(broker["/etc/rabbitmq/tls/server.pem"]["content"])
    key = broker["/run/secrets/rabbitmq/tls-server.key"]  # staged root-only, installed for rabbitmq at start
    # a secret inside a list makes the whole list secret, as the engine stores it
    assert is_secret(monitor.named("broker-container").inputs["uploads"]) and "tls-server-key" in unwrap(key["content"])
    assert key["permissions"] == "0400" and "/etc/rabbitmq/tls/server.key" not in broker
    script = monitor.named("broker-container").inputs["entrypoints"][2]
    assert (
        "install -D -o rabbitmq -g rabbitmq -m 0600 /run/secrets/rabbitmq/tls-server.key /etc/rabbitmq/tls/server.key"
        in script
    )
    apps = [r for r in monitor.of_type("docker:index/container:Container") if r.parent_name == "app"]
    runs_app = [r for r in apps if not r.name.endswith("postgres")]
    assert runs_app
    for container in runs_app:
        files = uploads(container)
        assert set(files) == {
            "/etc/app/celery.json",
            "/etc/app/tls/ca.pem",
            "/etc/app/tls/client.pem",
            "/run/secrets/app/tls-client.key",
        }, container.name
        client_key = files["/run/secrets/app/tls-client.key"]
        assert is_secret(container.inputs["uploads"]) and "tls-client-key" in unwrap(client_key["content"])
        assert client_key["permissions"] == "0400"
        # started as root to install the key for the app's user (0600), then dropped to that user
        sh, flag, script, zero = container.inputs["entrypoints"]
        assert (sh, flag, zero, container.inputs["user"]) == ("sh", "-c", "sh", "0")
        assert "install -D -o 10001 -g 10001 -m 0600 /run/secrets/app/tls-client.key /etc/app/tls/client.key" in script
        assert script.endswith('exec setpriv --reuid=10001 --regid=10001 --clear-groups "$@"')
        assert container.inputs["command"]  # an entry point of its own drops the image's CMD
        env = dict(e.split("=", 1) for e in unwrap(container.inputs["envs"]))
        user = container.name.removeprefix("app-")  # each service as its own user
        assert env["CELERY_BROKER_URL"].startswith(f"amqps://{user}:") and "@rabbitmq:5671/" in env["CELERY_BROKER_URL"]
    postgres = [r for r in apps if r.name.endswith("postgres")]
    assert all(not uploads(r) for r in postgres)  # the database gets no broker credential


def test_no_private_key_is_ever_a_plain_input_or_output():
    monitor = deployed(definition())
    for r in monitor.registered:
        for text in plain_strings(r.inputs):
            assert KEY_MARK not in text, r.name
    for text in plain_strings(monitor.outputs):
        assert KEY_MARK not in text


def test_the_provider_talks_https_and_verifies_the_stacks_ca(ca_dir):
    monitor = deployed(definition())
    provider = monitor.named("broker-api").inputs
    assert provider["endpoint"] == "https://127.0.0.1:15671"
    assert provider["cacertFile"] == str(ca_dir / "prod" / "ca.pem")
    assert "tls-ca certPem" in (ca_dir / "prod" / "ca.pem").read_text()
    assert "tls-ca certPem" in unwrap(monitor.outputs["ca_cert"])
    assert unwrap(monitor.outputs["amqp_url"]).startswith("amqps://") and ":5671/" in unwrap(
        monitor.outputs["amqp_url"]
    )


def test_without_tls_nothing_of_it_is_declared():
    monitor = deployed(definition("dev"))
    assert not [r for r in monitor.registered if r.type.startswith(TLS) or r.name == "tls"]
    provider = monitor.named("broker-api").inputs
    assert provider["endpoint"] == "http://127.0.0.1:15672" and "cacertFile" not in provider
    assert not any("/tls/" in f for f in uploads(monitor.named("broker-container")))


PROVIDED = "broker:\n  tls: {ca: provided}\n"
PEMS = {
    "tlsCaCert": "CA PEM",
    "tlsServerCert": "SERVER PEM",
    "tlsServerKey": "SERVER KEY",
    "tlsClientCert": "CLIENT PEM",
    "tlsClientKey": "CLIENT KEY",
}


def test_provided_certificates_come_from_stack_config_secrets(tmp_path):
    d = definition(overlay=PROVIDED, tmp_path=tmp_path)
    monitor = deployed(d, {**TEST_SECRETS, **PEMS})
    assert not monitor.of_type(f"{TLS}privateKey:PrivateKey")  # nothing generated
    broker = uploads(monitor.named("broker-container"))
    assert unwrap(broker["/etc/rabbitmq/tls/server.pem"]["content"]) == "SERVER PEM"
    assert is_secret(monitor.named("broker-container").inputs["uploads"])
    assert unwrap(broker["/run/secrets/rabbitmq/tls-server.key"]["content"]) == "SERVER KEY"
    web = uploads(monitor.named("app-web"))
    assert unwrap(web["/run/secrets/app/tls-client.key"]["content"]) == "CLIENT KEY"
    for r in monitor.registered:
        for text in plain_strings(r.inputs):
            assert "SERVER KEY" not in text and "CLIENT KEY" not in text, r.name


def test_provided_certificates_missing_from_stack_config_stop_the_program(tmp_path):
    d = definition(overlay=PROVIDED, tmp_path=tmp_path)
    with pytest.raises(MissingSecret, match="tlsCaCert, tlsServerCert, tlsServerKey, tlsClientCert, tlsClientKey"):
        deployed(d, {**TEST_SECRETS, **{k: v for k, v in PEMS.items() if k == "nothing"}})


def changed(before, after) -> set[str]:
    """Names of the resources whose inputs differ between two runs (secrets unwrapped)."""
    a = {r.name: r.inputs for r in before.registered}
    b = {r.name: r.inputs for r in after.registered}
    assert a.keys() == b.keys()

    def plain(value):
        if is_secret(value):
            return plain(unwrap(value))
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {name for name in a if plain(a[name]) != plain(b[name])}


@pytest.mark.parametrize(
    "overlay, expected",
    [
        # a new SAN: the server certificate is re-issued and the broker replaced; the app keeps its certificate
        ("broker:\n  tls: {server_names: [broker.internal]}\n", {"tls-server-csr", "tls-server", "broker-container"}),
        # mutual TLS off: rabbitmq.conf alone
        ("broker:\n  tls: {verify_peer: false}\n", {"broker-container"}),
        # shorter-lived certificates: both leaves re-issued, the broker and every app container re-created
        (
            "broker:\n  tls: {validity_days: 90}\n",
            {
                "tls-server",
                "tls-client",
                "broker-container",
                "app-web",
                "app-beat",
                "app-worker-sync",
                "app-worker-matches",
                "app-worker-background",
            },
        ),
    ],
)
def test_a_tls_change_touches_only_what_it_must(tmp_path, overlay, expected):
    before = deployed(definition())
    after = deployed(definition(overlay=overlay, tmp_path=tmp_path))
    assert changed(before, after) == expected


def test_inter_node_tls_issues_a_certificate_per_node_and_each_container_gets_only_its_own(tmp_path):
    monitor = deployed(definition("staging", "broker:\n  nodes: 3\n  tls: {enabled: true}\n", tmp_path))
    for index in (1, 2, 3):
        csr = monitor.named(f"tls-node-{index}-csr").inputs
        assert csr["subject"]["commonName"] == f"rabbitmq-{index}" and csr["dnsNames"] == [f"rabbitmq-{index}"]
        assert {"server_auth", "client_auth"} <= set(monitor.named(f"tls-node-{index}").inputs["allowedUses"])
        container = monitor.named(f"broker-{index}-container")
        files = uploads(container)
        own = {f for f in files if "node-" in f or "inter_node_tls-" in f}
        assert own == {
            f"/etc/rabbitmq/tls/node-{index}.pem",
            f"/run/secrets/rabbitmq/tls-node-{index}.key",  # installed 0600 for rabbitmq by the entry point
            f"/etc/rabbitmq/inter_node_tls-{index}.config",
        }
        key = files[f"/run/secrets/rabbitmq/tls-node-{index}.key"]
        assert f"tls-node-{index}-key" in unwrap(key["content"]) and key["permissions"] == "0400"
        assert (
            f"-m 0600 /run/secrets/rabbitmq/tls-node-{index}.key /etc/rabbitmq/tls/node-{index}.key"
            in (container.inputs["entrypoints"][2])
        )
        args = f"-proto_dist inet_tls -ssl_dist_optfile /etc/rabbitmq/inter_node_tls-{index}.config"
        env = unwrap(container.inputs["envs"])
        assert f"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS={args}" in env
        assert f"RABBITMQ_CTL_ERL_ARGS={args} -kernel net_setuptime 20" in env
