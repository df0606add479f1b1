"""Static checks of every image's Dockerfile: images cannot be built here, so they are parsed.

A small parser joins continuation lines and drops comments the way Docker does; the checks then
hold each image to the house rules: pinned bases and tools, a non-root user, an entrypoint that
exists in this repository, extras that pyproject defines, and a health check on every server.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

REQUIRED_IMAGES = {
    "operator", "gateway", "downloader", "trainer", "generator", "node-agent", "comfyui", "kohya",
    "diffusion-pipe", "onetrainer", "jupyter", "code-server", "sdcpp-server", "copilot", "homepilot",
}  # fmt: skip
GPU_IMAGES = {
    "trainer",
    "generator",
    "comfyui",
    "kohya",
    "diffusion-pipe",
    "onetrainer",
    "jupyter",
    "code-server",
    "sdcpp-server",
}
SERVER_IMAGES = {
    "operator",
    "gateway",
    "generator",
    "node-agent",
    "comfyui",
    "jupyter",
    "code-server",
    "sdcpp-server",
    "copilot",
    "homepilot",
}
TOOL_IMAGES = {"comfyui", "kohya", "diffusion-pipe", "onetrainer", "sdcpp-server"}
"""Third-party tools that also carry our adapter, named by the ``io.kubepilot.adapter-command`` label."""
THIRD_PARTY_ONLY = {"jupyter", "code-server", "homepilot"}
"""Images that run no code of ours."""
ADAPTER_LABEL = "io.kubepilot.adapter-command"
PENDING_COMPONENTS: dict[str, str] = {}
"""Images whose program another issue writes. Until its ``cli`` module exists the test asserts the
command is *not* registered yet, so it turns red (and this table must shrink) the day it lands."""


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    value: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order. Comment lines are dropped, also inside a continued instruction."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].rstrip() if continued else stripped)
        if not continued:
            joined = " ".join(part for part in pending if part)
            keyword, _, value = joined.partition(" ")
            instructions.append(Instruction(keyword.upper(), value.strip(), start))
            pending = []
    if pending:
        raise ValueError(f"instruction from line {start} ends with a line continuation")
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the last build stage (the image that ships)."""
    starts = [i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    return instructions[starts[-1] :]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.value:
            name, _, value = instruction.value.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def dockerfile(name: str) -> list[Instruction]:
    return parse_dockerfile((IMAGES / f"{name}.Dockerfile").read_text())


def exec_form(instruction: Instruction) -> list[str]:
    argv = json.loads(instruction.value)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), (
        f"line {instruction.line}: not JSON"
    )
    return argv


def command_problem(argv: list[str]) -> str | None:
    """Why ``argv`` would not start one of our programs; None when it would."""
    if argv[:2] == ["tini", "--"]:
        argv = argv[2:]
    program = Path(argv[0]).name
    if program == "kubepilot":
        registered = PYPROJECT["project"].get("entry-points", {}).get("kubepilot.commands", {})
        if len(argv) < 2 or argv[1] not in registered:
            return f"`kubepilot {' '.join(argv[1:2])}` is not a registered kubepilot.commands entry point"
        return None
    if program.startswith("python") and len(argv) >= 3 and argv[1] == "-m":
        module = argv[2]
        spec = importlib.util.find_spec(module)
        if spec is None:
            return f"module {module} does not exist"
        if (
            spec.submodule_search_locations is not None
            and importlib.util.find_spec(f"{module}.__main__") is None
        ):
            return f"package {module} has no __main__ module to run"
        return None
    return f"{argv[0]} is not a kubepilot program"


def test_the_parser_joins_continuations_and_drops_comments_inside_them() -> None:
    text = (
        "# syntax=docker/dockerfile:1\nFROM a:1 AS b\n\n"
        "RUN x \\\n  # a comment\n  && y \\\n\n  && z\nUSER 10001\n"
    )
    assert parse_dockerfile(text) == [
        Instruction("FROM", "a:1 AS b", 2),
        Instruction("RUN", "x && y && z", 4),
        Instruction("USER", "10001", 9),
    ]
    with pytest.raises(ValueError, match="continuation"):
        parse_dockerfile("RUN a \\\n")


def test_the_command_check_tells_real_entrypoints_from_missing_ones() -> None:
    assert command_problem(["python", "-m", "kubepilot_workers.adapters"]) is None
    assert command_problem(["kubepilot", "crds"]) is None
    assert command_problem(["python", "-m", "kubepilot_workers.nothing_here"]) is not None
    assert command_problem(["python", "-m", "kubepilot_workers"]) is not None, "a package without __main__"
    assert command_problem(["kubepilot", "no-such-command"]) is not None


def test_every_required_image_has_a_dockerfile() -> None:
    present = {path.name.removesuffix(".Dockerfile") for path in IMAGES.glob("*.Dockerfile")}
    assert present == REQUIRED_IMAGES


