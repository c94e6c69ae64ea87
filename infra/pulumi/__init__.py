"""The Pulumi program and its components, the mock run behind `plan`, and `deploy` through the Automation
API. Adapters: the plan → Pulumi resources.
"""
