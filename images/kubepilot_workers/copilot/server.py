"""The Copilot Sidecar API (ControlPilot CS-01 … CS-03): ``/health``, ``/status`` and ``/chat``.

``POST /chat`` runs the GitHub Copilot CLI non-interactively::

    copilot -p <prompt> [--allow-all-tools] [--allow-all-paths] [--allow-all-urls]

(the CLI's own flag names: each ``allow_all_*`` field adds its flag when true) in ``cwd``, which must
lie under the workspace root. Containment is judged on the resolved real path, every symbolic link
followed, by path components: ``/workspace/../etc``, ``/workspace2`` and a link inside the workspace
that points out are all refused. The storage volumes (``volumes``; mounted elsewhere, e.g.
``/models``) are linked into the workspace at start and their real folders count as inside it.

The CLI runs in its own session (process group) with stdin closed; stdout and stderr are read
concurrently and each keeps only its last ``max_output_bytes``. On a timeout the whole group gets
SIGTERM, then SIGKILL after a grace period, and the answer is ``200`` with ``ok: false,
returncode: 124``; whatever the CLI leaves running is killed when it exits.

**The token.** The CLI reads its GitHub token from ``COPILOT_GITHUB_TOKEN``, ``GH_TOKEN`` or
``GITHUB_TOKEN``; the sidecar passes its own environment on (minus kubepilot's worker-contract
variables) and adds nothing else. No token value is logged, and every token value is masked out of
what ``/chat`` and ``/status`` return (``command``, ``stdout``, ``stderr``, the version text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import posixpath
import shutil
import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from kubepilot_api.workers.env import (
    CONFIG_ENV,
    CREDENTIALS_FILE_ENV,
    REPORT_URL_ENV,
    TERMINATION_MESSAGE_ENV,
    TOKEN_FILE_ENV,
)

log = logging.getLogger(__name__)

CLI_NAME = "copilot"
TOKEN_ENVS = ("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")
"""Where the Copilot CLI looks for a GitHub token, in its order of precedence."""
TOKEN_LIKE_CONFIG_KEYS = ("oauth_token", "github_token", "token")

WORKSPACE_ENV = "COPILOT_WORKSPACE"
CWD_ENV = "COPILOT_CWD"
VOLUMES_ENV = "COPILOT_VOLUMES"
TIMEOUT_ENV = "COPILOT_TIMEOUT_SECONDS"
PORT_ENV = "COPILOT_SIDECAR_PORT"
MAX_OUTPUT_ENV = "COPILOT_MAX_OUTPUT_BYTES"

DEFAULT_WORKSPACE = "/workspace"
DEFAULT_PORT = 7879
DEFAULT_TIMEOUT_SECONDS = 1800.0
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
MAX_PROMPT_CHARS = 100_000
"""Below Linux's limit on one argument (128 KiB), since the prompt is passed with ``-p``."""
VERSION_TIMEOUT_SECONDS = 10.0
TIMEOUT_RETURNCODE = 124
MASK = "***"

NOT_FOUND = "copilot CLI not found in PATH"
PROMPT_REQUIRED = "prompt is required"
"""ControlPilot's sidecar texts (seed-api-inventory §1.1 CS-03)."""

ALLOW_FLAGS = {
    "allow_all_tools": "--allow-all-tools",
    "allow_all_paths": "--allow-all-paths",
    "allow_all_urls": "--allow-all-urls",
}
"""Request field → the Copilot CLI option (docs.github.com, Copilot CLI programmatic reference)."""

CONTRACT_ENVS = frozenset(
    {CONFIG_ENV, REPORT_URL_ENV, TOKEN_FILE_ENV, TERMINATION_MESSAGE_ENV, CREDENTIALS_FILE_ENV}
)
"""kubepilot's worker-contract variables: the CLI (an agent running tools) has no use for them."""


