"""The Copilot sidecar (ControlPilot CS-01 … CS-03) over real HTTP, with a stand-in ``copilot``.

The real GitHub Copilot CLI (npm ``@github/copilot``) needs Node, a network connection and a GitHub
account, none of which a test run has. So each test writes a small stand-in ``copilot`` executable
into ``tmp_path`` and puts it first on ``PATH``. It prints, as JSON, its argv, its working folder
and whether a GitHub token reached its environment; some prompts make it misbehave on purpose
(print the token, flood its output, hang while ignoring SIGTERM with a child of its own).

Requests go through httpx's ASGITransport into the FastAPI app (the HTTP layer, validation and
status codes included); one test runs ``python -m kubepilot_workers.copilot`` under uvicorn on a
loopback port.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_workers.copilot.server import SidecarSettings, create_app, link_volumes

TOKEN = "ghp_t0kenV4lueThatMustNeverLeak42"
OTHER_TOKEN = "github_pat_another0neThatMustNotLeak"

STAND_IN = r"""#!{python}
import json, os, signal, subprocess, sys, time

args = sys.argv[1:]
if args == ["--version"]:
    with open(os.environ["STAND_IN_VERSIONS"], "a") as f:
        f.write("asked\n")
    print("0.0.0-stand-in")
    sys.exit(0)
prompt = args[args.index("-p") + 1] if "-p" in args else ""
token = os.environ.get("COPILOT_GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN")
if prompt == "leak":
    print("stdout has", token)
    print("stderr has", token, file=sys.stderr)
elif prompt == "flood":
    sys.stdout.write("x" * 20000 + "END")
    sys.exit(0)
elif prompt == "fail":
    print("it went wrong", file=sys.stderr)
    sys.exit(3)
elif prompt == "background":
    child = subprocess.Popen(["sleep", "60"])  # inherits stdout and stderr, and outlives the CLI
    with open(os.environ["STAND_IN_PIDS"], "w") as f:
        f.write(str(child.pid))
elif prompt == "hang":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "60"])
    with open(os.environ["STAND_IN_PIDS"], "w") as f:
        f.write(f"{{os.getpid()}} {{child.pid}}")
    print("started", flush=True)
    time.sleep(60)
print(json.dumps({{
    "argv": args,
    "cwd": os.getcwd(),
    "token_set": bool(token),
    "contract_env": sorted(k for k in os.environ if k.startswith("KUBEPILOT_")),
}}))
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    (root / "project").mkdir(parents=True)
    return root


