"""Certificates for local stacks and tests, from the `cryptography` package: a private CA, a server
certificate with the broker's names, a client certificate for the app.

Pure apart from key generation: PEM text in, PEM text out, nothing written. The Pulumi program issues the
same three with `pulumi_tls` instead (`components/tls.py`); `render` calls `issue` for the keys the secrets
file does not hold yet and keeps what it generated there (0600), so a second render reuses them.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# ECDSA P-256: what RabbitMQ (Erlang's ssl), OpenSSL and browsers all accept, and fast to generate.
CURVE = ec.SECP256R1()
CA_NAME = "rabbitmq-celery stack CA"


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    key_pem: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE)


def _key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(common_name: str = CA_NAME, days: int = 3650) -> Issued:
    key = _key()
    cert = (
        _builder(_name(common_name), _name(common_name), key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(_pem(cert), _key_pem(key))


def san(names) -> x509.SubjectAlternativeName:
    """DNS names and IP addresses, each as the kind it is."""
    entries = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _leaf(ca: Issued, common_name: str, usages, names=(), days: int = 365) -> Issued:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    key = _key()
    builder = (
        _builder(_name(common_name), ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(san(names), critical=False)
    return Issued(_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key))


def server_cert(ca: Issued, names, days: int = 365) -> Issued:
    """The broker's certificate: the first name is the subject, every name is a SAN (clients check those)."""
    return _leaf(ca, names[0], [ExtendedKeyUsageOID.SERVER_AUTH], names, days)


def client_cert(ca: Issued, common_name: str, days: int = 365) -> Issued:
    return _leaf(ca, common_name, [ExtendedKeyUsageOID.CLIENT_AUTH], (), days)


def node_cert(ca: Issued, names, days: int = 365) -> Issued:
    """A cluster node's certificate for inter-node TLS: it serves its peers and connects to them, so both
    uses; the first name (its host name) is the subject."""
    return _leaf(ca, names[0], [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], names, days)


def names_of(cert_pem: str) -> list[str]:
    """A certificate's SAN entries (DNS names and IP addresses) as text."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        entries = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in entries.get_values_for_type(x509.DNSName) + entries.get_values_for_type(x509.IPAddress)]


def signed_by(cert_pem: str, ca_pem: str) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issue(tls, values: dict[str, str]) -> dict[str, str]:
    """The TLS values `values` lacks, for a plan's `TlsConfig` with a generated CA: the CA (kept, so later
    certificates come from the same one), then the server and client certificates it signs. Certificates
    present in `values` are kept; a missing CA re-issues all (the old ones would not verify)."""
    s = tls.secrets
    have = lambda *keys: all(k in values for k in keys)  # noqa: E731
    out: dict[str, str] = {}
    if have(s.ca_cert, s.ca_key):
        ca = Issued(values[s.ca_cert], values[s.ca_key])
    else:
        ca = make_ca(days=tls.ca_validity_days)
        out = {s.ca_cert: ca.cert_pem, s.ca_key: ca.key_pem}
    if out or not have(s.server_cert, s.server_key):
        server = server_cert(ca, list(tls.server_names), tls.validity_days)
        out.update({s.server_cert: server.cert_pem, s.server_key: server.key_pem})
    if out.keys() & {s.ca_cert} or not have(s.client_cert, s.client_key):
        client = client_cert(ca, tls.client_name, tls.validity_days)
        out.update({s.client_cert: client.cert_pem, s.client_key: client.key_pem})
    for index, names in enumerate(tls.node_names, start=1):  # inter-node TLS: one per node
        cert_key, key_key = tls.node_secret_keys(index).values()
        if out.keys() & {s.ca_cert} or not have(cert_key, key_key) or names_of(values[cert_key]) != list(names):
            node = node_cert(ca, list(names), tls.validity_days)
            out.update({cert_key: node.cert_pem, key_key: node.key_pem})
    return out
