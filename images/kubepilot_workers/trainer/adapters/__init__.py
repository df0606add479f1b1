"""Adapters that run kohya sd-scripts, diffusion-pipe and OneTrainer for a TrainingRun.

Entry point: :func:`run` (``run(config, reporter) -> exit code``), dispatching on ``config.trainer``.
"""

from kubepilot_workers.trainer.adapters.runner import ADAPTERS, run

__all__ = ["ADAPTERS", "run"]
