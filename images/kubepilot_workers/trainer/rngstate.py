"""Random-number states in checkpoints: what makes a resumed run draw what an uninterrupted one draws.

Every step draws its noise and timesteps from torch's default generators (the CPU one, or CUDA's
when training there). A resumed process seeds them at start-up and then spends random numbers on
initialising the LoRA it is about to overwrite, so without the saved states it would draw other
noise from the resumed step on, and its losses and final LoRA would drift from those of the run it
continues. Python's ``random`` and NumPy's global generator are saved as well, for library code that
draws from them. Each process has its own states (seeded with seed + rank), so each process writes
and reads its own file in the checkpoint folder.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

RNG_FILE_TEMPLATE = "rng_state_rank{rank:05d}.pt"


def rng_file(folder: Path, rank: int) -> Path:
    """The file holding process ``rank``'s random states in a checkpoint folder."""
    return folder / RNG_FILE_TEMPLATE.format(rank=rank)


def capture() -> dict[str, Any]:
    """This process's random states now."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
    except ImportError:  # NumPy is optional: without it nothing can draw from it
        pass
    else:
        state["numpy"] = np.random.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save(folder: Path, rank: int) -> None:
    """Write this process's random states into ``folder`` (atomically: a torn file is never read)."""
    target = rng_file(folder, rank)
    staging = target.with_name(f".{target.name}.partial")
    torch.save(capture(), staging)
    staging.replace(target)


def restore(folder: Path, rank: int, world_size: int, *, saved_world_size: int | None) -> bool:
    """Put back process ``rank``'s random states saved in ``folder``; False (and a warning) when
    there are none, or they were saved by another number of processes.

    CUDA states are restored only where CUDA is available, and only when this machine has as many
    devices as the one that saved them (each process's generator belongs to its own device).
    """
    path = rng_file(folder, rank)
    if saved_world_size not in (None, world_size) or not path.is_file():
        log.warning(
            "%s holds no random state for process %d of %d: the noise drawn from here on differs "
            "from an uninterrupted run's",
            folder.name,
            rank,
            world_size,
        )
        return False
    # Our own file from our own checkpoint (as engine_state.pt): NumPy's state is an array, which
    # the weights-only loader refuses.
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        try:
            import numpy as np
        except ImportError:
            pass
        else:
            np.random.set_state(state["numpy"])
    cuda_states = state.get("cuda")
    if cuda_states is not None and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning(
                "the checkpoint's CUDA random states are for %d device(s), this machine has %d: "
                "noise on the GPU will differ from an uninterrupted run",
                len(cuda_states),
                torch.cuda.device_count(),
            )
    return True