@pytest.mark.parametrize("name", sorted(REQUIRED_IMAGES))
def test_base_images_are_pinned_and_gpu_images_build_on_cuda(name: str) -> None:
    instructions = dockerfile(name)
    stages: set[str] = set()
    for instruction in (i for i in instructions if i.keyword == "FROM"):
        words = instruction.value.split()
        image = next(word for word in words if not word.startswith("--"))
        if len(words) >= 3 and words[-2].upper() == "AS":
            stages.add(words[-1])
        if image in stages:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, (
            f"{name}: {image} is not pinned to a tag"
        )
    base = final_stage(instructions)[0].value.split()[0]
    if name in GPU_IMAGES:
        assert base.startswith(("nvidia/cuda:", "pytorch/pytorch:")), (
            f"{name} uses a GPU but builds on {base}"
        )
    else:
        assert base.startswith("python:3.11"), f"{name} should build on python:3.11-slim, not {base}"


@pytest.mark.parametrize("name", sorted(REQUIRED_IMAGES))
def test_the_image_runs_as_a_non_root_user(name: str) -> None:
    users = [i.value.split(":")[0] for i in final_stage(dockerfile(name)) if i.keyword == "USER"]
    assert users, f"{name} sets no USER"
    assert users[-1] not in {"root", "0"}, f"{name} runs as root"


@pytest.mark.parametrize("name", sorted(REQUIRED_IMAGES))
def test_the_entrypoint_starts_a_program_that_exists(name: str) -> None:
    stage = final_stage(dockerfile(name))
    entrypoints = [i for i in stage if i.keyword == "ENTRYPOINT"]
    assert entrypoints, f"{name} has no ENTRYPOINT"
    argv = exec_form(entrypoints[-1])
    labels = {}
    for instruction in (i for i in stage if i.keyword == "LABEL"):
        labels.update(dict(part.split("=", 1) for part in shlex.split(instruction.value)))
    if name in TOOL_IMAGES:
        assert ADAPTER_LABEL in labels, f"{name} must say how to start the adapter it carries"
        assert command_problem(labels[ADAPTER_LABEL].split()) is None, command_problem(
            labels[ADAPTER_LABEL].split()
        )
    if name not in TOOL_IMAGES | THIRD_PARTY_ONLY:
        problem = command_problem(argv)
        component = PENDING_COMPONENTS.get(name)
        if component is not None:
            assert argv == ["kubepilot", name], f"{name} starts through its kubepilot subcommand"
            assert importlib.util.find_spec(f"{component}.cli") is None, (
                f"{component} landed: drop it from PENDING"
            )
            assert problem is not None and "not a registered" in problem, problem
            return
        assert problem is None, f"{name}: {problem}"


@pytest.mark.parametrize("name", sorted(REQUIRED_IMAGES))
def test_our_package_is_installed_with_extras_pyproject_defines(name: str) -> None:
    extras_defined = set(PYPROJECT["project"]["optional-dependencies"])
    runs = " ".join(i.value for i in dockerfile(name) if i.keyword == "RUN")
    # Our source tree installed from a path: ".[x]" or "/tmp/src[x]"; "uvicorn[standard]" is not a path.
    requested = re.findall(r"""(?:^|[\s"'])(?:\.|/[^\s"'\[]*)\[([A-Za-z0-9_,-]+)\]""", runs)
    if name in THIRD_PARTY_ONLY:
        assert not requested
        return
    assert requested, f"{name} does not install the kubepilot package"
    for group in requested:
        for extra in group.split(","):
            assert extra in extras_defined, (
                f"{name} installs extra [{extra}], which pyproject does not define"
            )


@pytest.mark.parametrize("name", sorted(REQUIRED_IMAGES))
def test_tools_and_packages_are_installed_at_pinned_versions(name: str) -> None:
    instructions = dockerfile(name)
    defaults = arg_defaults(instructions)
    for run in (i for i in instructions if i.keyword == "RUN"):
        if "git clone" in run.value:
            checkouts = re.findall(r"checkout --detach \"?\$\{?(\w+)\}?\"?", run.value)
            assert checkouts, f"{name} line {run.line}: a git clone without a pinned checkout"
            for arg in checkouts:
                assert re.fullmatch(r"[0-9a-f]{40}", defaults.get(arg, "")), f"{name}: {arg} is not a commit"
        for command in re.split(r"&&|;", run.value):
            words = shlex.split(command)
            if "pip" not in [Path(w).name for w in words[:2]] or "install" not in words:
                continue
            specs = words[words.index("install") + 1 :]
            skip_next = False
            for spec in specs:
                if skip_next or spec.startswith("-"):
                    skip_next = spec in {"-r", "-c", "--index-url", "--extra-index-url"}
                    continue
                if spec.startswith(("/", ".")):
                    continue  # our own source tree
                assert "==" in spec, f"{name} line {run.line}: {spec} is not pinned"
    for url in re.findall(r"https://\S+/releases/download/\S+", " ".join(i.value for i in instructions)):
        assert "latest" not in url, f"{name}: release download is not pinned: {url}"


@pytest.mark.parametrize("name", sorted(SERVER_IMAGES))
def test_servers_declare_a_health_check(name: str) -> None:
    checks = [i for i in final_stage(dockerfile(name)) if i.keyword == "HEALTHCHECK"]
    assert checks and " CMD " in f" {checks[-1].value} ", f"{name} serves but has no HEALTHCHECK CMD"
    exposed = [i for i in final_stage(dockerfile(name)) if i.keyword == "EXPOSE"]
    assert exposed, f"{name} serves but exposes no port"
    port = exposed[-1].value.split("/")[0]
    assert f":{port}/" in checks[-1].value, f"{name}: the health check does not probe the exposed port {port}"
