"""Where the trainer writes: checkpoint, backup and output layout, and resumable state files.

    <outputDir>/checkpoints/step-00000010/<name>-step00000010.safetensors   LoRA (diffusers format)
                                         /trainer_state.json                  step, data position, lineage
                                         /engine_state.pt | deepspeed/        optimizer + schedule
                                         /rng_state_rank00000.pt              random states, one per process
    <outputDir>/backups/step-00000010/...                                     same, on request
    <outputDir>/samples/step00000010-00-<prompt>.png
    <outputDir>/<name>.safetensors                                            final LoRA
    <outputDir>/run_complete.json                                             the finished run's report

A checkpoint folder is complete once ``trainer_state.json`` is in it (written last), so a folder
cut short by a crash is never taken for a resumable one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "trainer_state.json"
FORMAT_VERSION = 1


class ResumeError(Exception):
    """``resumeFrom`` does not point at a usable checkpoint."""


@dataclass(frozen=True)
class TrainerState:
    """The loop's position and the lineage of a checkpoint."""

    step: int
    base_model: str
    dataset: str
    engine: str
    """torch or deepspeed: the engine state is only readable by the same kind."""
    lora_file: str
    version: int = FORMAT_VERSION
    micro_batch: int | None = None
    """Micro-batches each process had consumed: where the data stream goes on (None: older files)."""
    data_seed: int | None = None
    """Seed of the epochs' shuffling, so the resumed run sees the rest of the same epoch order."""
    world_size: int | None = None
    """Processes that wrote it: their random states (one file each) only fit the same count."""


@dataclass(frozen=True)
class OutputLayout:
    """Paths under one run's output folder."""

    root: Path
    name: str

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def final_lora(self) -> Path:
        return self.root / f"{self.name}.safetensors"

    def checkpoint_folder(self, step: int, backup: bool = False) -> Path:
        return self.root / ("backups" if backup else "checkpoints") / f"step-{step:08d}"

    def lora_file_name(self, step: int) -> str:
        return f"{self.name}-step{step:08d}.safetensors"

    def relative(self, path: Path) -> str:
        """A path as the reports give it: under the outputs volume (the output folder's parent)."""
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)


def prepare_folder(folder: Path) -> None:
    """An empty folder to write a checkpoint into (an older one at the same step is replaced)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def write_state(folder: Path, state: TrainerState) -> None:
    """Write the state file last and atomically: it marks the checkpoint complete."""
    staging = folder / f".{STATE_FILE}.partial"
    staging.write_text(json.dumps(asdict(state), indent=2))
    staging.replace(folder / STATE_FILE)


def read_state(resume_from: str | Path) -> tuple[Path, TrainerState]:
    """The checkpoint folder and its state; ``resume_from`` may name the folder or a file in it."""
    path = Path(resume_from)
    folder = path if path.is_dir() else path.parent
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise ResumeError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    try:
        raw = json.loads(state_file.read_text())
        state = TrainerState(**raw)
    except (ValueError, TypeError) as error:
        raise ResumeError(f"{state_file} is unreadable: {error}") from error
    if state.version != FORMAT_VERSION:
        raise ResumeError(
            f"{state_file} has format version {state.version}, this trainer reads {FORMAT_VERSION}"
        )
    if state.step < 0:
        raise ResumeError(f"{state_file} has a negative step")
    return folder, state


def latest_checkpoint(layout: OutputLayout, base_model: str, dataset: str, engine: str) -> Path | None:
    """The newest complete checkpoint or backup of this run's lineage in its output folder, if any.

    A pod restarted after a kill (a preempted node, an OOM, a rerun by hand) finds the checkpoints
    its previous life wrote and goes on from the newest, as the downloader does with partial files.
    Folders of another base model, dataset or engine, and folders cut short, are passed over.
    """
    found: list[tuple[int, int, Path]] = []
    for preference, kind in enumerate(("backups", "checkpoints")):
        parent = layout.root / kind
        if not parent.is_dir():
            continue
        for folder in parent.iterdir():
            try:
                _, state = read_state(folder)
            except ResumeError:
                continue
            if (state.base_model, state.dataset, state.engine) == (base_model, dataset, engine):
                # On equal steps a checkpoint wins over a backup (same content, the usual place).
                found.append((state.step, preference, folder))
    return max(found)[2] if found else None
