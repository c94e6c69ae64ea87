"""TLS on a real broker, booted from the rendered prod stack (AMQPS and HTTPS only, mutual TLS): a verified
client works; a plain client, a client with another CA's certificate, a client without a certificate and a
client that does not trust the stack's CA are refused; HTTPS management answers with the CA's verification
and plain HTTP is refused; the app (web, a real Celery worker, as they run in the containers) works over it."""

from __future__ import annotations

import re
import socket
import ssl
import uuid

import pika
import pytest
import requests

from infra.render import certs
from tests.support.rabbit_node import port_open
from tests.support.stacks import booted

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
TLS_ONLY = "broker:\n  tls: {enabled: true, plain_listeners: false, verify_peer: true}\n"


@pytest.fixture(scope="module")
def prod():
    with booted(stack="prod") as (node, rendered):
        assert rendered.plan.broker.tls and not rendered.plan.broker.plain  # what prod ships
        yield node, rendered


def amqp_greeting(node, context: ssl.SSLContext, server_hostname: str = "127.0.0.1") -> bytes:
    """Open AMQPS and send the protocol header: the broker's Connection.Start frame once the handshake is
    accepted. Raises (or returns b"") when the broker refuses the client, which TLS 1.3 may report only at
    the first read."""
    with socket.create_connection(("127.0.0.1", node.ports.amqps), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(AMQP_HEADER)
            return tls.recv(7)


def refused(node, context: ssl.SSLContext, server_hostname: str = "127.0.0.1") -> bool:
    try:
        return amqp_greeting(node, context, server_hostname) == b""
    except (ssl.SSLError, ConnectionError, socket.timeout):
        return True


def context_from(issued_ca: certs.Issued | None, client: certs.Issued | None, tmp_path, trust: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=trust)
    if client is not None:
        (tmp_path / "c.pem").write_text(client.cert_pem)
        (tmp_path / "c.key").write_text(client.key_pem)
        context.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    return context


def test_a_verified_client_publishes_with_confirms_and_consumes(prod):
    node, rendered = prod
    # the admin: a probe queue of its own (each app user may declare only Celery's own objects)
    connection = pika.BlockingConnection(node.amqp_params("/", "admin", rendered.password("admin")))
    try:
        channel = connection.channel()
        channel.confirm_delivery()  # basic_publish raises unless the broker confirms
        queue = channel.queue_declare(f"tls-probe-{uuid.uuid4().hex}", exclusive=True).method.queue
        body = b"over tls"
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        method, _, received = channel.basic_get(queue, auto_ack=True)
        assert method is not None and received == body
        # the broker's view of this connection: TLS, with the app's client certificate
        api = node.api("admin", rendered.password("admin"))
        mine = [
            c
            for c in api.get_when("connections", lambda cs: any(c.get("user") == "admin" for c in cs))
            if c.get("user") == "admin"
        ]
        assert mine and all(c["ssl"] and c["ssl_protocol"] in ("tlsv1.2", "tlsv1.3") for c in mine)
        assert all("CN=app" in c["peer_cert_subject"] for c in mine)
    finally:
        connection.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_are_served_and_nothing_older_is_configured(prod, version):
    node, _ = prod
    context = node.client_tls_context()
    context.minimum_version = context.maximum_version = version
    assert amqp_greeting(node, context).startswith(b"\x01\x00\x00")
    # the node's effective options (this client's OpenSSL may not even offer older versions to test with)
    options = node.ctl("rabbitmqctl", "eval", "application:get_env(rabbit, ssl_options).")
    versions = re.search(r"\{versions,\[([^\]]*)\]\}", re.sub(r"\s", "", options)).group(1)
    assert set(versions.split(",")) == {"'tlsv1.2'", "'tlsv1.3'"}
    assert "{verify,verify_peer}" in options and "{fail_if_no_peer_cert,true}" in options


def test_a_plain_amqp_client_is_refused(prod):
    node, rendered = prod
    assert not port_open("127.0.0.1", node.ports.amqp)  # listeners.tcp = none
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1",
                node.ports.amqp,
                "/",
                pika.PlainCredentials("web", rendered.password("web")),
                connection_attempts=1,
                socket_timeout=5,
            )
        )
    # and plain AMQP spoken to the AMQPS port gets no AMQP answer
    with socket.create_connection(("127.0.0.1", node.ports.amqps), timeout=10) as raw:
        raw.sendall(AMQP_HEADER)
        try:
            answer = raw.recv(7)
        except (ConnectionError, socket.timeout):
            answer = b""
        assert not answer.startswith(b"\x01\x00\x00")  # no Connection.Start frame


