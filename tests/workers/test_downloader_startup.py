"""The downloader's start-up stays lean: what every pull pays before its first byte.

On a fast local network a 2 GB pull takes about two seconds, so start-up is a visible share of the
end-to-end time (bench/downloader_bench.py). These tests pin the choices that keep it small, by what
is imported and built, not by a clock: the CLI loads neither huggingface_hub (Hub pulls only) nor
httpx (Civitai only) nor torch, and the API's validators are built on first use, not at import.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["huggingface_hub", "httpx", "httpx2", "torch", "diffusers", "rich"]


def _modules_after(statement: str) -> dict[str, bool]:
    probe = (
        f"import sys, json\n{statement}\n"
        f"print(json.dumps({{name: name in sys.modules for name in {HEAVY!r}}}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: dict[str, bool] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_the_cli_imports_no_http_client_library_nor_torch() -> None:
    loaded = _modules_after("import kubepilot_workers.downloader.cli")
    assert not any(loaded.values()), {name for name, present in loaded.items() if present}


def test_the_hub_client_loads_huggingface_hub_but_not_httpx() -> None:
    loaded = _modules_after("import kubepilot_workers.downloader.huggingface")
    assert loaded["huggingface_hub"]
    assert not loaded["httpx"] and not loaded["torch"]


def test_api_validators_are_built_on_first_use() -> None:
    probe = (
        "from kubepilot_api.generationjob import GenerationJob\n"
        "from kubepilot_api.modelpull import ModelPull\n"
        "before = (GenerationJob.__pydantic_complete__, ModelPull.__pydantic_complete__)\n"
        "ModelPull.model_json_schema()\n"
        "print(before, GenerationJob.__pydantic_complete__, ModelPull.__pydantic_complete__)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["(False,", "False)", "False", "True"]
