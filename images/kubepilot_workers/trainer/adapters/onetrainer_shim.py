"""Run OneTrainer's ``GenericTrainer`` in-process and feed it commands from a file.

Runs with OneTrainer's own Python (``python onetrainer_shim.py --onetrainer-dir DIR --config-path
FILE --commands-file FILE``); it imports only the standard library and OneTrainer's modules, so it
needs nothing from kubepilot installed. It mirrors OneTrainer's ``scripts/train.py`` and adds:

- a thread that polls the commands file for JSON lines ``{"id", "command", "params"}`` and calls
  ``TrainCommands.save / backup / sample_default / sample_custom / stop``, printing
  ``[kubepilot] command accepted id=N name=X`` (or ``rejected ... reason=...``);
- progress callbacks printed as ``[kubepilot] progress global_step=.. epoch=.. epoch_step=..
  epoch_length=.. max_epochs=..`` and ``[kubepilot] sample rendered``;
- SIGTERM handled as ``TrainCommands.stop()``, so a deleted pod still ends with the final save.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

POLL_SECONDS = 0.5
PREFIX = "[kubepilot]"


class WholeLineStream:
    """A text stream that writes only whole lines, one thread's at a time.

    ``print`` writes its text and its line end as two writes, so the trainer thread's "Saving ..."
    and our poller's "[kubepilot] command accepted ..." could interleave into one line that the
    adapter cannot parse (a checkpoint lost). Each thread's text is held until it ends a line
    (``\\n``, or ``\\r`` for tqdm redraws) or flushes, then written whole under a lock that
    stdout and stderr share (they are one pipe to the adapter).
    """

    _lock = threading.Lock()

    def __init__(self, target: Any) -> None:
        self._target = target
        self._pending = threading.local()

    def _buffer(self) -> str:
        return getattr(self._pending, "text", "")

    def write(self, text: str) -> int:
        buffered = self._buffer() + text
        cut = max(buffered.rfind("\n"), buffered.rfind("\r")) + 1
        self._pending.text = buffered[cut:]
        if cut:
            self._emit(buffered[:cut])
        return len(text)

    def flush(self) -> None:
        partial = self._buffer()
        self._pending.text = ""
        self._emit(partial)

    def _emit(self, text: str) -> None:
        with self._lock:
            if text:
                self._target.write(text)
            self._target.flush()

    def __getattr__(self, name: str) -> Any:
        # isatty, fileno, encoding, ... as the real stream has them.
        return getattr(self._target, name)


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


class CommandPoller(threading.Thread):
    """Reads new complete lines of the commands file and hands them to ``TrainCommands``."""

    def __init__(self, path: Path, commands: Any, sample_config_class: Any) -> None:
        super().__init__(name="kubepilot-commands", daemon=True)
        self.path = path
        self.commands = commands
        self.sample_config_class = sample_config_class
        self.offset = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for raw in complete.splitlines():
            if raw.strip():
                self.dispatch(raw)

    def dispatch(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            command_id = int(message["id"])
            name = str(message["command"])
            params = message.get("params") or {}
        except (ValueError, KeyError, TypeError):
            say("command rejected id=0 name=unknown reason=unreadable command line")
            return
        try:
            self.apply(name, params)
        except Exception as error:  # report any OneTrainer-side failure to the adapter
            say(f"command rejected id={command_id} name={name} reason={type(error).__name__}: {error}")
            return
        say(f"command accepted id={command_id} name={name}")

    def apply(self, name: str, params: dict[str, Any]) -> None:
        if name == "save":
            self.commands.save()
        elif name == "backup":
            self.commands.backup()
        elif name == "stop":
            self.commands.stop()
        elif name == "sample" and not params:
            self.commands.sample_default()
        elif name == "sample":
            self.commands.sample_custom(self.sample_config(params))
        else:
            raise ValueError(f"unknown command {name}")

    def sample_config(self, params: dict[str, Any]) -> Any:
        config = self.sample_config_class.default_values()
        config.prompt = str(params["prompt"])
        config.negative_prompt = str(params.get("negative_prompt", ""))
        if "seed" in params:
            config.seed = int(params["seed"])
            config.random_seed = False
        if "steps" in params:
            config.diffusion_steps = int(params["steps"])
        if "cfg_scale" in params:
            config.cfg_scale = float(params["cfg_scale"])
        if "width" in params:
            config.width = int(params["width"])
        if "height" in params:
            config.height = int(params["height"])
        return config


def on_progress(train_progress: Any, epoch_length: int, max_epochs: int) -> None:
    say(
        f"progress global_step={train_progress.global_step} epoch={train_progress.epoch} "
        f"epoch_step={train_progress.epoch_step} epoch_length={epoch_length} max_epochs={max_epochs}"
    )


def on_sample(_output: Any) -> None:
    say("sample rendered")


def wire_callbacks(callbacks: Any) -> None:
    """Attach our printers with whichever setter names this OneTrainer version has."""
    for setter in ("set_on_update_train_progress", "set_on_update_progress"):
        if hasattr(callbacks, setter):
            getattr(callbacks, setter)(on_progress)
    for setter in ("set_on_sample_default", "set_on_sample_custom"):
        if hasattr(callbacks, setter):
            getattr(callbacks, setter)(on_sample)
    if hasattr(callbacks, "set_on_update_status"):
        callbacks.set_on_update_status(lambda status: say(f"status {status}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run OneTrainer with a commands file.")
    parser.add_argument("--onetrainer-dir", required=True, type=Path)
    parser.add_argument("--config-path", required=True, type=Path)
    parser.add_argument("--commands-file", required=True, type=Path)
    args = parser.parse_args(argv)

    sys.stdout = WholeLineStream(sys.stdout)
    sys.stderr = WholeLineStream(sys.stderr)
    root = args.onetrainer_dir.resolve()
    sys.path.insert(0, str(root))
    os.chdir(root)
    train_config_class = load("modules.util.config.TrainConfig", "TrainConfig")
    sample_config_class = load("modules.util.config.SampleConfig", "SampleConfig")
    callbacks_class = load("modules.util.callbacks.TrainCallbacks", "TrainCallbacks")
    commands_class = load("modules.util.commands.TrainCommands", "TrainCommands")
    trainer_class = load("modules.trainer.GenericTrainer", "GenericTrainer")

    config = train_config_class.default_values()
    with args.config_path.open(encoding="utf-8") as handle:
        document = json.load(handle)
    # OneTrainer migrates a config with no "__version" from format 0, through every migration, and
    # those rewrite current keys (the "optimizer" object among them). A config written by hand has
    # current keys and no version: it is taken as written for the OneTrainer installed here.
    installed_version = getattr(config, "config_version", None)
    if "__version" not in document and isinstance(installed_version, int):
        document["__version"] = installed_version
        say(f"config has no __version; taken as OneTrainer's current format {installed_version}")
    config.from_dict(document)
    callbacks = callbacks_class()
    wire_callbacks(callbacks)
    commands = commands_class()
    poller = CommandPoller(args.commands_file, commands, sample_config_class)
    poller.start()

    def stop_on_signal(signum: int, frame: FrameType | None) -> None:
        commands.stop()

    signal.signal(signal.SIGTERM, stop_on_signal)
    trainer = trainer_class(config, callbacks, commands)
    started = time.monotonic()
    trainer.start()
    canceled = False
    try:
        trainer.train()
    except KeyboardInterrupt:
        canceled = True
    if not canceled or getattr(config, "backup_before_save", False):
        trainer.end()
    poller.stopped.set()
    say(f"finished after {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
