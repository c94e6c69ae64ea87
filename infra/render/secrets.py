"""Credentials for `render`: a 0600 secrets file per stack, generated values, and RabbitMQ password hashes.

Under Pulumi the same keys come from stack config secrets or `RandomPassword` (the program's config
module); here, for renders without Pulumi, they come from `.secrets/<env>.yaml`, which is git-ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as random_source
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.definition.findings import Finding
from infra.definition.model import Secret
from infra.definition.sources import Source

SECRETS_DIR = Path(".secrets")


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + utf8 password))."""
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def stable_salt(user: str, password: str) -> bytes:
    """A 4-byte salt derived from the user and the password itself.

    RabbitMQ salts with 4 random bytes; a random salt would make every render differ and every Pulumi
    preview show the definitions changing. Keyed by the password, the salt is still unknown without it
    and differs between users, so equal passwords do not give equal hashes.
    """
    return hmac.new(password.encode("utf-8"), b"rabbitmq-salt:" + user.encode("utf-8"), "sha256").digest()[:4]


def hash_for(user: str, password: str) -> str:
    return password_hash(password, stable_salt(user, password))


def generate_password() -> str:
    return random_source.token_urlsafe(24)


@dataclass
class Resolved:
    values: dict[str, str]
    findings: list[Finding]
    generated: list[str]


def resolve(wanted: list[tuple[tuple, Secret]], known: dict[str, str], source: Source) -> Resolved:
    """Values for every secret the definition refers to: known ones, generated ones, or a finding."""
    values, findings, generated = {}, [], []
    for path, ref in wanted:
        if ref.secret in values:
            continue
        if ref.secret in known:
            values[ref.secret] = str(known[ref.secret])
        elif ref.generate:
            values[ref.secret] = generate_password()
            generated.append(ref.secret)
        else:
            file, line = source.where(path)
            findings.append(
                Finding(
                    file,
                    line,
                    path,
                    f"secret {ref.secret!r} is not set: add it to the secrets file, or add "
                    f"`generate: true` (under Pulumi: pulumi config set --secret {ref.secret})",
                )
            )
    return Resolved(values, findings, generated)


def read_secrets_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a mapping of secret key → value")
    # An empty value is an unset key (the finding says so), never the password "None".
    return {str(k): str(v) for k, v in data.items() if v is not None and str(v) != ""}


def write_secrets_file(path: Path, values: dict[str, str]) -> None:
    """Written 0600 from the first byte: the file is created with that mode, never chmod-ed after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Generated and kept by `python -m infra render`. Never commit this file.\n")
        yaml.safe_dump(dict(sorted(values.items())), out, default_flow_style=False)
    os.replace(tmp, path)


def resolve_tls(plan, known: dict[str, str], source: Source) -> Resolved:
    """The TLS PEMs a plan's rendered files need: from the secrets file, issued by `certs` for a generated
    CA (kept in the secrets file like a generated password), or a finding for a provided one."""
    tls = plan.broker.tls
    if tls is None:
        return Resolved({}, [], [])
    wanted = plan.tls_secrets()
    values = {key: str(known[key]) for _, key in wanted if key in known}
    if tls.ca == "generate":
        from infra.render import certs

        issued = certs.issue(tls, values)
        return Resolved({**values, **issued}, [], sorted(issued))
    findings = []
    for path, key in wanted:
        if key not in values:
            file, line = source.where(path)
            findings.append(
                Finding(
                    file,
                    line,
                    path,
                    f"TLS secret {key!r} is not set: with ca: provided, put the "
                    f"PEM in the secrets file (under Pulumi: pulumi config set "
                    f"--secret {key} < file.pem)",
                )
            )
    if not findings:
        findings = _node_cert_findings(tls, values, source)
    return Resolved(values, findings, [])


def _node_cert_findings(tls, values: dict[str, str], source: Source) -> list[Finding]:
    """Provided node certificates a peer would refuse: one not signed by the stack's CA, or not for its
    node's host name (the peers connect to `rabbitmq-<i>`). Reported here, where the PEMs are known."""
    from infra.render import certs

    path = ("broker", "tls", "secrets", "node_cert")
    file, line = source.where(path)
    findings = []
    for index, names in enumerate(tls.node_names, start=1):
        key = tls.node_secret_keys(index)[f"node-{index}.pem"]
        try:
            held, signed = certs.names_of(values[key]), certs.signed_by(values[key], values[tls.secrets.ca_cert])
        except ValueError as exc:
            findings.append(Finding(file, line, path, f"TLS secret {key!r} is not a PEM certificate: {exc}"))
            continue
        if names[0] not in held:
            findings.append(
                Finding(
                    file,
                    line,
                    path,
                    f"TLS secret {key!r} is for {', '.join(held) or 'no host name'}, not node {index}'s host "
                    f"name {names[0]!r}: its peers would refuse it",
                )
            )
        if not signed:
            findings.append(
                Finding(
                    file, line, path, f"TLS secret {key!r} is not signed by the stack's CA ({tls.secrets.ca_cert!r})"
                )
            )
    return findings
