"""TLS in the pure layer: certificates from `cryptography`, the rendered rabbitmq.conf and celery.json, what
`render` writes and keeps, and how `diff` classifies TLS changes. The real broker's side: tests/broker/test_tls.py."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from infra.definition.load import load_definition, require
from infra.ops import changes
from infra.plan.plan import build_plan
from infra.render import certs
from infra.render import files as render
from tests.support.stacks import TEST_SECRETS


def plan_of(stack: str = "prod", overlay: str | None = None, tmp_path=None):
    overlays = ()
    if overlay:
        (tmp_path / "overlay.yaml").write_text(overlay)
        overlays = (tmp_path / "overlay.yaml",)
    return build_plan(require(load_definition(stack=stack, overlays=overlays)))


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_issued_certificates_chain_to_the_ca_with_the_plans_names_and_uses():
    tls = plan_of().broker.tls
    issued = certs.issue(tls, {})
    s = tls.secrets
    assert set(issued) == {s.ca_cert, s.ca_key, s.server_cert, s.server_key, s.client_cert, s.client_key}
    ca, server, client = (load(issued[k]) for k in (s.ca_cert, s.server_cert, s.client_cert))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf in (server, client):
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["rabbitmq", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = lambda c: list(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)  # noqa: E731
    assert eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH] and eku(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.subject.rfc4514_string() == "CN=app"


def test_issue_keeps_what_it_has_and_reissues_only_what_is_missing():
    tls = plan_of().broker.tls
    s = tls.secrets
    first = certs.issue(tls, {})
    assert certs.issue(tls, first) == {}
    without_server = {k: v for k, v in first.items() if k != s.server_key}
    again = certs.issue(tls, without_server)
    assert set(again) == {s.server_cert, s.server_key}
    load(again[s.server_cert]).verify_directly_issued_by(load(first[s.ca_cert]))
    without_ca = {k: v for k, v in first.items() if k != s.ca_key}
    assert set(certs.issue(tls, without_ca)) == set(first)  # a new CA: every certificate with it


def test_rendered_conf_for_tls_only_mutual_tls():
    conf = render.rabbitmq_conf(plan_of())
    settings = dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line and not line.startswith("#"))
    assert settings["listeners.tcp"] == "none" and settings["listeners.ssl.1"] == "0.0.0.0:5671"
    assert not any(k.startswith(("listeners.tcp.", "management.tcp.", "prometheus.tcp.")) for k in settings)
    assert settings["ssl_options.cacertfile"] == "/etc/rabbitmq/tls/ca.pem"
    assert settings["ssl_options.certfile"] == "/etc/rabbitmq/tls/server.pem"
    assert settings["ssl_options.keyfile"] == "/etc/rabbitmq/tls/server.key"
    assert (settings["ssl_options.verify"], settings["ssl_options.fail_if_no_peer_cert"]) == ("verify_peer", "true")
    assert {settings["ssl_options.versions.1"], settings["ssl_options.versions.2"]} == {"tlsv1.2", "tlsv1.3"}
    assert settings["management.ssl.port"] == "15671" and settings["prometheus.ssl.port"] == "15692"


def test_rendered_conf_with_plain_listeners_kept_and_without_client_certificates(tmp_path):
    plan = plan_of("staging", "broker:\n  tls: {plain_listeners: true, verify_peer: false}\n", tmp_path)
    conf = render.rabbitmq_conf(plan)
    assert "listeners.tcp.1 = 0.0.0.0:5672" in conf and "listeners.ssl.1 = 0.0.0.0:5671" in conf
    assert "management.tcp.port = 15672" in conf and "management.ssl.port = 15671" in conf
    assert "prometheus.tcp.port = 15692" in conf and "prometheus.ssl" not in conf
    assert "ssl_options.verify = verify_none" in conf and "fail_if_no_peer_cert = false" in conf


def test_the_app_gets_amqps_and_the_paths_of_its_tls_files_never_their_contents():
    plan = plan_of()
    assert plan.celery["broker_tls"] == {
        "ca_certs": "/etc/app/tls/ca.pem",
        "certfile": "/etc/app/tls/client.pem",
        "keyfile": "/etc/app/tls/client.key",
    }
    web = next(s for s in plan.services if s.name == "web")
    url = dict(web.secret_env)["CELERY_BROKER_URL"]
    assert url.template.startswith("amqps://web:{secret}@rabbitmq:5671/")
    assert "broker_tls" not in plan_of("dev").celery


def test_the_apps_settings_verify_the_broker(tmp_path):
    import ssl

    from config.topology import celery_settings

    settings = celery_settings(plan_of().celery)
    assert settings["broker_use_ssl"] == {
        "ca_certs": "/etc/app/tls/ca.pem",
        "certfile": "/etc/app/tls/client.pem",
        "keyfile": "/etc/app/tls/client.key",
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": None,
    }
    assert "broker_use_ssl" not in celery_settings(plan_of("dev").celery)


def render_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "infra", "render", *args], capture_output=True, text=True, timeout=60)


def test_render_issues_once_keeps_the_keys_0600_and_reuses_them(tmp_path):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(TEST_SECRETS))
    secrets.chmod(0o600)
    for out in ("first", "second"):
        result = render_cli(tmp_path, "--stack", "prod", "--out", str(tmp_path / out), "--secrets", str(secrets))
        assert result.returncode == 0, result.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "first" / "tls").iterdir()}
    assert modes == {
        "ca.pem": 0o644,
        "server.pem": 0o644,
        "client.pem": 0o644,
        "server.key": 0o600,
        "client.key": 0o600,
    }
    for name in modes:  # the second render reuses what the first issued and kept in the secrets file
        assert (tmp_path / "first" / "tls" / name).read_text() == (tmp_path / "second" / "tls" / name).read_text()
    kept = yaml.safe_load(secrets.read_text())
    assert {"tlsCaKey", "tlsServerKey", "tlsClientKey"} <= set(kept) and secrets.stat().st_mode & 0o777 == 0o600


def test_render_with_a_provided_ca_and_a_missing_pem_writes_nothing(tmp_path):
    (tmp_path / "provided.yaml").write_text("broker:\n  tls: {ca: provided}\n")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(TEST_SECRETS))
    result = render_cli(
        tmp_path,
        "--stack",
        "prod",
        "--overlay",
        str(tmp_path / "provided.yaml"),
        "--out",
        str(tmp_path / "out"),
        "--secrets",
        str(secrets),
    )
    assert result.returncode == 2
    assert "broker.tls.secrets.ca_cert: TLS secret 'tlsCaCert' is not set: with ca: provided" in result.stderr
    assert not (tmp_path / "out").exists()


def test_diff_a_new_san_restarts_the_broker_only(tmp_path):
    found = changes.classify(plan_of(), plan_of("prod", "broker:\n  tls: {server_names: [mq.example.com]}\n", tmp_path))
    assert [(c.impact, c.subject) for c in found] == [(changes.Impact.RESTART, "broker")]
    assert "TLS server_names" in found[0].what and "re-issued" in found[0].what


def test_diff_new_certificate_lifetimes_restart_the_broker_and_recreate_the_app(tmp_path):
    found = changes.classify(plan_of(), plan_of("prod", "broker:\n  tls: {validity_days: 90}\n", tmp_path))
    subjects = {c.subject: c for c in found}
    assert subjects["broker"].impact is changes.Impact.RESTART
    assert {s for s in subjects if s.startswith("service ")} == {
        "service web",
        "service beat",
        "service worker-sync",
        "service worker-matches",
        "service worker-background",
    }
    assert "client certificate is re-issued" in subjects["service web"].what


def test_diff_turning_tls_on(tmp_path):
    base = plan_of("staging", "broker:\n  tls: {enabled: false}\n", tmp_path)
    found = {c.subject: c for c in changes.classify(base, plan_of("staging"))}
    assert found["broker"].impact is changes.Impact.RESTART and "listeners.tcp unset → none" in found["broker"].what
    assert "secret CELERY_BROKER_URL" in found["service web"].what and "celery.json" in found["service web"].what
    assert "service postgres" not in found


@pytest.mark.parametrize("names, ok", [(["mq.example.com", "10.0.0.5"], True), (["bad name"], False)])
def test_server_names_are_checked(tmp_path, names, ok):
    (tmp_path / "names.yaml").write_text(yaml.safe_dump({"broker": {"tls": {"server_names": names}}}))
    loaded = load_definition(stack="prod", overlays=(tmp_path / "names.yaml",))
    assert loaded.ok is ok
