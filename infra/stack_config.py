"""Stack config, read in this one module: the credentials `pulumi up` uses.

Each secret key of the definition (`{secret: KEY}`: the broker users' passwords, the Django secret key,
the Riot API key) is read with `pulumi config get --secret` semantics; where it is not set and the
definition says `generate: true`, a `RandomPassword` stands in.
Either way the value is a secret Output everywhere it flows.
"""
from __future__ import annotations

import pulumi
import pulumi_random as random

from .plan import Plan


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
        raise MissingSecret("not set in the stack config: " + ", ".join(missing) + " (pulumi config set --secret "
                            + missing[0] + " ...)")
    return values
