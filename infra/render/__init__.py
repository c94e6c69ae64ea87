"""Renderers: the plan → files (rabbitmq.conf, definitions.json, celery.json), compose, Kubernetes objects,
monitoring files, and the local secrets and certificates they need. Mechanical: decisions live in the plan.
"""
