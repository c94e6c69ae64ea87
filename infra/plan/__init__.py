"""The plan: what a valid definition deploys, as plain data (pure functions of the model).

Imports only `infra.definition`.
"""
