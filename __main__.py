"""Pulumi's entry point (Pulumi.yaml, runtime python): `pulumi up` runs the program through
infra/cli/program_entry.py (the stack's definition, and the pending-migration check)."""

from infra.cli.program_entry import run

run()
