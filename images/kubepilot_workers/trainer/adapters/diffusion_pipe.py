"""diffusion-pipe (``deepspeed --num_gpus=N train.py --deepspeed --config training.toml``).

The adapter writes the training TOML and the dataset TOML (``[[directory]]`` per ``N_name`` folder)
with ``spec.tool.config`` / ``spec.tool.datasetConfig`` merged on top; ``output_dir`` and ``dataset``
always stay ours. diffusion-pipe puts each run in a timestamped folder under ``output_dir``; it gets
its own folder (``<outputDir>/runs``) because it treats the newest entry there as the run to resume.

Progress comes from DeepSpeed's pipeline engine (``steps: N loss: X iter time (s): T samples/sec: S``)
and diffusion-pipe's own prints (``Started new epoch: N``, ``Saving model to directory epochN``).

Runtime actions: diffusion-pipe checks two signal files in the run folder after every step:
``save`` writes a training-state checkpoint (used for save and backup), ``save_quit`` writes one and
exits (used for stop; SIGTERM follows after the grace period). It renders no samples while training.

Several pods (``spec.workers`` > 1, an indexed Job): each pod runs its own DeepSpeed launcher with
``--no_ssh`` (no SSH between pods in Kubernetes), its ``--node_rank`` from ``JOB_COMPLETION_INDEX``
and the rendezvous at ``MASTER_ADDR``/``MASTER_PORT`` (rank 0's pod). The launcher still reads the
node list from a hostfile, to number the ranks; its host names are never contacted with ``--no_ssh``.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

from kubepilot_workers.trainer.adapters import toml_writer
from kubepilot_workers.trainer.adapters.base import (
    AdapterConfigError,
    ToolAdapter,
    dataset_subsets,
    gpu_count,
    launch_argv,
    pod_rendezvous,
    tool_dir,
)
from kubepilot_workers.trainer.adapters.process import LaunchPlan, ToolProcess
from kubepilot_workers.trainer.adapters.progress import as_float
from kubepilot_workers.trainer.control import ActionFailed, TrainerControl

RUN_FOLDER = re.compile(r"^\d{8}_\d{2}-\d{2}-\d{2}$")
STEP_LINE = re.compile(
    r"^steps:\s*(?P<step>\d+)\s+loss:\s*(?P<loss>\S+).*?iter time \(s\):\s*(?P<iter>[\d.]+)"
    r"(?:\s+samples/sec:\s*(?P<sps>[\d.]+))?"
)
NEW_EPOCH = re.compile(r"^Started new epoch:\s*(\d+)")
MODEL_SAVE = re.compile(r"^Saving model to directory\s+(\S+)")
STATE_SAVE = re.compile(r"Saving model checkpoint:\s*(\S+)")
RESUMED = re.compile(r"Resuming at epoch:\s*(\d+), step:\s*(\d+)")
GLOBAL_STEP = re.compile(r"global_step(\d+)")
DEFAULT_EPOCHS = 10


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` applied over ``base``, tables merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class DiffusionPipeControl:
    """Actions for diffusion-pipe, through its signal files."""

    def __init__(self, adapter: DiffusionPipeAdapter, process: ToolProcess) -> None:
        self._adapter = adapter
        self._process = process

    def _signal_file(self, name: str) -> Path:
        run_dir = self._adapter.run_dir()
        if run_dir is None:
            raise ActionFailed(
                "diffusion-pipe has not created its run folder yet; try again once training runs"
            )
        path = run_dir / name
        path.touch()
        return path

    def save(self) -> str:
        self._signal_file("save")
        return "diffusion-pipe writes a training-state checkpoint after its current step"

    def backup(self) -> str:
        self._signal_file("save")
        return (
            "diffusion-pipe writes a training-state checkpoint (model, optimizer, data position) "
            "after its current step"
        )

    def sample(self, params: dict[str, Any]) -> str:
        raise ActionFailed("not supported by diffusion-pipe: it renders no samples during training")

    def stop(self) -> str:
        try:
            self._signal_file("save_quit")
        except ActionFailed:
            self._process.signal_group(signal.SIGTERM)
            return "no run folder yet: sent SIGTERM"
        return "diffusion-pipe saves a training-state checkpoint and quits after its current step"


class DiffusionPipeAdapter(ToolAdapter):
    """diffusion-pipe LoRA training under the DeepSpeed launcher."""

    tool_name = "diffusion-pipe"
    _epochs = DEFAULT_EPOCHS
    """Epochs of the written config (set by prepare; max steps are estimated from it)."""

    @property
    def runs_dir(self) -> Path:
        return self.paths.output_dir / "runs"

    def run_dir(self) -> Path | None:
        """The newest run folder diffusion-pipe created (None before it created one)."""
        if not self.runs_dir.is_dir():
            return None
        runs = sorted(p for p in self.runs_dir.iterdir() if p.is_dir() and RUN_FOLDER.match(p.name))
        return runs[-1] if runs else None

    def epochs(self, document: dict[str, Any]) -> int:
        value = document.get("epochs", DEFAULT_EPOCHS)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AdapterConfigError("spec.tool.config.epochs must be a positive integer")
        return value

    def training_document(self, dataset_toml: Path) -> dict[str, Any]:
        hyper = self.config.hyperparameters
        base_model = Path(self.config.baseModelPath)
        model_path_key = "diffusers_path" if base_model.is_dir() else "checkpoint_path"
        defaults: dict[str, Any] = {
            "epochs": DEFAULT_EPOCHS,
            "micro_batch_size_per_gpu": hyper.batchSize,
            "pipeline_stages": 1,
            "gradient_accumulation_steps": hyper.gradientAccumulationSteps,
            "gradient_clipping": 1.0,
            "warmup_steps": hyper.warmupSteps,
            "save_every_n_epochs": 2,
            "checkpoint_every_n_minutes": 120,
            "activation_checkpointing": True,
            "save_dtype": "bfloat16",
            "caching_batch_size": 1,
            "steps_per_print": 1,
            "model": {"type": "sdxl", model_path_key: str(base_model), "dtype": "bfloat16"},
            "adapter": {"type": "lora", "rank": hyper.rank, "dtype": "bfloat16"},
            "optimizer": {
                "type": "adamw_optimi",
                "lr": hyper.learningRate,
                "betas": [0.9, 0.99],
                "weight_decay": 0.01,
                "eps": 1e-8,
            },
        }
        document = deep_merge(defaults, self.tool_settings)
        document["output_dir"] = str(self.runs_dir)
        document["dataset"] = str(dataset_toml)
        return document

    def dataset_document(self) -> dict[str, Any]:
        settings = self.config.tool.datasetConfig if self.config.tool else None
        defaults: dict[str, Any] = {
            "resolutions": [self.config.hyperparameters.resolution],
            "enable_ar_bucket": self.config.hyperparameters.bucketing,
            "min_ar": 0.5,
            "max_ar": 2.0,
            "num_ar_buckets": 7,
        }
        document = deep_merge(defaults, dict(settings or {}))
        if "directory" not in document:
            document["directory"] = [
                {"path": str(subset.path), "num_repeats": subset.repeats}
                for subset in dataset_subsets(Path(self.config.datasetDir))
            ]
        return document

    def prepare(self) -> LaunchPlan:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            dataset_toml = self.write_file("dataset.toml", toml_writer.dumps(self.dataset_document()))
            document = self.training_document(dataset_toml)
            training_toml = self.write_file("training.toml", toml_writer.dumps(document))
        except toml_writer.TomlError as error:
            raise AdapterConfigError(f"spec.tool: {error}") from error
        self.tracker.update(max_epochs=self.epochs(document))
        self._epochs = self.epochs(document)
        root = tool_dir("DIFFUSION_PIPE_DIR", "/opt/diffusion-pipe")
        files = [dataset_toml, training_toml]
        argv = ["deepspeed", f"--num_gpus={gpu_count()}"]
        if self.config.workers > 1:
            hostfile = self.write_file("hostfile", self.hostfile())
            argv += self.multi_node_arguments(hostfile)
            files.append(hostfile)
        argv += [str(root / "train.py"), "--deepspeed", "--config", str(training_toml)]
        if self.config.resumeFrom:
            resume = Path(self.config.resumeFrom)
            # diffusion-pipe takes a run folder name under output_dir, or no value for the newest run.
            argv += ["--resume_from_checkpoint"] + ([resume.name] if resume.parent == self.runs_dir else [])
        cwd = root if root.is_dir() else self.paths.output_dir
        return LaunchPlan(argv=launch_argv(argv), cwd=cwd, files=files)

    def hostfile(self) -> str:
        """One line per pod, ``slots`` being the GPUs each pod has."""
        return "".join(f"node-{index} slots={gpu_count()}\n" for index in range(self.config.workers))

    def multi_node_arguments(self, hostfile: Path) -> list[str]:
        """Launcher flags for this pod of a multi-pod run (environment of the indexed Job)."""
        pod = pod_rendezvous(self.config.workers)
        return [
            f"--hostfile={hostfile}",
            "--no_ssh",
            f"--node_rank={pod.index}",
            f"--master_addr={pod.master_addr}",
            f"--master_port={pod.master_port}",
        ]

    def parse_line(self, line: str) -> None:
        tracker = self.tracker
        stripped = line.strip()
        if match := STEP_LINE.match(stripped):
            iter_time = float(match["iter"])
            tracker.update(
                step=int(match["step"]),
                loss=as_float(match["loss"]),
                steps_per_second=1.0 / iter_time if iter_time > 0 else None,
            )
        elif match := NEW_EPOCH.match(stripped):
            epoch = int(match[1])
            completed = epoch - 1
            steps_per_epoch = tracker.step // completed if completed > 0 else 0
            tracker.update(
                epoch=epoch - 1,
                max_steps=steps_per_epoch * self._epochs if steps_per_epoch > 0 else None,
            )
            tracker.set_message(f"epoch {epoch}/{self._epochs}")
        elif match := MODEL_SAVE.match(stripped):
            run_dir = self.run_dir() or self.runs_dir
            tracker.add_checkpoint(run_dir / match[1])
        elif match := STATE_SAVE.search(stripped):
            folder = Path(match[1]).parent
            step_match = GLOBAL_STEP.search(folder.name)
            tracker.add_checkpoint(folder, int(step_match[1]) if step_match else None)
        elif match := RESUMED.search(stripped):
            tracker.update(epoch=int(match[1]) - 1, step=int(match[2]) - 1)
        elif stripped == "TRAINING COMPLETE!":
            tracker.set_message("training complete")

    def control(self, process: ToolProcess) -> TrainerControl:
        return DiffusionPipeControl(self, process)

    def final_outputs(self) -> list[Path]:
        run_dir = self.run_dir()
        if run_dir is None:
            return []
        saves = [p for p in run_dir.iterdir() if p.is_dir() and re.match(r"^(epoch|step)\d+$", p.name)]
        if not saves:
            return []
        newest = max(saves, key=lambda p: p.stat().st_mtime)
        return sorted(newest.glob("*.safetensors"))
