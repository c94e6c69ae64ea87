"""Certificates: the stack's TLS material, issued by `pulumi_tls` or read from stack config.

`ca: generate` children: `<name>-ca-key` and `<name>-ca` (a self-signed CA), `<name>-server-key`,
`<name>-server-csr` and `<name>-server` (the broker's certificate, its SANs the plan's server names),
`<name>-client-key`, `<name>-client-csr` and `<name>-client` (the app's client certificate), and with
inter-node TLS `<name>-node-<i>-key`, `-csr` and `<name>-node-<i>` per node (its host name). Every private
key lives in the stack's state as a secret, and leaves this component only as a secret Output.
`ca: provided`: no child; the five PEMs come from stack config secrets (`pulumi config set --secret KEY <
file.pem`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_tls as tls

from infra.plan.plan import TlsConfig

ALGORITHM, CURVE = "ECDSA", "P256"  # as infra/render/certs.py issues them for local stacks
CA_USES = ["cert_signing", "crl_signing", "digital_signature"]
SERVER_USES = ["digital_signature", "key_encipherment", "key_agreement", "server_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "key_agreement", "client_auth"]
NODE_USES = ["digital_signature", "key_encipherment", "key_agreement", "server_auth", "client_auth"]
RENEW_BEFORE_HOURS = 30 * 24  # `pulumi up` within 30 days of expiry issues a new certificate


def split_names(names) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the server's SANs."""
    dns, ips = [], []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return dns, ips


# The PEMs this component hands out, by TlsSecrets field name (a generated CA's key stays inside).
PEM_FIELDS = ("ca_cert", "server_cert", "server_key", "client_cert", "client_key")


@dataclass
class CertificatesArgs:
    config: TlsConfig
    stack: str  # in the CA's subject, so two stacks' CAs are told apart
    provided: Mapping[str, pulumi.Input[str]] | None = None  # secret key → PEM, for `ca: provided`


class Certificates(pulumi.ComponentResource):
    def __init__(self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("rabbitmq-celery:tls:Certificates", name, None, opts)
        c = args.config
        self.pems: dict[str, pulumi.Output[str]] = {}  # TlsSecrets field → PEM
        self.node_pems: dict[str, pulumi.Output[str]] = {}  # inter-node TLS: `tls/node-<i>.pem|key` → PEM
        if c.ca == "provided":
            for f in PEM_FIELDS:
                value = pulumi.Output.from_input(args.provided[getattr(c.secrets, f)])
                self.pems[f] = pulumi.Output.secret(value) if f.endswith("_key") else value
            for index in range(1, len(c.node_names) + 1):
                for file, key in c.node_secret_keys(index).items():
                    value = pulumi.Output.from_input(args.provided[key])
                    self.node_pems[f"tls/{file}"] = pulumi.Output.secret(value) if file.endswith(".key") else value
        else:
            self._issue(name, c, args.stack)
            for index, names in enumerate(c.node_names, start=1):
                key = self._key(f"{name}-node-{index}-key")
                dns, ips = split_names(names)
                cert = self._sign(f"{name}-node-{index}", key, c, NODE_USES, names[0], dns, ips)
                file_cert, file_key = c.node_secret_keys(index)
                self.node_pems[f"tls/{file_cert}"] = cert.cert_pem
                self.node_pems[f"tls/{file_key}"] = pulumi.Output.secret(key.private_key_pem)
        self.register_outputs(
            {
                "ca_cert": self.pems["ca_cert"],
                "server_cert": self.pems["server_cert"],
                "client_cert": self.pems["client_cert"],
            }
        )

    def _key(self, name: str) -> tls.PrivateKey:
        return tls.PrivateKey(
            name,
            algorithm=ALGORITHM,
            ecdsa_curve=CURVE,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["private_key_pem"]),
        )

    def _issue(self, name: str, c: TlsConfig, stack: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        self.ca_key = self._key(f"{name}-ca-key")
        self.ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=self.ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"rabbitmq-celery {stack} CA"),
            validity_period_hours=c.ca_validity_days * 24,
            allowed_uses=CA_USES,
            set_subject_key_id=True,
            opts=child,
        )
        dns, ips = split_names(c.server_names)
        self.server_key = self._key(f"{name}-server-key")
        self.server = self._sign(f"{name}-server", self.server_key, c, SERVER_USES, c.server_names[0], dns, ips)
        self.client_key = self._key(f"{name}-client-key")
        self.client = self._sign(f"{name}-client", self.client_key, c, CLIENT_USES, c.client_name, [], [])
        self.pems = {
            "ca_cert": self.ca.cert_pem,
            "server_cert": self.server.cert_pem,
            "server_key": pulumi.Output.secret(self.server_key.private_key_pem),
            "client_cert": self.client.cert_pem,
            "client_key": pulumi.Output.secret(self.client_key.private_key_pem),
        }

    def _sign(
        self,
        name: str,
        key: tls.PrivateKey,
        c: TlsConfig,
        uses: list[str],
        common_name: str,
        dns: list[str],
        ips: list[str],
    ) -> tls.LocallySignedCert:
        child = pulumi.ResourceOptions(parent=self)
        request = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=common_name),
            dns_names=dns or None,
            ip_addresses=ips or None,
            opts=child,
        )
        return tls.LocallySignedCert(
            name,
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self.ca_key.private_key_pem,
            ca_cert_pem=self.ca.cert_pem,
            validity_period_hours=c.validity_days * 24,
            early_renewal_hours=RENEW_BEFORE_HOURS,
            allowed_uses=uses,
            opts=child,
        )

    def files(self, names: Mapping[str, str]) -> dict[str, pulumi.Output[str]]:
        """`tls/<file>` → PEM, for a plan's file map (BROKER_TLS_FILES or APP_TLS_FILES)."""
        return {f"tls/{file}": self.pems[field_name] for file, field_name in names.items()}

    def broker_files(self, names: Mapping[str, str]) -> dict[str, pulumi.Output[str]]:
        """`files(names)` and every node's inter-node certificate and key (the Broker gives each node its own)."""
        return {**self.files(names), **self.node_pems}