@dataclass(frozen=True)
class SidecarSettings:
    """What the sidecar serves: the workspace root, the volumes inside it, the port and the limits."""

    workspace: str = DEFAULT_WORKSPACE
    """Root every ``cwd`` must lie under; it also names the root in the 400 message."""
    default_cwd: str = ""
    """``cwd`` when a request gives none; empty: the workspace root."""
    volumes: tuple[str, ...] = ()
    """Storage volumes mounted outside the workspace: linked as ``<workspace>/<basename>`` at start,
    and their real folders count as inside the workspace."""
    port: int = DEFAULT_PORT
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    kill_grace_seconds: float = 5.0
    """Between SIGTERM and SIGKILL to a timed-out CLI's process group."""

    def __post_init__(self) -> None:
        for path in (self.workspace, *self.volumes, *([self.default_cwd] if self.default_cwd else [])):
            if not posixpath.isabs(path):
                raise ValueError(f"{path!r} is not an absolute path")
        if self.timeout_seconds <= 0:
            raise ValueError("the timeout must be positive")
        if self.max_output_bytes < 1:
            raise ValueError("the output limit must be at least one byte")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SidecarSettings:
        """Settings from ``COPILOT_*`` variables (``COPILOT_VOLUMES`` is ``os.pathsep``-separated);
        ``overrides`` (command-line values) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get(WORKSPACE_ENV):
            values["workspace"] = env[WORKSPACE_ENV]
        if env.get(CWD_ENV):
            values["default_cwd"] = env[CWD_ENV]
        if env.get(VOLUMES_ENV):
            values["volumes"] = tuple(v for v in env[VOLUMES_ENV].split(os.pathsep) if v)
        if env.get(TIMEOUT_ENV):
            values["timeout_seconds"] = float(env[TIMEOUT_ENV])
        if env.get(PORT_ENV):
            values["port"] = int(env[PORT_ENV])
        if env.get(MAX_OUTPUT_ENV):
            values["max_output_bytes"] = int(env[MAX_OUTPUT_ENV])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "volumes" in values:
            values["volumes"] = tuple(posixpath.normpath(v) for v in values["volumes"])
        if "workspace" in values:
            values["workspace"] = posixpath.normpath(values["workspace"])
        return cls(**values)

    @property
    def cwd(self) -> str:
        return self.default_cwd or self.workspace


# --- paths -------------------------------------------------------------------------------------------


class CwdError(ValueError):
    """``cwd`` is refused; the message is the response's ``detail``."""


