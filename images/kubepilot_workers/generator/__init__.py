"""The diffusers generator: one-shot GenerationJobs, or a server behind the executor API.

Run as ``python -m kubepilot_workers.generator --config FILE`` (see :mod:`.cli`).
"""
