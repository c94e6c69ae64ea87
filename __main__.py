"""Pulumi's entry point (Pulumi.yaml, runtime python): `pulumi up` runs infra/program.py."""
from infra.program import main

main()
