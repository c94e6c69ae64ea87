"""Pulumi's entry point (Pulumi.yaml, runtime python): `pulumi up` runs infra/pulumi/program.py."""
from infra.pulumi.program import main

main()
