"""Demo models for the local stack: a tiny Stable Diffusion pipeline and a tiny 4x upscaler.

Random weights, built in seconds on a CPU by ``python -m kubepilot_workers.tinymodels`` (run as a
process: ``kubepilot dev`` imports none of the components), kept in the models volume between runs.
Their pictures are noise, but every generation path (txt2img, img2img, inpaint, upscale) really runs
end to end, so a fresh machine can try every profile's image endpoints without downloading a model.
The operator, the sd.cpp Studio and HomePilot profiles are pointed at them; ``--no-demo-models``
leaves them out (a real model is then pulled or copied into the models volume).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODEL = "diffusers/tiny-sd"
"""The demo pipeline, relative to the models volume."""
MODEL_ID = "tiny-sd"
"""Its id in the sd.cpp Studio catalog."""
UPSCALER_NAME = "Tiny 4x"
"""The demo upscaler's name, as the operator's ``upscalers`` setting and the profiles give it."""
UPSCALER = "upscale_models/tiny-x4.safetensors"
"""Its file, relative to the models volume."""
BUILD_TIMEOUT_SECONDS = 300.0


def build(models: Path, log: Path) -> None:
    """Build whatever demo model the models volume lacks (a complete copy is left as it is)."""
    builds = [["sd", str(models / MODEL)], ["upscaler", str(models / UPSCALER), "--scale", "4"]]
    with log.open("a", encoding="utf-8") as out:
        for args in builds:
            if args[0] == "upscaler" and (models / UPSCALER).is_file():
                continue
            subprocess.run(
                [sys.executable, "-m", "kubepilot_workers.tinymodels", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=BUILD_TIMEOUT_SECONDS,
            )


def operator_settings() -> dict[str, object]:
    """The operator's default model for jobs that name none, and the demo upscaler."""
    return {"defaultGeneratorModel": MODEL, "upscalers": {UPSCALER_NAME: UPSCALER}}


def profile_settings() -> dict[str, dict[str, object]]:
    """The image profiles' catalogs, pointed at the demo models."""
    return {
        "sdcpp-studio": {
            "defaultModel": MODEL_ID,
            "models": [
                {
                    "id": MODEL_ID,
                    "name": "Tiny SD (random weights, CPU demo)",
                    "description": "Built by kubepilot dev: every path runs, the pictures are noise.",
                    "path": MODEL,
                    "capabilities": ["text-to-image", "image-to-image"],
                    "exec_mode": "cli",
                }
            ],
            "upscalers": [{"name": UPSCALER_NAME, "upscaler": UPSCALER_NAME, "scale": 4}],
            "defaultUpscaler": UPSCALER_NAME,
        },
        "homepilot": {"images": {"model": MODEL, "upscalers": [UPSCALER_NAME]}},
    }
