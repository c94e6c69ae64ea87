"""Inter-node TLS (`broker.tls.inter_node`) in the pure layer: when it is on, each node's certificate from the
stack's CA, the rendered options files and flags for every target (compose, the Pulumi program's Broker,
Kubernetes), what `render` refuses in provided certificates, and what `diff` says. The real nodes' side:
tests/broker/test_inter_node_tls.py."""

from __future__ import annotations

import re

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from infra.cli.main import main
from infra.definition.load import load_definition, require
from infra.ops import changes
from infra.ops.join_refusals import join_refusals
from infra.plan.plan import build_plan, files_of_node
from infra.pulumi.components.broker import node_env, uploads
from infra.render import certs, compose, kubernetes
from infra.render import files as render
from tests.support.stacks import TEST_SECRETS
from tests.unit.test_kubernetes import _errors

CLUSTER_TLS = "broker:\n  nodes: 3\n  tls: {enabled: true}\n"


def plan_of(tmp_path, overlay: str, stack: str = "staging"):
    path = tmp_path / "overlay.yaml"
    path.write_text(overlay)
    return build_plan(require(load_definition(stack=stack, overlays=(path,))))


def issued(plan) -> dict[str, str]:
    return {**TEST_SECRETS, **certs.issue(plan.broker.tls, {})}


@pytest.mark.parametrize(
    ("overlay", "on"),
    [
        (CLUSTER_TLS, True),  # the default: TLS on a cluster
        ("broker:\n  nodes: 3\n  tls: {enabled: true, inter_node: false}\n", False),
        ("broker:\n  nodes: 1\n  tls: {enabled: true}\n", False),  # one node: no peer
        ("broker:\n  nodes: 3\n  tls: {enabled: false}\n", False),
    ],
)
def test_on_by_default_whenever_tls_is_on_and_there_is_more_than_one_node(tmp_path, overlay, on):
    tls = plan_of(tmp_path, overlay).broker.tls
    assert bool(tls and tls.inter_node) is on


def test_each_node_gets_a_certificate_of_its_own_for_its_host_name_from_the_stacks_ca(tmp_path):
    tls = plan_of(tmp_path, CLUSTER_TLS).broker.tls
    values = certs.issue(tls, {})
    ca = x509.load_pem_x509_certificate(values[tls.secrets.ca_cert].encode())
    keys = set()
    for index in (1, 2, 3):
        cert_key, key_key = tls.node_secret_keys(index).values()
        assert (cert_key, key_key) == (f"tlsNodeCert{index}", f"tlsNodeKey{index}")
        cert = x509.load_pem_x509_certificate(values[cert_key].encode())
        assert certs.names_of(values[cert_key]) == [f"rabbitmq-{index}"]
        cert.verify_directly_issued_by(ca)
        uses = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(uses) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}  # it serves and connects
        keys.add(values[key_key])
    assert len(keys) == 3
    assert certs.issue(tls, values) == {}  # kept on the next render


def test_with_hosts_a_node_certificate_names_its_hosts_address_too(tmp_path):
    hosts = "".join(f"    - {{docker: 'ssh://d@10.0.0.1{i}', address: 10.0.0.1{i}}}\n" for i in (1, 2, 3))
    tls = plan_of(tmp_path, CLUSTER_TLS + f"  hosts:\n{hosts}").broker.tls
    assert tls.node_names == (("rabbitmq-1", "10.0.0.11"), ("rabbitmq-2", "10.0.0.12"), ("rabbitmq-3", "10.0.0.13"))


def test_each_options_file_names_its_own_node_and_verifies_peers_both_ways(tmp_path):
    plan = plan_of(tmp_path, CLUSTER_TLS)
    files = render.config_files(plan)
    for index in (1, 2, 3):
        text = files[f"inter_node_tls-{index}.config"]
        server, client = text.split("{client,")
        for side in (server, client):
            assert f'{{certfile, "/etc/rabbitmq/tls/node-{index}.pem"}}' in side
            assert f'{{keyfile, "/etc/rabbitmq/tls/node-{index}.key"}}' in side
            assert '{cacertfile, "/etc/rabbitmq/tls/ca.pem"}' in side and "{verify, verify_peer}" in side
        assert "{fail_if_no_peer_cert, true}" in server  # a server-side option: Erlang's client has none
        args = f"-proto_dist inet_tls -ssl_dist_optfile /etc/rabbitmq/inter_node_tls-{index}.config"
        assert plan.broker.tls.dist_env(index) == {
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": args,
            # the CLI tools (and the health check) speak TLS distribution too, given longer to set it up
            "RABBITMQ_CTL_ERL_ARGS": f"{args} -kernel net_setuptime 20",
        }
    assert render.file_mode("inter_node_tls-1.config") == 0o644  # paths only
    tls_files = render.tls_files(plan, issued(plan))
    assert {"tls/node-1.pem", "tls/node-1.key", "tls/node-3.key"} <= set(tls_files)
    assert render.file_mode("tls/node-2.key") == 0o600


