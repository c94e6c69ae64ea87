"""`python -m infra`: argument parsing, output formatting, and the local stack's commands. The top layer."""