def _inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it, by components (both absolute and resolved)."""
    return path == root or os.path.commonpath([path, root]) == root


def resolve_cwd(raw: str | None, settings: SidecarSettings) -> Path:
    """The real folder ``raw`` names (relative: to the workspace root; empty: the default ``cwd``),
    when it lies under the workspace root or a volume. Raises CwdError otherwise."""
    outside = CwdError(f"cwd must be under {settings.workspace}")
    text = (raw or "").strip() or settings.cwd
    if "\x00" in text:
        raise outside
    candidate = text if posixpath.isabs(text) else posixpath.join(settings.workspace, text)
    real = os.path.realpath(candidate)
    roots = [os.path.realpath(root) for root in (settings.workspace, *settings.volumes)]
    if not any(_inside(real, root) for root in roots):
        raise outside
    if not Path(real).is_dir():
        raise CwdError(f"cwd is not a directory: {text}")
    return Path(real)


def link_volumes(settings: SidecarSettings) -> None:
    """Show each volume as ``<workspace>/<basename>``: a symbolic link, made where nothing is yet."""
    for volume in settings.volumes:
        name = posixpath.basename(volume)
        if not name:
            continue
        link = Path(settings.workspace) / name
        try:
            if link.is_symlink() or link.exists():
                if os.path.realpath(link) != os.path.realpath(volume):
                    log.warning("%s exists and is not volume %s; left as it is", link, volume)
                continue
            link.symlink_to(volume, target_is_directory=True)
            log.info("volume %s linked as %s", volume, link)
        except OSError as error:
            log.warning("cannot link volume %s as %s: %s", volume, link, error.strerror or error)


def config_json_path(environ: Mapping[str, str]) -> Path:
    """The Copilot CLI's config file: ``$COPILOT_HOME/config.json``, else
    ``$XDG_CONFIG_HOME/.copilot/config.json``, else ``~/.copilot/config.json``."""
    if environ.get("COPILOT_HOME"):
        return Path(environ["COPILOT_HOME"]) / "config.json"
    if environ.get("XDG_CONFIG_HOME"):
        return Path(environ["XDG_CONFIG_HOME"]) / ".copilot" / "config.json"
    return Path(_home(environ)) / ".copilot" / "config.json"


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or str(Path.home())


def trust_folder(folder: Path, environ: Mapping[str, str]) -> None:
    """Add ``folder`` to the CLI's ``trusted_folders`` so it does not ask; best effort. A config file
    that is not a JSON object is left alone (it may be the CLI's own store)."""
    path = config_json_path(environ)
    try:
        config: dict[str, Any] = {}
        if path.exists():
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                return
            config = loaded
        trusted = config.get("trusted_folders")
        trusted = list(trusted) if isinstance(trusted, list) else []
        if str(folder) in trusted:
            return
        config["trusted_folders"] = [*trusted, str(folder)]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except (OSError, ValueError) as error:
        log.debug("cannot record %s as trusted in %s: %s", folder, path, error)


# --- secrets ----------------------------------------------------------------------------------------


def token_values(environ: Mapping[str, str]) -> list[str]:
    """The non-empty GitHub token values in the environment, longest first."""
    values = {environ.get(name, "").strip() for name in TOKEN_ENVS} - {""}
    return sorted(values, key=len, reverse=True)


def mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def cli_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The CLI's environment: ours (the token included) without kubepilot's contract variables."""
    return {k: v for k, v in environ.items() if k not in CONTRACT_ENVS}


# --- running the CLI --------------------------------------------------------------------------------


class _Tail:
    """The last ``limit`` bytes of a stream, and how many came before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buffer += chunk
        excess = len(self.buffer) - self.limit
        if excess > 0:
            del self.buffer[:excess]

    def text(self) -> str:
        text = self.buffer.decode("utf-8", errors="replace")
        cut = self.total - len(self.buffer)
        return f"[... {cut} earlier bytes cut ...]\n{text}" if cut else text


class _Capture(asyncio.SubprocessProtocol):
    """Keeps the tails of stdout and stderr; tells when the process exited and when its pipes closed.

    Exit and pipe closing are apart on purpose: a process the CLI started can hold the pipes open
    after the CLI itself has exited, and the run is over when the CLI is.
    """

    def __init__(self, limit: int) -> None:
        self.tails = {1: _Tail(limit), 2: _Tail(limit)}
        self.exited = asyncio.Event()
        self.closed = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        self.tails[fd].add(bytes(data))

    def process_exited(self) -> None:
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


@dataclass
class ProcessResult:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_seconds: float


@dataclass
class ProcessGroups:
    """The process groups of the CLI runs in flight (one per run, led by the CLI)."""

    leaders: set[int] = field(default_factory=set)

    def kill_all(self) -> None:
        for pid in list(self.leaders):
            _signal_group(pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    time_limit: float,
    max_output_bytes: int,
    kill_grace: float,
    groups: ProcessGroups,
) -> ProcessResult:
    """Run ``argv`` in its own process group until it exits or ``time_limit`` passes (then SIGTERM
    to the group and, after ``kill_grace``, SIGKILL). What is left of the group when the leader has
    exited, or when the caller is cancelled, is killed. Raises OSError if it cannot start."""
    start = time.monotonic()
    transport, capture = await asyncio.get_running_loop().subprocess_exec(
        lambda: _Capture(max_output_bytes),
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    pid = transport.get_pid()
    groups.leaders.add(pid)
    timed_out = False
    try:
        try:
            try:
                await asyncio.wait_for(capture.exited.wait(), time_limit)
            except TimeoutError:
                timed_out = True
                log.warning("copilot run timed out after %gs; killing its process group", time_limit)
                _signal_group(pid, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(capture.exited.wait(), kill_grace)
        finally:
            _signal_group(pid, signal.SIGKILL)
            groups.leaders.discard(pid)
        await capture.exited.wait()
        try:
            # A process that left the group (a new session) can still hold a pipe open.
            await asyncio.wait_for(capture.closed.wait(), kill_grace)
        except TimeoutError:
            log.warning("copilot output pipes still open after the run; answering with what was read")
    finally:
        transport.close()
    returncode = transport.get_returncode()
    return ProcessResult(
        returncode=TIMEOUT_RETURNCODE if timed_out else (-1 if returncode is None else returncode),
        stdout=capture.tails[1].text(),
        stderr=capture.tails[2].text(),
        timed_out=timed_out,
        duration_seconds=time.monotonic() - start,
    )


# --- the API ----------------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    """CS-03's body. Unknown fields are ignored, as in ControlPilot."""

    prompt: str = Field(max_length=MAX_PROMPT_CHARS, description="What to ask; blank is refused (400).")
    cwd: str | None = Field(default=None, description="Folder under the workspace root; default the root.")
    allow_all_tools: bool = True
    allow_all_paths: bool = True
    allow_all_urls: bool = False
    timeout_seconds: float | None = Field(
        default=None, ge=0, le=MAX_TIMEOUT_SECONDS, description="Override of the default; 0 or null: default."
    )


class ChatResponse(BaseModel):
    ok: bool
    returncode: int
    duration_seconds: float
    stdout: str
    stderr: str
    command: list[str]


def create_app(settings: SidecarSettings | None = None) -> FastAPI:
    """The sidecar app. The environment (``PATH``, ``HOME``, the token) is read on every request."""
    settings = settings or SidecarSettings.from_env()
    groups = ProcessGroups()
    versions = _VersionCache()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            groups.kill_all()

    app = FastAPI(title="kubepilot copilot sidecar", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.groups = groups

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        environ = dict(os.environ)
        copilot = shutil.which(CLI_NAME)
        home = _home(environ)
        config_path = config_json_path(environ)
        config_exists = config_path.is_file()
        out: dict[str, Any] = {
            "copilot_in_path": copilot is not None,
            "copilot_path": copilot,
            "home": home,
            "xdg_config_home": environ.get("XDG_CONFIG_HOME") or posixpath.join(home, ".config"),
            "cwd": settings.cwd,
            "config_json": str(config_path),
            "config_exists": config_exists,
            "port": settings.port,
            "env_has_token": bool(token_values(environ)),
        }
        if config_exists:
            out["config_has_token_like_field"] = _config_has_token(config_path)
        if copilot is not None:
            version = await versions.get(copilot, environ, groups)
            out["copilot_version" if version is not None else "copilot_version_error"] = (
                version if version is not None else "Unable to determine version"
            )
        return out

    @app.post("/chat")
    async def chat(request: ChatRequest) -> ChatResponse:
        copilot = shutil.which(CLI_NAME)
        if copilot is None:
            raise HTTPException(status_code=503, detail=NOT_FOUND)
        prompt = request.prompt.strip()
        if not prompt:
            raise HTTPException(status_code=400, detail=PROMPT_REQUIRED)
        try:
            cwd = resolve_cwd(request.cwd, settings)
        except CwdError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        environ = dict(os.environ)
        secrets = token_values(environ)
        trust_folder(cwd, environ)
        flags = [flag for name, flag in ALLOW_FLAGS.items() if getattr(request, name)]
        command = [copilot, "-p", prompt, *flags]
        timeout = request.timeout_seconds or settings.timeout_seconds
        log.info(
            "copilot run in %s: prompt of %d characters, timeout %gs, flags %s",
            cwd,
            len(prompt),
            timeout,
            " ".join(flags) or "none",
        )
        try:
            result = await run_process(
                command,
                cwd=cwd,
                env=cli_environment(environ),
                time_limit=timeout,
                max_output_bytes=settings.max_output_bytes,
                kill_grace=settings.kill_grace_seconds,
                groups=groups,
            )
        except OSError as error:
            log.error("cannot run %s: %s", copilot, error.strerror or error)
            raise HTTPException(
                status_code=500, detail=f"cannot run the copilot CLI: {error.strerror or error}"
            ) from None
        stderr = result.stderr
        if result.timed_out:
            stderr += f"\nTimed out after {timeout:g}s\n"
        log.info("copilot exited with %d after %.1fs", result.returncode, result.duration_seconds)
        return ChatResponse(
            ok=result.returncode == 0 and not result.timed_out,
            returncode=result.returncode,
            duration_seconds=result.duration_seconds,
            stdout=mask(result.stdout, secrets),
            stderr=mask(stderr, secrets),
            command=[mask(part, secrets) for part in command],
        )

    return app


def _config_has_token(path: Path) -> bool:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict):
        return False
    return any(isinstance(config.get(k), str) and config[k].strip() for k in TOKEN_LIKE_CONFIG_KEYS)


def _modified(path: str) -> int | None:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return None


class _VersionCache:
    """``copilot --version`` per executable (path and modification time): starting Node for every
    ``/status`` poll would cost a second each. Failures are not cached."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, int], str] = {}

    async def get(self, copilot: str, environ: Mapping[str, str], groups: ProcessGroups) -> str | None:
        modified = _modified(copilot)
        if modified is None:
            return None
        key = (copilot, modified)
        if key not in self.known:
            version = await _version(copilot, environ, groups)
            if version is None:
                return None
            self.known[key] = version
        return self.known[key]


async def _version(copilot: str, environ: Mapping[str, str], groups: ProcessGroups) -> str | None:
    """``copilot --version``'s text (token values masked), or None when it cannot be run."""
    try:
        result = await run_process(
            [copilot, "--version"],
            cwd=None,
            env=cli_environment(environ),
            time_limit=VERSION_TIMEOUT_SECONDS,
            max_output_bytes=4096,
            kill_grace=1.0,
            groups=groups,
        )
    except OSError as error:
        log.debug("cannot run %s --version: %s", copilot, error.strerror or error)
        return None
    if result.timed_out:
        return None
    return mask((result.stdout or result.stderr).strip(), token_values(environ))