def test_a_docker_node_gets_its_own_key_and_flags_and_no_other_nodes(tmp_path):
    plan = plan_of(tmp_path, CLUSTER_TLS)
    values = issued(plan)
    files = {**render.config_files(plan), **render.tls_files(plan, values)}
    for index in (0, 1, 2):
        own = files_of_node(files, index + 1)
        node_files = {n for n in own if re.search(r"node-\d|inter_node_tls-\d", n)}
        assert node_files == {
            f"tls/node-{index + 1}.pem",
            f"tls/node-{index + 1}.key",
            f"inter_node_tls-{index + 1}.config",
        }
        ctl = f"RABBITMQ_CTL_ERL_ARGS=-proto_dist inet_tls -ssl_dist_optfile /etc/rabbitmq/inter_node_tls-{index + 1}.config"
        assert any(e.startswith(ctl) for e in node_env(plan.broker, index))
        uploaded, entrypoint = uploads(own)
        upload = {u.file: u for u in uploaded}  # the key staged root-only, installed for rabbitmq by the entry point
        assert upload[f"/run/secrets/rabbitmq/tls-node-{index + 1}.key"].permissions == "0400"
        staged = f"/run/secrets/rabbitmq/tls-node-{index + 1}.key /etc/rabbitmq/tls/node-{index + 1}.key"
        assert f"install -D -o rabbitmq -g rabbitmq -m 0600 {staged}" in entrypoint[2]


def test_compose_gives_each_node_its_options_file_its_own_key_and_the_flags(tmp_path):
    plan = plan_of(tmp_path, CLUSTER_TLS)
    files = {**render.render_files(plan, TEST_SECRETS), **render.tls_files(plan, issued(plan))}
    services = compose.broker_services(plan, files)
    for index, host in enumerate(("rabbitmq-1", "rabbitmq-2", "rabbitmq-3"), start=1):
        service = services[host]
        assert service["environment"] == plan.broker.tls.dist_env(index)
        assert service["healthcheck"]["timeout"] == "30s"  # its CLI tool handshakes TLS first (bench/RESULTS.md)
        assert f"./inter_node_tls-{index}.config:/etc/rabbitmq/inter_node_tls-{index}.config:ro" in service["volumes"]
        entry = service["entrypoint"][-1]
        assert f"/run/secrets/tls/node-{index}.key /etc/rabbitmq/tls/node-{index}.key" in entry
        assert not re.search(rf"node-(?!{index}\.)\d", entry)  # no other node's certificate or key


def test_kubernetes_follows_the_cluster_operators_documented_way(tmp_path):
    plan = plan_of(tmp_path, CLUSTER_TLS)
    objects = kubernetes.manifests(plan, "app:1", "{}")
    cluster = next(o for o in objects if o["kind"] == "RabbitmqCluster")
    assert _errors(cluster) == []  # against the operator's CRD, unknown fields refused
    args = "-proto_dist inet_tls -ssl_dist_optfile /etc/rabbitmq/inter-node-tls.config"
    env = cluster["spec"]["rabbitmq"]["envConfig"]
    assert f'SERVER_ADDITIONAL_ERL_ARGS="{args}"' in env
    assert f'RABBITMQ_CTL_ERL_ARGS="{args} -kernel net_setuptime 20"' in env
    pod = cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    assert {v["name"] for v in pod["volumes"]} == {"inter-node-tls-config", "inter-node-tls-certs"}
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "rabbitmq-inter-node-tls")
    text = config["data"]["inter-node-tls.config"]
    assert "pkix_verify_hostname_match_fun(https)" in text  # one wildcard certificate for every pod
    assert "kubectl" not in text and "BEGIN" not in text  # paths only: the certificate is a Secret the user creates
    assert any(s.name == "rabbitmq-nodes-tls" for s in kubernetes.secrets_to_create(plan))
    single = plan_of(tmp_path, "broker:\n  nodes: 1\n  tls: {enabled: true}\n")
    assert "override" not in kubernetes.cluster(single)["spec"]


def render_provided(tmp_path, secrets: dict) -> tuple[int, str]:
    overlay = tmp_path / "provided.yaml"
    overlay.write_text("broker:\n  nodes: 3\n  tls: {enabled: true, ca: provided}\n")
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text(yaml.safe_dump(secrets))
    argv = ["render", "--stack", "staging", "--overlay", str(overlay), "--out", str(tmp_path / "out")]
    return main([*argv, "--secrets", str(secrets_file)]), str(overlay)


