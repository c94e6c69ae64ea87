"""Stack config, read in this one module: the credentials `pulumi up` uses.

Each secret key of the definition (`{secret: KEY}`: the broker users' passwords, the Django secret key,
the Riot API key) is read with `pulumi config get --secret` semantics; where it is not set and the
definition says `generate: true`, a `RandomPassword` stands in.
Either way the value is a secret Output everywhere it flows.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random

from infra.plan.plan import Plan


class MissingSecret(Exception):
    pass


def passwords(plan: Plan, config: pulumi.Config | None = None) -> dict[str, pulumi.Output[str]]:
    config = config or pulumi.Config()
    values: dict[str, pulumi.Output[str]] = {}
    missing = []
    for _, ref in plan.all_secrets():
        if ref.secret in values:
            continue
        value = config.get_secret(ref.secret)
        if value is None and ref.generate:
            value = random.RandomPassword(f"secret-{ref.secret}", length=32, special=False).result
        if value is None:
            missing.append(ref.secret)
            continue
        values[ref.secret] = pulumi.Output.secret(value)
    if missing:
        raise MissingSecret(
            "not set in the stack config: "
            + ", ".join(missing)
            + " (pulumi config set --secret "
            + missing[0]
            + " ...)"
        )
    return values


def provided_pems(plan: Plan, config: pulumi.Config | None = None) -> dict[str, pulumi.Output[str]]:
    """With `broker.tls.ca: provided`: the PEMs by secret key, each a secret Output; {} otherwise (the
    program issues them with pulumi_tls)."""
    tls = plan.broker.tls
    if tls is None or tls.ca != "provided":
        return {}
    config = config or pulumi.Config()
    keys = [key for _, key in plan.tls_secrets()]
    missing = [key for key in keys if config.get_secret(key) is None]
    if missing:
        raise MissingSecret(
            "broker.tls.ca is provided, but not set in the stack config: "
            + ", ".join(missing)
            + f" (pulumi config set --secret {missing[0]} < file.pem)"
        )
    return {key: pulumi.Output.secret(config.get_secret(key)) for key in keys}