def test_the_apps_certificate_is_accepted_at_the_tls_layer(prod):
    node, _ = prod
    assert amqp_greeting(node, node.client_tls_context()).startswith(b"\x01\x00\x00")  # Connection.Start


def test_a_client_with_a_certificate_from_another_ca_is_refused(prod, tmp_path):
    node, _ = prod
    other_ca = certs.make_ca("another CA")
    impostor = certs.client_cert(other_ca, "app")  # the right name, the wrong issuer
    context = context_from(other_ca, impostor, tmp_path, trust=str(node.tls_dir / "ca.pem"))
    assert refused(node, context)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1",
                node.ports.amqps,
                "/",
                pika.PlainCredentials("app", "irrelevant"),
                ssl_options=pika.SSLOptions(context, "127.0.0.1"),
                connection_attempts=1,
                socket_timeout=5,
            )
        )


def test_a_client_without_a_certificate_is_refused(prod):
    node, rendered = prod
    assert refused(node, node.client_tls_context(cert=None))
    params = node.amqp_params("/", "web", rendered.password("web"), connection_attempts=1, socket_timeout=5)
    params.ssl_options = pika.SSLOptions(node.client_tls_context(cert=None), "127.0.0.1")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)


def test_a_client_verifies_the_broker_and_its_name(prod, tmp_path):
    node, _ = prod
    # a client that trusts another CA refuses the broker's certificate
    other_ca = certs.make_ca("another CA")
    (tmp_path / "other-ca.pem").write_text(other_ca.cert_pem)
    untrusting = ssl.create_default_context(cafile=str(tmp_path / "other-ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        amqp_greeting(node, untrusting)
    # a name that is not among the certificate's SANs is refused by the client's hostname check
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        amqp_greeting(node, node.client_tls_context(), server_hostname="broker.example.com")
    # every SAN the plan lists is in the certificate
    assert amqp_greeting(node, node.client_tls_context(), server_hostname="localhost").startswith(b"\x01")


def test_https_management_answers_with_the_cas_verification_and_plain_http_is_refused(prod):
    node, rendered = prod
    base = f"https://127.0.0.1:{node.ports.management_tls}/api"
    ca = str(node.tls_dir / "ca.pem")
    whoami = requests.get(f"{base}/whoami", auth=("admin", rendered.password("admin")), verify=ca, timeout=30)
    assert whoami.status_code == 200 and whoami.json()["name"] == "admin"
    with pytest.raises(requests.exceptions.SSLError):  # the system's CAs do not know the stack's CA
        requests.get(f"{base}/whoami", auth=("admin", rendered.password("admin")), verify=True, timeout=30)
    assert not port_open("127.0.0.1", node.ports.management)  # no plain management listener
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{node.ports.management_tls}/api/whoami", timeout=10)
    # Prometheus too is served over TLS only
    metrics = requests.get(f"https://127.0.0.1:{node.ports.prometheus}/metrics", verify=ca, timeout=30)
    assert metrics.status_code == 200 and "rabbitmq_" in metrics.text


@pytest.mark.parametrize("overlay", [TLS_ONLY])
def test_the_app_works_over_tls_web_and_a_real_worker(overlay, tmp_path):
    """The reliability harness's deployment with TLS on: bin/web (migrate, gunicorn) and a worker started
    with the plan's command line, configured only by the environment and celery.json, run a sync job."""
    from sample_riot.server import FakeRiot
    from tests.app.deployment import deploy

    (tmp_path / "tls.yaml").write_text(overlay)
    riot = FakeRiot().start()
    try:
        deployment, cleanup = deploy(riot, overlays=(tmp_path / "tls.yaml",))
        try:
            assert deployment.broker_url.startswith("amqps://")
            assert not port_open("127.0.0.1", deployment.node.ports.amqp)
            riot.add_player("Secure", "EUW", "puuid-secure", ["EUW1_9001", "EUW1_9002"])
            deployment.start_worker("sync")
            deployment.start_worker("matches")
            job = deployment.wait_job(deployment.sync("Secure", "EUW", "euw1"), 90, matches_processed=2)
            assert (job["status"], job["matches_failed"]) == ("complete", 0)
            health = requests.get(deployment.url("/healthz"), timeout=30).json()
            assert health["broker"] == "ok"
            connections = deployment.node.api("admin", deployment.rendered.password("admin")).get("connections")
            app_connections = [c for c in connections if c["user"] != "admin"]  # web's and the workers' users
            assert app_connections and all(c["ssl"] and c["peer_cert_subject"] for c in app_connections)
        finally:
            cleanup()
    finally:
        riot.close()


def test_a_real_prometheus_scrapes_the_tls_only_endpoint_with_the_stacks_ca(prod, tmp_path):
    """The rendered prometheus.yml (scheme https, the CA beside it) against the node: both jobs up."""
    import yaml

    from infra.cli.main import ExitStatus, main
    from tests.support.prometheus import running_prometheus
    from tests.support.waiting import wait_for

    node, rendered = prod
    (tmp_path / "ports.yaml").write_text(node.ports.overlay() + "monitoring:\n  scrape_interval: 1s\n")
    secrets = tmp_path / "secrets.yaml"  # the node's own certificates: the same CA
    secrets.write_text(yaml.safe_dump(rendered.passwords))
    secrets.chmod(0o600)
    out = tmp_path / "out"
    assert (
        main(
            [
                "render",
                "--stack",
                "prod",
                "--overlay",
                str(tmp_path / "ports.yaml"),
                "--out",
                str(out),
                "--secrets",
                str(secrets),
                "--monitoring",
            ]
        )
        == ExitStatus.OK
    )
    jobs = yaml.safe_load((out / "prometheus.yml").read_text())["scrape_configs"]
    assert all(j["scheme"] == "https" and j["tls_config"] == {"ca_file": "tls/ca.pem"} for j in jobs)
    with running_prometheus(out / "prometheus.yml", tmp_path) as base:

        def up():
            try:
                result = requests.get(f"{base}/api/v1/query", params={"query": "up"}, timeout=10).json()["data"][
                    "result"
                ]
            except (requests.RequestException, ValueError, KeyError):
                return None
            return {r["metric"]["job"]: r["value"][1] for r in result} == {"rabbitmq": "1", "rabbitmq-queues": "1"}

        wait_for(up, 60, "both scrape jobs up over TLS", interval=0.5)


def test_verify_reads_the_https_management_api_with_the_stacks_ca(prod, tmp_path, capsys):
    import yaml

    from infra.cli.main import ExitStatus, main

    node, rendered = prod
    (tmp_path / "ports.yaml").write_text(node.ports.overlay())
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(rendered.passwords))
    secrets.chmod(0o600)
    url = f"https://127.0.0.1:{node.ports.management_tls}"
    common = [
        "verify",
        "--stack",
        "prod",
        "--overlay",
        str(tmp_path / "ports.yaml"),
        "--management-url",
        url,
        "--secrets",
        str(secrets),
    ]
    assert main(common + ["--ca-cert", str(node.tls_dir / "ca.pem")]) == ExitStatus.OK
    capsys.readouterr()
    assert main(common) == ExitStatus.ERROR  # the system's CAs do not know the stack's CA
    assert "TLS verification failed" in capsys.readouterr().err