def provided_secrets(tmp_path, wrong: dict[int, list[str]] | None = None, foreign: int | None = None) -> dict:
    plan = plan_of(tmp_path, CLUSTER_TLS)
    values = {**TEST_SECRETS, **certs.issue(plan.broker.tls, {})}
    ca = certs.Issued(values["tlsCaCert"], values["tlsCaKey"])
    for index, names in (wrong or {}).items():
        node = certs.node_cert(ca, names)
        values.update({f"tlsNodeCert{index}": node.cert_pem, f"tlsNodeKey{index}": node.key_pem})
    if foreign:
        node = certs.node_cert(certs.make_ca(), [f"rabbitmq-{foreign}"])
        values.update({f"tlsNodeCert{foreign}": node.cert_pem, f"tlsNodeKey{foreign}": node.key_pem})
    return values


def test_render_refuses_a_provided_node_certificate_for_another_host_or_from_another_ca(tmp_path, capsys):
    code, overlay = render_provided(tmp_path, provided_secrets(tmp_path, wrong={2: ["rabbitmq-3"]}, foreign=3))
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out").exists()
    assert (
        f"{overlay}:3: broker.tls.secrets.node_cert: TLS secret 'tlsNodeCert2' is for rabbitmq-3, "
        f"not node 2's host name 'rabbitmq-2': its peers would refuse it" in err
    )
    assert "TLS secret 'tlsNodeCert3' is not signed by the stack's CA ('tlsCaCert')" in err


def test_render_takes_provided_node_certificates_that_fit(tmp_path, capsys):
    code, _ = render_provided(tmp_path, provided_secrets(tmp_path))
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "tls" / "node-2.key").stat().st_mode & 0o777 == 0o600


def test_inter_node_on_one_node_is_a_warning(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("broker:\n  nodes: 1\n  tls: {enabled: true, inter_node: true}\n")
    loaded = load_definition(stack="staging", overlays=(path,))
    found = [f for f in loaded.findings if f.path == ("broker", "tls", "inter_node")]
    assert [(f.is_error, f.line) for f in found] == [(False, 3)]
    assert "one node has no peer" in found[0].message


def test_diff_turning_it_on_restarts_every_node_at_once(tmp_path):
    base = plan_of(tmp_path, "broker:\n  nodes: 3\n  tls: {enabled: true, inter_node: false}\n")
    head = plan_of(tmp_path, CLUSTER_TLS)
    found = changes.classify(base, head)
    broker = [c for c in found if c.subject == "broker"]
    assert [c.impact for c in broker] == [changes.Impact.RESTART]
    assert "inter-node TLS off → on" in broker[0].what and "cannot be rolled one by one" in broker[0].what


# What Debian's RabbitMQ 3.10 on Erlang 25 logged when a node was refused (tests/broker/test_inter_node_tls.py).
REFUSED_LOGS = {
    "rabbit@rabbitmq-1": (
        "\x1b[38;5;87m2026-12-06 23:12:19.005054+00:00 [notice] <0.1105.0> TLS server: In state wait_cert "
        "received CLIENT ALERT: Fatal - Unknown CA\x1b[0m\n"
        "2026-12-06 23:12:20.1+00:00 [notice] <0.1110.0> TLS server: In state wait_cert received CLIENT ALERT: "
        "Fatal - Unknown CA\n"
    ),
    "rabbit@rabbitmq-2": (
        "2026-12-06 23:13:11.381121+00:00 [notice] <0.1105.0> TLS server: In state hello at tls_record.erl:564 "
        "generated SERVER ALERT: Fatal - Unexpected Message\n"
    ),
    "rabbit@rabbitmq-3": (
        "2026-12-06 23:21:00.785716+00:00 [notice] <0.99.0> TLS client: In state wait_cert at "
        "ssl_handshake.erl:2113 generated CLIENT ALERT: Fatal - Handshake Failure\n"
        " - {bad_cert,hostname_check_failed}\n"
    ),
    # and Debian trixie's RabbitMQ 4.0: another alert, the reason with its details over several lines
    "rabbit@rabbitmq-4": (
        "TLS client: In state wait_cert at ssl_handshake.erl:2183 generated CLIENT ALERT: Fatal - Bad Certificate\n"
        ' - {bad_cert,\n       {hostname_check_failed,\n           {requested,"t5814x2"},\n'
    ),
}


def test_a_refused_nodes_reason_is_read_from_the_logs_once_per_alert():
    assert join_refusals(REFUSED_LOGS) == [
        "rabbit@rabbitmq-1: TLS alert 'Unknown CA': a node's certificate is not signed by the stack's CA (it has "
        "another CA)",
        "rabbit@rabbitmq-2: TLS alert 'Unexpected Message': a node speaks plaintext Erlang distribution to a TLS "
        "node (inter-node TLS is off on it)",
        "rabbit@rabbitmq-3: TLS alert 'Handshake Failure' (hostname_check_failed): a node's certificate is not for "
        "its host name (the part of its node name after @)",
        "rabbit@rabbitmq-4: TLS alert 'Bad Certificate' (hostname_check_failed): a node's certificate is not for "
        "its host name (the part of its node name after @)",
    ]
    assert join_refusals({"rabbit@rabbitmq-1": "2026 [info] <0.1.0> Server startup complete\n"}) == []