@pytest.fixture
def cli_bin(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "copilot"
    script.write_text(STAND_IN.format(python=sys.executable))
    script.chmod(0o755)
    return folder


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, cli_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in first on PATH, a private HOME, the token in the CLI's variable and nothing else."""
    monkeypatch.setenv("PATH", f"{cli_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("COPILOT_HOME", "XDG_CONFIG_HOME", "GH_TOKEN", "GITHUB_TOKEN", "COPILOT_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COPILOT_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("KUBEPILOT_REPORT_URL", "http://operator/report")
    monkeypatch.setenv("STAND_IN_PIDS", str(tmp_path / "pids"))
    monkeypatch.setenv("STAND_IN_VERSIONS", str(tmp_path / "versions"))


@pytest.fixture
def settings(workspace: Path) -> SidecarSettings:
    return SidecarSettings(workspace=str(workspace), timeout_seconds=30, kill_grace_seconds=1)


def client_for(settings: SidecarSettings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://sidecar", timeout=60)


@pytest.fixture
async def client(settings: SidecarSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(settings) as c:
        yield c


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def cli_report(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    report: dict[str, Any] = json.loads(body["stdout"])
    return report


def no_token_in(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert OTHER_TOKEN not in text


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by its new parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def all_gone(pids: list[int], within: float) -> bool:
    """The processes exit within ``within`` seconds (their new parent reaps them)."""
    deadline = time.monotonic() + within
    while not all(gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- CS-01, CS-02 -------------------------------------------------------------------------------------


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_status_reports_the_cli_config_and_token_presence_but_no_secret(
    client: httpx.AsyncClient, tmp_path: Path, cli_bin: Path, workspace: Path, logs: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "home" / ".copilot" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"oauth_token": OTHER_TOKEN}))
    response = await client.get("/status")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "copilot_in_path": True,
        "copilot_path": str(cli_bin / "copilot"),
        "home": str(tmp_path / "home"),
        "xdg_config_home": str(tmp_path / "home" / ".config"),
        "cwd": str(workspace),
        "config_json": str(config),
        "config_exists": True,
        "port": 7879,
        "env_has_token": True,
        "config_has_token_like_field": True,
        "copilot_version": "0.0.0-stand-in",
    }
    no_token_in(response.text, logs.text)


async def test_status_asks_the_cli_its_version_once_per_executable(
    client: httpx.AsyncClient, cli_bin: Path, tmp_path: Path
) -> None:
    for _ in range(3):
        assert (await client.get("/status")).json()["copilot_version"] == "0.0.0-stand-in"
    assert (tmp_path / "versions").read_text().count("asked") == 1
    script = cli_bin / "copilot"
    stat = script.stat()
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # an updated CLI
    assert (await client.get("/status")).json()["copilot_version"] == "0.0.0-stand-in"
    assert (tmp_path / "versions").read_text().count("asked") == 2


async def test_status_without_the_cli_or_a_token(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("COPILOT_GITHUB_TOKEN")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    body = (await client.get("/status")).json()
    assert body["copilot_in_path"] is False
    assert body["copilot_path"] is None
    assert body["env_has_token"] is False
    assert body["config_exists"] is False
    assert body["xdg_config_home"] == str(tmp_path / "xdg")
    assert body["config_json"] == str(tmp_path / "xdg" / ".copilot" / "config.json")
    assert not {"copilot_version", "copilot_version_error", "config_has_token_like_field"} & body.keys()


async def test_status_reports_a_cli_that_cannot_say_its_version(
    client: httpx.AsyncClient, cli_bin: Path
) -> None:
    (cli_bin / "copilot").write_text("#!/nonexistent/interpreter\n")
    body = (await client.get("/status")).json()
    assert body["copilot_in_path"] is True
    assert body["copilot_version_error"] == "Unable to determine version"
    assert "copilot_version" not in body


# --- CS-03 --------------------------------------------------------------------------------------------


async def test_chat_runs_the_cli_with_the_default_flags_in_cwd(
    client: httpx.AsyncClient, cli_bin: Path, workspace: Path, tmp_path: Path
) -> None:
    response = await client.post("/chat", json={"prompt": "  say hi  ", "cwd": str(workspace / "project")})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ok", "returncode", "duration_seconds", "stdout", "stderr", "command"}
    assert body["ok"] is True
    assert body["returncode"] == 0
    assert body["duration_seconds"] >= 0
    assert body["stderr"] == ""
    expected = ["-p", "say hi", "--allow-all-tools", "--allow-all-paths"]
    assert body["command"] == [str(cli_bin / "copilot"), *expected]
    report = cli_report(response)
    assert report["argv"] == expected
    assert report["cwd"] == str((workspace / "project").resolve())
    assert report["token_set"] is True
    assert report["contract_env"] == []  # kubepilot's own variables are not the agent's business
    trusted = json.loads((tmp_path / "home" / ".copilot" / "config.json").read_text())["trusted_folders"]
    assert trusted == [str((workspace / "project").resolve())]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"allow_all_tools": False, "allow_all_paths": False}, []),
        ({"allow_all_urls": True}, ["--allow-all-tools", "--allow-all-paths", "--allow-all-urls"]),
        ({"allow_all_paths": False, "allow_all_urls": True}, ["--allow-all-tools", "--allow-all-urls"]),
    ],
)
async def test_chat_passes_the_allow_flags_the_request_asks_for(
    client: httpx.AsyncClient, flags: dict[str, bool], expected: list[str]
) -> None:
    response = await client.post("/chat", json={"prompt": "go", **flags})
    assert response.status_code == 200
    assert cli_report(response)["argv"] == ["-p", "go", *expected]
    assert response.json()["command"][1:] == ["-p", "go", *expected]


@pytest.mark.parametrize("cwd", [None, "", "   ", "project", "./project/.."])
async def test_chat_cwd_defaults_to_the_workspace_and_relative_is_under_it(
    client: httpx.AsyncClient, workspace: Path, cwd: str | None
) -> None:
    body: dict[str, Any] = {"prompt": "where"}
    if cwd is not None:
        body["cwd"] = cwd
    response = await client.post("/chat", json=body)
    assert response.status_code == 200
    expected = workspace / "project" if cwd == "project" else workspace
    assert cli_report(response)["cwd"] == str(expected.resolve())


async def test_chat_reports_a_failing_cli(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat", json={"prompt": "fail"})
    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["returncode"]) == (False, 3)
    assert body["stderr"] == "it went wrong\n"


async def test_chat_blank_prompt_is_400(client: httpx.AsyncClient) -> None:
    for prompt in ("", "   \n\t"):
        response = await client.post("/chat", json={"prompt": prompt})
        assert response.status_code == 400
        assert response.json() == {"detail": "prompt is required"}


async def test_chat_missing_or_mistyped_fields_are_422(client: httpx.AsyncClient) -> None:
    for body in ({}, {"cwd": "/workspace"}, {"prompt": "x", "allow_all_tools": "maybe"}):
        response = await client.post("/chat", json=body)
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], list)
    response = await client.post("/chat", json={"prompt": "x", "timeout_seconds": -1})
    assert response.status_code == 422


