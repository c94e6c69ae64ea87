"""The stack definition: YAML files → one typed model, with every finding tied to a file, line and key.

The bottom layer: it imports nothing else from `infra`.
"""
