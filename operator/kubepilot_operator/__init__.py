"""The kubepilot operator (kopf): reconciles the four kinds into Jobs, Deployments and Services.

Not built yet: its own issue builds it on ``kubepilot_api``. The package exists so the layout,
the packaging and the import-layer contracts are in place from the start.
"""