async def test_chat_without_the_cli_is_503(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    response = await client.post("/chat", json={"prompt": "hello"})
    assert response.status_code == 503
    assert response.json() == {"detail": "copilot CLI not found in PATH"}


async def test_chat_cwd_outside_the_default_workspace_is_400() -> None:
    """The stated root, /workspace (absent here): its parent is outside, whatever exists."""
    async with client_for(SidecarSettings()) as client:
        for cwd in ("/workspace/../etc", "/etc", "/workspace2", "/"):
            response = await client.post("/chat", json={"prompt": "x", "cwd": cwd})
            assert response.status_code == 400, cwd
            assert response.json() == {"detail": "cwd must be under /workspace"}


async def test_chat_cwd_outside_the_workspace_is_400_on_the_real_path(
    client: httpx.AsyncClient, workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace.parent / f"{workspace.name}2").mkdir()
    (workspace / "escape").symlink_to(outside, target_is_directory=True)
    (workspace / "project" / "deeper").symlink_to(tmp_path, target_is_directory=True)
    refused = [
        f"{workspace}/../outside",
        f"{workspace}/project/../../outside",
        f"{workspace}2",  # a sibling sharing the prefix
        str(workspace / "escape"),  # a link inside that points out
        str(workspace / "escape" / "."),
        str(workspace / "project" / "deeper" / "outside"),
        "../outside",
        "escape",
        str(outside),
    ]
    for cwd in refused:
        response = await client.post("/chat", json={"prompt": "x", "cwd": cwd})
        assert response.status_code == 400, cwd
        assert response.json() == {"detail": f"cwd must be under {workspace}"}, cwd


async def test_chat_cwd_must_be_an_existing_folder(client: httpx.AsyncClient, workspace: Path) -> None:
    (workspace / "file.txt").write_text("")
    for cwd in (str(workspace / "missing"), str(workspace / "file.txt")):
        response = await client.post("/chat", json={"prompt": "x", "cwd": cwd})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("cwd is not a directory")


async def test_a_link_to_a_declared_volume_is_inside_the_workspace(workspace: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    settings = SidecarSettings(workspace=str(workspace), volumes=(str(models),))
    link_volumes(settings)
    assert (workspace / "models").is_symlink()
    link_volumes(settings)  # again: the link is there already
    async with client_for(settings) as client:
        response = await client.post(
            "/chat", json={"prompt": "x", "cwd": "/".join([str(workspace), "models/loras"])}
        )
        assert response.status_code == 200
        assert cli_report(response)["cwd"] == str((models / "loras").resolve())
        response = await client.post("/chat", json={"prompt": "x", "cwd": str(models)})
        assert response.status_code == 200


async def test_chat_timeout_is_124_and_kills_the_process_group(workspace: Path, tmp_path: Path) -> None:
    """The stand-in ignores SIGTERM and has a child: SIGKILL after the grace period ends both."""
    settings = SidecarSettings(workspace=str(workspace), timeout_seconds=1800, kill_grace_seconds=1)
    async with client_for(settings) as client:
        started = time.monotonic()
        response = await client.post("/chat", json={"prompt": "hang", "timeout_seconds": 1})
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["returncode"]) == (False, 124)
    assert body["stdout"] == "started\n"
    assert body["stderr"].endswith("Timed out after 1s\n")
    assert 1 <= body["duration_seconds"] < 10
    assert elapsed < 10
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert all_gone(pids, within=5), pids


async def test_the_run_ends_when_the_cli_exits_and_what_it_left_running_is_killed(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    started = time.monotonic()
    response = await client.post("/chat", json={"prompt": "background"})
    assert time.monotonic() - started < 10  # not the 30 s time limit: the open pipes do not count
    body = response.json()
    assert (body["ok"], body["returncode"]) == (True, 0)
    assert cli_report(response)["argv"][:2] == ["-p", "background"]
    assert all_gone([int((tmp_path / "pids").read_text())], within=5)


def test_the_default_timeout_comes_from_the_environment() -> None:
    assert SidecarSettings.from_env({}).timeout_seconds == 1800
    settings = SidecarSettings.from_env(
        {"COPILOT_TIMEOUT_SECONDS": "2.5", "COPILOT_WORKSPACE": "/work/space/", "COPILOT_VOLUMES": "/a:/b/"}
    )
    assert (settings.timeout_seconds, settings.workspace, settings.volumes) == (
        2.5,
        "/work/space",
        ("/a", "/b"),
    )
    assert SidecarSettings.from_env({"COPILOT_TIMEOUT_SECONDS": "9"}, timeout_seconds=3).timeout_seconds == 3
    with pytest.raises(ValueError):
        SidecarSettings.from_env({"COPILOT_WORKSPACE": "relative"})


async def test_output_is_capped_keeping_the_end(workspace: Path) -> None:
    settings = SidecarSettings(workspace=str(workspace), max_output_bytes=1000)
    async with client_for(settings) as client:
        response = await client.post("/chat", json={"prompt": "flood"})
    stdout = response.json()["stdout"]
    assert stdout.startswith("[... 19003 earlier bytes cut ...]\n")
    assert stdout.endswith("END")
    assert len(stdout) < 1100


# --- the token ------------------------------------------------------------------------------------------


async def test_the_token_never_appears_in_responses_or_logs(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GH_TOKEN", OTHER_TOKEN)
    texts: list[str] = []
    leak = await client.post("/chat", json={"prompt": "leak"})
    assert leak.status_code == 200
    assert leak.json()["stdout"].startswith("stdout has ***\n{")
    assert leak.json()["stderr"] == "stderr has ***\n"
    pasted = await client.post("/chat", json={"prompt": f"use {TOKEN} and {OTHER_TOKEN}"})
    assert pasted.json()["command"][1:3] == ["-p", "use *** and ***"]
    texts += [leak.text, pasted.text]
    for method, path, body in (
        ("GET", "/status", None),
        ("POST", "/chat", {"prompt": "x", "cwd": "/etc"}),
        ("POST", "/chat", {"prompt": ""}),
        ("POST", "/chat", {"prompt": "hi"}),
    ):
        response = await client.request(method, path, json=body)
        texts.append(response.text)
    no_token_in(*texts, logs.text)
    assert "prompt of" in logs.text  # the runs were logged, at DEBUG level and up


async def test_a_token_in_gh_token_alone_reaches_the_cli(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COPILOT_GITHUB_TOKEN")
    monkeypatch.setenv("GH_TOKEN", OTHER_TOKEN)
    response = await client.post("/chat", json={"prompt": "hi"})
    assert cli_report(response)["token_set"] is True
    no_token_in(response.text)


# --- the program ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def sidecar_process(workspace: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = _free_port()
    (tmp_path / "datasets").mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubepilot_workers.copilot",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workspace",
            str(workspace),
            "--volume",
            str(tmp_path / "datasets"),
            "--log-level",
            "DEBUG",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def test_the_program_serves_on_its_port(
    sidecar_process: tuple[subprocess.Popen[str], int], workspace: Path, tmp_path: Path
) -> None:
    process, port = sidecar_process
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            health = httpx.get(f"{base}/health", timeout=2)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the sidecar did not answer within 20 s"
            time.sleep(0.1)
    assert health.json() == {"ok": True}
    status = httpx.get(f"{base}/status", timeout=10).json()
    assert status["port"] == port
    assert status["cwd"] == str(workspace)
    assert (workspace / "datasets").resolve() == (tmp_path / "datasets").resolve()
    chat = httpx.post(f"{base}/chat", json={"prompt": "hi", "cwd": "datasets"}, timeout=30)
    assert chat.status_code == 200
    assert json.loads(chat.json()["stdout"])["cwd"] == str((tmp_path / "datasets").resolve())
    process.terminate()
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert TOKEN not in output
    assert "prompt of 2 characters" in output
