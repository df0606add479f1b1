"""The kubepilot gateway (FastAPI): serves the five dashboard APIs on top of our CRs.

Not built yet: its own issue builds it on ``kubepilot_api``. The package exists so the layout,
the packaging and the import-layer contracts are in place from the start.
"""
