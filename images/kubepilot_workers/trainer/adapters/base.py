"""What every tool adapter shares: its interface, the dataset layout, paths and environment knobs.

Environment (set by the operator or the image, all optional):

- ``KUBEPILOT_TRAINER_COMMAND``: a command prefix run *instead of* the tool's launcher, with the
  tool's full command line appended (tests point it at a fake process that replays recorded output).
- ``KUBEPILOT_STOP_GRACE_SECONDS``: how long a stopping tool may take before it is killed (default 25,
  below the default 30 s of ``stopGracePeriodSeconds``).
- ``KUBEPILOT_GPU_COUNT``: GPUs in this pod (default: the entries of ``CUDA_VISIBLE_DEVICES``, else 1).
- ``KOHYA_DIR``, ``DIFFUSION_PIPE_DIR``, ``ONETRAINER_DIR``: where the tools are checked out in the image.
"""

from __future__ import annotations

import os
import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from kubepilot_api.workers.config import TrainerConfig
from kubepilot_workers.trainer.adapters.process import LaunchPlan, ToolProcess
from kubepilot_workers.trainer.adapters.progress import ProgressTracker
from kubepilot_workers.trainer.control import TrainerControl

COMMAND_OVERRIDE_ENV = "KUBEPILOT_TRAINER_COMMAND"
STOP_GRACE_ENV = "KUBEPILOT_STOP_GRACE_SECONDS"
GPU_COUNT_ENV = "KUBEPILOT_GPU_COUNT"
DEFAULT_STOP_GRACE_SECONDS = 25.0
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
REPEATS_FOLDER = re.compile(r"^(?P<repeats>\d+)_(?P<name>.+)$")


class AdapterConfigError(ValueError):
    """The TrainingRun cannot be turned into a valid config for the tool."""


@dataclass(frozen=True)
class Subset:
    """One image folder of the dataset: ``N_name`` folders repeat N times (kohya / TagPilot layout)."""

    path: Path
    name: str
    repeats: int
    images: int


def dataset_subsets(dataset_dir: Path) -> list[Subset]:
    """The image folders of a dataset; a flat folder of images is one subset repeated once."""
    if not dataset_dir.is_dir():
        raise AdapterConfigError(f"dataset folder {dataset_dir} does not exist")

    def count(folder: Path) -> int:
        return sum(1 for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)

    subsets = []
    for child in sorted(dataset_dir.iterdir()):
        match = REPEATS_FOLDER.match(child.name)
        if child.is_dir() and match:
            subsets.append(Subset(child, match["name"], max(1, int(match["repeats"])), count(child)))
    if not subsets and count(dataset_dir):
        subsets.append(Subset(dataset_dir, dataset_dir.name, 1, count(dataset_dir)))
    if not subsets:
        raise AdapterConfigError(f"dataset folder {dataset_dir} has no images and no N_name sub-folders")
    return subsets


def launch_argv(tool_argv: list[str]) -> list[str]:
    """The tool's command line, behind the override prefix when one is set."""
    override = os.environ.get(COMMAND_OVERRIDE_ENV, "").strip()
    return [*shlex.split(override), *tool_argv] if override else tool_argv


def stop_grace_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(STOP_GRACE_ENV, DEFAULT_STOP_GRACE_SECONDS)))
    except ValueError:
        return DEFAULT_STOP_GRACE_SECONDS


@dataclass(frozen=True)
class PodRendezvous:
    """Where this pod stands in a multi-pod run: its index and rank 0's address (indexed Job env)."""

    index: int
    master_addr: str
    master_port: str


DEFAULT_MASTER_PORT = "29500"


def pod_rendezvous(workers: int) -> PodRendezvous:
    """This pod's rank and the rendezvous, from ``JOB_COMPLETION_INDEX``, ``MASTER_ADDR``, ``MASTER_PORT``."""
    index = os.environ.get("JOB_COMPLETION_INDEX", "")
    master = os.environ.get("MASTER_ADDR", "")
    if not index.isdigit() or int(index) >= workers:
        raise AdapterConfigError(f"a {workers}-pod run needs JOB_COMPLETION_INDEX in [0, {workers})")
    if not master:
        raise AdapterConfigError("a multi-pod run needs MASTER_ADDR (the address of rank 0's pod)")
    return PodRendezvous(int(index), master, os.environ.get("MASTER_PORT") or DEFAULT_MASTER_PORT)


def gpu_count() -> int:
    explicit = os.environ.get(GPU_COUNT_ENV, "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and visible not in {"-1", "none", "void"}:
        return len([d for d in visible.split(",") if d.strip()])
    return 1


def tool_dir(env_name: str, default: str) -> Path:
    return Path(os.environ.get(env_name, default))


@dataclass(frozen=True)
class AdapterPaths:
    """Where an adapter writes its own files inside the run's output folder."""

    output_dir: Path

    @property
    def config_dir(self) -> Path:
        return self.output_dir / "_config"

    @property
    def log_file(self) -> Path:
        return self.output_dir / "_logs" / "train.log"

    @property
    def control_dir(self) -> Path:
        return self.output_dir / "_control"


class ToolAdapter(ABC):
    """One external trainer: writes its config, parses its output, carries actions to it."""

    tool_name = "trainer"
    """Human-readable tool name for messages."""

    def __init__(self, config: TrainerConfig, tracker: ProgressTracker) -> None:
        self.config = config
        self.tracker = tracker
        self.paths = AdapterPaths(Path(config.outputDir))

    @property
    def tool_settings(self) -> dict[str, object]:
        """The user's own tool config from ``spec.tool.config`` (a copy; empty when absent)."""
        if self.config.tool is None or self.config.tool.config is None:
            return {}
        return dict(self.config.tool.config)

    @abstractmethod
    def prepare(self) -> LaunchPlan:
        """Write the tool's config files and return how to launch it."""

    @abstractmethod
    def parse_line(self, line: str) -> None:
        """Update the tracker from one output line of the tool."""

    @abstractmethod
    def control(self, process: ToolProcess) -> TrainerControl:
        """The actions this tool supports, carried to the running process."""

    def final_outputs(self) -> list[Path]:
        """The files the run produced, once the tool exited successfully."""
        return []

    def write_file(self, name: str, text: str) -> Path:
        """Write a config file atomically (never half-written) into the config folder."""
        self.paths.config_dir.mkdir(parents=True, exist_ok=True)
        path = self.paths.config_dir / name
        temporary = path.with_name(f".{name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
        return path
