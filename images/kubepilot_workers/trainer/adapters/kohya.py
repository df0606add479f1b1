"""kohya sd-scripts (``train_network.py`` / ``sdxl_train_network.py`` under ``accelerate launch``).

The adapter writes a dataset TOML (``[[datasets]]`` / ``[[datasets.subsets]]``, one subset per
``N_name`` folder repeated N times) and a training TOML (``--config_file``: the script's own
argument names as keys) from one of TrainPilot's profiles (``trainpilot``), with ``spec.tool.config``
applied on top.

Runtime actions: sd-scripts reads no commands while it trains, so save, backup and sample are
acknowledged as not supported. Stop sends SIGINT to the process group and SIGTERM after the grace
period; sd-scripts does not save on an interrupt, so the last periodic checkpoint is what is kept.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

from kubepilot_api.trainingrun import KohyaProfile
from kubepilot_workers.trainer.adapters import toml_writer, trainpilot
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
from kubepilot_workers.trainer.adapters.progress import as_float, parse_tqdm
from kubepilot_workers.trainer.control import ActionFailed, TrainerControl

NOT_SUPPORTED = "not supported by kohya sd-scripts: it reads no commands while training"


TOTAL_STEPS = re.compile(r"total optimization steps[^:]*:\s*(\d+)")
NUM_EPOCHS = re.compile(r"num epochs[^:]*:\s*(\d+)")
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)\s*$")
SAVING = re.compile(r"saving checkpoint:\s*(\S.*?)\s*$")
SAMPLING = re.compile(r"generating sample images at step[^:]*:\s*(\d+)")
STEP_IN_NAME = re.compile(r"-step(\d+)\.")
SAFETENSORS = ".safetensors"


class KohyaControl:
    """Actions for sd-scripts: only stop, by signal."""

    def __init__(self, process: ToolProcess) -> None:
        self._process = process

    def save(self) -> str:
        raise ActionFailed(NOT_SUPPORTED)

    def backup(self) -> str:
        raise ActionFailed(NOT_SUPPORTED)

    def sample(self, params: dict[str, Any]) -> str:
        raise ActionFailed(NOT_SUPPORTED)

    def stop(self) -> str:
        if not self._process.signal_group(signal.SIGINT):
            return "the trainer had already exited"
        return (
            "sent SIGINT (SIGTERM follows after the grace period); sd-scripts does not save on interrupt, "
            "the last periodic checkpoint is kept"
        )


class KohyaAdapter(ToolAdapter):
    """kohya sd-scripts LoRA training."""

    tool_name = "kohya sd-scripts"

    def is_sdxl(self) -> bool:
        explicit = self.tool_settings.get("sdxl")
        if isinstance(explicit, bool):
            return explicit
        return "xl" in Path(self.config.baseModelPath).name.lower()

    def profile_name(self) -> KohyaProfile:
        chosen = self.config.tool.profile if self.config.tool else None
        return chosen or KohyaProfile.REGULAR

    def profile(self) -> trainpilot.ProfileSettings:
        return trainpilot.profile_settings(self.profile_name(), self.is_sdxl())

    def step_plan(self) -> trainpilot.StepPlan:
        return trainpilot.plan_steps(
            self.profile(), self.profile_name(), dataset_subsets(Path(self.config.datasetDir))
        )

    def dataset_document(self) -> dict[str, Any]:
        profile = self.profile()
        overrides = self.tool_settings
        subsets = dataset_subsets(Path(self.config.datasetDir))
        plan = self.step_plan()
        return {
            "general": {
                "shuffle_caption": True,
                "caption_extension": self.config.captionExtension,
                "keep_tokens": 1,
                "flip_aug": True,
            },
            "datasets": [
                {
                    "resolution": overrides.get("resolution") or profile.resolution,
                    "batch_size": overrides.get("train_batch_size", profile.train_batch_size),
                    "enable_bucket": True,
                    # TrainPilot's SDXL buckets; SD 1.x scales them to its 512-pixel base.
                    "min_bucket_reso": 768 if profile.resolution >= 1024 else 384,
                    "max_bucket_reso": 1600 if profile.resolution >= 1024 else 1024,
                    "bucket_reso_steps": 64,
                    "subsets": [
                        {"image_dir": str(subset.path), "num_repeats": repeats, "class_tokens": subset.name}
                        for subset, repeats in zip(subsets, plan.repeats, strict=True)
                    ],
                }
            ],
        }

    def training_document(self, dataset_toml: Path, sample_prompts: Path | None) -> dict[str, Any]:
        hyper = self.config.hyperparameters
        document: dict[str, Any] = {
            "pretrained_model_name_or_path": self.config.baseModelPath,
            "dataset_config": str(dataset_toml),
            "output_dir": self.config.outputDir,
            "output_name": self.config.outputName,
            "save_model_as": "safetensors",
            **trainpilot.training_settings(self.profile()),
            "max_train_steps": self.step_plan().max_train_steps,
            "seed": hyper.seed,
            "cache_latents": True,
            "logging_dir": str(self.paths.output_dir / "_logs" / "tensorboard"),
        }
        if sample_prompts is not None:
            document["sample_prompts"] = str(sample_prompts)
            document["sample_every_n_steps"] = hyper.sampleEverySteps
            document["sample_sampler"] = "euler_a"
        if self.config.resumeFrom:
            resume = Path(self.config.resumeFrom)
            # A LoRA file seeds the weights; a save_state folder resumes the whole training state.
            document["network_weights" if resume.suffix == SAFETENSORS else "resume"] = str(resume)
        for key, value in self.tool_settings.items():
            if key in {"sdxl", "script", "resolution", "train_batch_size"}:
                continue
            if value is None:
                document.pop(key, None)
            else:
                document[key] = value
        return document

    def prepare(self) -> LaunchPlan:
        sample_prompts = None
        hyper = self.config.hyperparameters
        if hyper.samplePrompts and hyper.sampleEverySteps > 0:
            sample_prompts = self.write_file("sample_prompts.txt", "\n".join(hyper.samplePrompts) + "\n")
        try:
            dataset_toml = self.write_file("dataset.toml", toml_writer.dumps(self.dataset_document()))
            training_toml = self.write_file(
                "training.toml", toml_writer.dumps(self.training_document(dataset_toml, sample_prompts))
            )
        except toml_writer.TomlError as error:
            raise AdapterConfigError(f"spec.tool.config: {error}") from error
        script_name = str(self.tool_settings.get("script") or "")
        if not script_name:
            script_name = "sdxl_train_network.py" if self.is_sdxl() else "train_network.py"
        if "/" in script_name or not script_name.endswith(".py"):
            raise AdapterConfigError("spec.tool.config.script must be a script file name in sd-scripts")
        root = tool_dir("KOHYA_DIR", "/opt/sd-scripts")
        accelerate = ["accelerate", "launch", "--num_cpu_threads_per_process", "2"]
        accelerate += ["--num_processes", str(gpu_count() * self.config.workers)]
        if self.config.workers > 1:
            # Multi-pod runs: the indexed Job gives each pod its rank, the headless Service the address.
            pod = pod_rendezvous(self.config.workers)
            accelerate += ["--num_machines", str(self.config.workers), "--multi_gpu"]
            accelerate += ["--machine_rank", str(pod.index)]
            accelerate += ["--main_process_ip", pod.master_addr, "--main_process_port", pod.master_port]
        argv = [*accelerate, str(root / script_name), "--config_file", str(training_toml)]
        files = [dataset_toml, training_toml] + ([sample_prompts] if sample_prompts else [])
        cwd = root if root.is_dir() else self.paths.output_dir
        return LaunchPlan(argv=launch_argv(argv), cwd=cwd, files=files)

    def parse_line(self, line: str) -> None:
        tracker = self.tracker
        if (bar := parse_tqdm(line)) is not None:
            if bar.desc == "steps":
                tracker.update(
                    step=bar.n,
                    max_steps=bar.total,
                    loss=as_float(bar.postfix.get("avr_loss")),
                    steps_per_second=bar.iterations_per_second,
                    eta_seconds=bar.remaining_seconds if bar.remaining_seconds >= 0 else None,
                )
            return
        stripped = line.strip()
        if match := EPOCH_LINE.match(stripped):
            tracker.update(epoch=int(match[1]) - 1, max_epochs=int(match[2]))
            tracker.set_message(f"epoch {match[1]}/{match[2]}")
        elif match := SAVING.search(stripped):
            path = match[1]
            step_match = STEP_IN_NAME.search(Path(path).name)
            tracker.add_checkpoint(path, int(step_match[1]) if step_match else None)
        elif match := SAMPLING.search(stripped):
            tracker.scan_samples(self.paths.output_dir / "sample")
            tracker.set_message(f"rendering samples at step {match[1]}")
        elif match := TOTAL_STEPS.search(stripped):
            tracker.update(max_steps=int(match[1]))
        elif match := NUM_EPOCHS.search(stripped):
            tracker.update(max_epochs=int(match[1]))

    def control(self, process: ToolProcess) -> TrainerControl:
        return KohyaControl(process)

    def final_outputs(self) -> list[Path]:
        self.tracker.scan_samples(self.paths.output_dir / "sample")
        final = self.paths.output_dir / f"{self.config.outputName}{SAFETENSORS}"
        return [final] if final.is_file() else []
