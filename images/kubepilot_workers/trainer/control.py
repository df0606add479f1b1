"""How actions from the operator reach a trainer: the control interface every trainer implements.

The built-in trainer implements it in-process; the adapters for kohya, diffusion-pipe and
OneTrainer translate each call into what the tool understands (a command, a file, a signal).
Each method returns a short message for the acknowledgement, or raises :class:`ActionFailed`.
"""

from __future__ import annotations

from typing import Any, Protocol


class ActionFailed(Exception):
    """The trainer could not carry out the action; the message goes into the acknowledgement."""


class TrainerControl(Protocol):
    """What the in-pod agent can ask of a running trainer."""

    def save(self) -> str:
        """Save a checkpoint now."""
        ...

    def backup(self) -> str:
        """Write a full backup (model, optimizer, state) now."""
        ...

    def sample(self, params: dict[str, Any]) -> str:
        """Render samples now: the default sample prompts when params is empty, else a custom one
        (keys prompt, negative_prompt, seed, steps, cfg_scale, width, height)."""
        ...

    def stop(self) -> str:
        """Stop gracefully: save what the trainer saves on stop, then exit."""
        ...
