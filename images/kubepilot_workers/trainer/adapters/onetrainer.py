"""OneTrainer, run through :mod:`onetrainer_shim` so that actions reach it while it trains.

OneTrainer's trainer (``GenericTrainer``) takes runtime commands through a ``TrainCommands`` object
(stop, sample default / custom, backup, save); its GUI calls those methods, but its CLI
(``scripts/train.py``) creates the object and never feeds it. The shim does what ``scripts/train.py``
does (load the config JSON, build callbacks and commands, ``start`` / ``train`` / ``end``) and also
polls a commands file the adapter appends JSON lines to, calling the matching ``TrainCommands``
method. It prints ``[kubepilot] ...`` lines for accepted commands and for progress callbacks.

The config JSON is ``spec.tool.config`` (or the preset ``spec.tool.configName`` from OneTrainer's
``training_presets``) with our paths set: ``workspace_dir``, ``cache_dir``, ``base_model_name``,
``output_model_destination`` and ``concept_file_name`` (a concepts file built from the dataset).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubepilot_workers.trainer.adapters.base import (
    AdapterConfigError,
    ToolAdapter,
    dataset_subsets,
    launch_argv,
    tool_dir,
)
from kubepilot_workers.trainer.adapters.process import LaunchPlan, ToolProcess
from kubepilot_workers.trainer.adapters.progress import as_float, parse_tqdm
from kubepilot_workers.trainer.control import ActionFailed, TrainerControl

SHIM = Path(__file__).with_name("onetrainer_shim.py")
ACCEPT_TIMEOUT_SECONDS = 10.0
PRESET_NAME = re.compile(r"^[\w #.+()-]+$")
SHIM_PROGRESS = re.compile(
    r"^\[kubepilot\] progress global_step=(\d+) epoch=(\d+) epoch_step=(\d+)"
    r" epoch_length=(\d+) max_epochs=(\d+)"
)
SHIM_ACCEPTED = re.compile(r"^\[kubepilot\] command accepted id=(\d+) name=(\w+)")
SHIM_REJECTED = re.compile(r"^\[kubepilot\] command rejected id=(\d+) name=(\w+) reason=(.*)$")
SHIM_SAMPLE = re.compile(r"^\[kubepilot\] sample rendered")
SAVING = re.compile(r"^Saving (\S.*)$")
BACKUP = re.compile(r"^Creating Backup (\S.*)$")
PROGRESS_IN_NAME = re.compile(r"-(?:save|backup)-(\d+)-\d+-\d+")
CONCEPT_FORMAT_VERSION = 1
SAMPLE_KEYS = {"prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height"}


class OneTrainerControl:
    """Actions for OneTrainer: JSON lines in the commands file the shim polls."""

    def __init__(self, adapter: OneTrainerAdapter) -> None:
        self._adapter = adapter
        self._lock = threading.Lock()
        self._next_id = 1

    def _send(self, name: str, params: dict[str, Any] | None = None) -> None:
        with self._lock:
            command_id = self._next_id
            self._next_id += 1
            line = json.dumps({"id": command_id, "command": name, "params": params or {}}) + "\n"
            path = self._adapter.commands_file
            path.parent.mkdir(parents=True, exist_ok=True)
            # One write of a whole line: the shim only reads complete lines.
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)
        verdict = self._adapter.wait_for_verdict(command_id, ACCEPT_TIMEOUT_SECONDS)
        if verdict is None:
            raise ActionFailed(
                f"OneTrainer did not take the {name} command within {ACCEPT_TIMEOUT_SECONDS:.0f} s"
            )
        if verdict:
            raise ActionFailed(f"OneTrainer refused {name}: {verdict}")

    def save(self) -> str:
        self._send("save")
        return "OneTrainer saves the model at its next step"

    def backup(self) -> str:
        self._send("backup")
        return "OneTrainer writes a backup at its next step"

    def sample(self, params: dict[str, Any]) -> str:
        unknown = set(params) - SAMPLE_KEYS
        if unknown:
            raise ActionFailed(f"unknown sample parameters: {', '.join(sorted(unknown))}")
        if params and not str(params.get("prompt", "")).strip():
            raise ActionFailed("a custom sample needs a prompt")
        self._send("sample", params)
        return "OneTrainer renders the custom sample" if params else "OneTrainer renders its sample prompts"

    def stop(self) -> str:
        self._send("stop")
        return "OneTrainer stops after its current step and saves the final model"


class OneTrainerAdapter(ToolAdapter):
    """OneTrainer training through the command-polling shim."""

    tool_name = "OneTrainer"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verdicts: dict[int, str] = {}
        self._verdict_ready = threading.Condition()

    @property
    def commands_file(self) -> Path:
        return self.paths.control_dir / "onetrainer-commands.jsonl"

    @property
    def workspace(self) -> Path:
        return self.paths.output_dir / "workspace"

    @property
    def output_model(self) -> Path:
        return self.paths.output_dir / f"{self.config.outputName}.safetensors"

    def base_config(self, root: Path) -> dict[str, Any]:
        settings = self.tool_settings
        name = self.config.tool.configName if self.config.tool else ""
        if settings or not name:
            return settings
        if not PRESET_NAME.match(name):
            raise AdapterConfigError(f"spec.tool.configName {name!r} is not a preset name")
        preset = root / "training_presets" / f"{name}.json"
        try:
            loaded = json.loads(preset.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise AdapterConfigError(f"cannot read OneTrainer preset {preset}: {error}") from error
        if not isinstance(loaded, dict):
            raise AdapterConfigError(f"OneTrainer preset {preset} is not a JSON object")
        return loaded

    def concepts(self) -> list[dict[str, Any]]:
        return [
            {
                # Format 1 of OneTrainer's ConceptConfig (balancing, balancing_strategy); a later
                # OneTrainer migrates it from there.
                "__version": CONCEPT_FORMAT_VERSION,
                "name": subset.name,
                "path": str(subset.path),
                "enabled": True,
                "include_subdirectories": False,
                "balancing": float(subset.repeats),
                "balancing_strategy": "REPEATS",
                "text": {"prompt_source": "sample", "prompt_path": ""},
            }
            for subset in dataset_subsets(Path(self.config.datasetDir))
        ]

    def samples(self) -> list[dict[str, Any]]:
        hyper = self.config.hyperparameters
        return [
            {
                "enabled": True,
                "prompt": prompt,
                "negative_prompt": "",
                "width": hyper.resolution,
                "height": hyper.resolution,
                "seed": 42,
                "random_seed": False,
                "diffusion_steps": 20,
                "cfg_scale": 7.0,
            }
            for prompt in hyper.samplePrompts
        ]

    def prepare(self) -> LaunchPlan:
        root = tool_dir("ONETRAINER_DIR", "/opt/OneTrainer")
        document = self.base_config(root)
        concepts_file = self.write_file("concepts.json", json.dumps(self.concepts(), indent=2))
        document.pop("concepts", None)
        document.update(
            {
                "workspace_dir": str(self.workspace),
                "cache_dir": str(self.workspace / "cache"),
                "base_model_name": self.config.baseModelPath,
                "output_model_destination": str(self.output_model),
                "concept_file_name": str(concepts_file),
            }
        )
        files = [concepts_file]
        if self.config.hyperparameters.samplePrompts:
            samples_file = self.write_file("samples.json", json.dumps(self.samples(), indent=2))
            document.pop("samples", None)
            document["sample_definition_file_name"] = str(samples_file)
            files.append(samples_file)
        if self.config.resumeFrom:
            document["continue_last_backup"] = True
        config_file = self.write_file("onetrainer.json", json.dumps(document, indent=2))
        files.insert(0, config_file)
        self.commands_file.parent.mkdir(parents=True, exist_ok=True)
        self.commands_file.write_text("")
        python = os.environ.get("ONETRAINER_PYTHON", sys.executable)
        argv = [python, str(SHIM), "--onetrainer-dir", str(root), "--config-path", str(config_file)]
        argv += ["--commands-file", str(self.commands_file)]
        cwd = root if root.is_dir() else self.paths.output_dir
        return LaunchPlan(argv=launch_argv(argv), cwd=cwd, files=files)

    def wait_for_verdict(self, command_id: int, timeout: float) -> str | None:
        """'' once the shim accepted the command, the reason if it refused, None on timeout."""
        deadline = time.monotonic() + timeout
        with self._verdict_ready:
            while command_id not in self._verdicts:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._verdict_ready.wait(left)
            return self._verdicts.pop(command_id)

    def _verdict(self, command_id: int, reason: str) -> None:
        with self._verdict_ready:
            self._verdicts[command_id] = reason
            self._verdict_ready.notify_all()

    def parse_line(self, line: str) -> None:
        tracker = self.tracker
        if (bar := parse_tqdm(line)) is not None:
            if bar.desc == "step":
                loss = as_float(bar.postfix.get("smooth loss")) or as_float(bar.postfix.get("loss"))
                tracker.update(loss=loss, epoch_step=bar.n, steps_per_second=bar.iterations_per_second)
            elif bar.desc == "epoch":
                tracker.update(epoch=bar.n, max_epochs=bar.total)
            return
        stripped = line.strip()
        if match := SHIM_PROGRESS.match(stripped):
            step, epoch, epoch_step, epoch_length, max_epochs = (int(v) for v in match.groups())
            tracker.update(
                step=step,
                epoch=epoch,
                epoch_step=epoch_step,
                max_epochs=max_epochs,
                max_steps=epoch_length * max_epochs if epoch_length > 0 else None,
            )
        elif match := SHIM_ACCEPTED.match(stripped):
            self._verdict(int(match[1]), "")
        elif match := SHIM_REJECTED.match(stripped):
            self._verdict(int(match[1]), match[3] or "refused")
        elif SHIM_SAMPLE.match(stripped):
            self._scan_samples()
        elif match := BACKUP.match(stripped) or SAVING.match(stripped):
            path = match[1]
            step_match = PROGRESS_IN_NAME.search(Path(path).name)
            if Path(path) != self.output_model:
                tracker.add_checkpoint(path, int(step_match[1]) if step_match else None)

    def _scan_samples(self) -> None:
        samples = self.workspace / "samples"
        folders = [p for p in samples.iterdir() if p.is_dir()] if samples.is_dir() else []
        if folders:
            newest = max(folders, key=lambda p: p.stat().st_mtime)
            self.tracker.scan_samples(newest)

    def control(self, process: ToolProcess) -> TrainerControl:
        return OneTrainerControl(self)

    def final_outputs(self) -> list[Path]:
        self._scan_samples()
        return [self.output_model] if self.output_model.exists() else []
