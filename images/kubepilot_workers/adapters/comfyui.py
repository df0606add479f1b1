"""Run GenerationJobs on ComfyUI through its own HTTP and WebSocket API.

Protocol (ComfyUI ``server.py`` and ``script_examples/websockets_api_example.py``):

- ``GET /ws?clientId=ID`` streams ``{"type", "data"}`` events for prompts queued with that
  client id: ``execution_start``, ``execution_cached`` {nodes}, ``executing`` {node} (node null:
  the prompt is done), ``progress`` {value, max, node}, ``executed`` {node, output},
  ``execution_error``, ``execution_interrupted``; binary frames are previews, ignored here.
- ``POST /prompt`` {"prompt": graph, "client_id"} → {"prompt_id", "number", "node_errors"};
  400 → {"error", "node_errors"} for a graph that fails validation.
- ``GET /history/{prompt_id}`` → {prompt_id: {"outputs": {node: {"images": [...]}}, "status"}}.
- ``GET /view?filename&subfolder&type`` → the image bytes; ``POST /upload/image`` stores inputs.
- ``POST /interrupt`` stops the running prompt; ``POST /queue`` {"delete": [id]} drops a queued one.

The WebSocket gives per-step progress; when it breaks the adapter goes on by polling history.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from kubepilot_api.generationjob import GenerationType, OutputImage
from kubepilot_api.workers.config import GenerationRequest
from kubepilot_workers.adapters.comfyui_events import EventFollower, history_failure
from kubepilot_workers.adapters.comfyui_graph import Graph, check_workflow, standard_graph, uploads_needed
from kubepilot_workers.adapters.comfyui_progress import ComfyProgress
from kubepilot_workers.adapters.files import image_info, name_in_type_folder, pick_seed, write_output_image
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, JobContext

log = logging.getLogger(__name__)

UPLOAD_SUBFOLDER = "kubepilot"
_MODEL_LOADERS = {"CheckpointLoaderSimple", "LoraLoader", "UpscaleModelLoader"}


class ComfyUIBackend:
    """An ExecutorBackend that drives one ComfyUI server."""

    name = "comfyui"

    def __init__(
        self,
        base_url: str,
        *,
        request_timeout: float = 30.0,
        poll_interval: float = 0.25,
        unavailable_after: float = 30.0,
        cancel_grace: float = 15.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self._base_url, timeout=request_timeout)
        self._poll_interval = poll_interval
        self._unavailable_after = unavailable_after
        self._cancel_grace = cancel_grace
        self._model = ""

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def health(self) -> tuple[bool, str]:
        """Ready when ``/system_stats`` answers; the model is the checkpoint the last job used."""
        try:
            response = self._http.get("/system_stats", timeout=5.0)
        except httpx.HTTPError:
            return False, self._model
        return response.status_code == 200, self._model

    def run(self, context: JobContext) -> list[OutputImage]:
        """Queue the job's graph, follow it to the end and copy its images to the output folder."""
        request = context.request
        if context.cancelled.is_set():
            raise Cancelled()
        seed = pick_seed(request.seed)
        prefix = f"{UPLOAD_SUBFOLDER}/{_safe_name(context.job_id)}"
        standard = request.workflow is None
        checkpoint = ""
        if request.type is GenerationType.WORKFLOW and request.workflow is None:
            raise ExecutionError("INVALID_WORKFLOW", "a workflow job needs its workflow graph")
        if request.workflow is not None:
            graph = check_workflow(request.workflow)
            images_total = -1
        else:
            checkpoint = self._checkpoint(request)
            uploaded, sizes = self._upload_inputs(context)
            graph = standard_graph(
                request, checkpoint=checkpoint, seed=seed, uploaded=uploaded, sizes=sizes, prefix=prefix
            )
            images_total = len(uploaded) if request.type is GenerationType.UPSCALE else request.count
        progress = ComfyProgress(
            context.report_progress,
            node_count=len(graph),
            images_total=images_total,
            by_steps=standard and request.type is not GenerationType.UPSCALE,
        )
        client_id = uuid.uuid4().hex
        with ExitStack() as stack:
            socket = self._open_socket(client_id, stack)
            prompt_id = self._submit(graph, client_id, standard=standard)
            entry = EventFollower(self, prompt_id, context, progress, socket).follow()
        failure = history_failure(entry)
        if failure is not None:
            raise failure
        images = self._collect(entry, context, seed=seed if standard else -1, prompt_id=prompt_id)
        if not images:
            raise ExecutionError(
                "NO_OUTPUTS", "the prompt finished without any image output (no SaveImage node?)"
            )
        if checkpoint:
            self._model = checkpoint
        progress.finished(len(images))
        return images

    # -- HTTP calls, also used by the EventFollower ------------------------------------------------

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry, None while it has none (queued or running)."""
        response = self._call("GET", f"/history/{prompt_id}")
        body = _json_or_empty(response) if response.status_code == 200 else {}
        entry = body.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def queue_ids(self) -> tuple[set[str], set[str]]:
        """Prompt ids (running, pending) in ComfyUI's queue."""
        body = _json_or_empty(self._call("GET", "/queue"))

        def ids(items: Any) -> set[str]:
            return {str(item[1]) for item in items or [] if isinstance(item, list) and len(item) > 1}

        return ids(body.get("queue_running")), ids(body.get("queue_pending"))

    def delete_queued(self, prompt_id: str) -> None:
        """Drop a prompt that has not started yet."""
        self._call("POST", "/queue", json={"delete": [prompt_id]})

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt the running prompt (newer ComfyUI only interrupts when it is this one)."""
        self._call("POST", "/interrupt", json={"prompt_id": prompt_id})

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ExecutionError(
                "BACKEND_UNAVAILABLE", f"ComfyUI at {self._base_url} is unreachable: {error}"
            ) from error

    @property
    def poll_interval(self) -> float:
        """Seconds between checks while waiting for events or history."""
        return self._poll_interval

    @property
    def unavailable_after(self) -> float:
        """Seconds ComfyUI may stay unreachable during a job before it fails."""
        return self._unavailable_after

    @property
    def cancel_grace(self) -> float:
        """Seconds to wait for ComfyUI to confirm an interrupt."""
        return self._cancel_grace

    # -- steps of a run ----------------------------------------------------------------------------

    def _open_socket(self, client_id: str, stack: ExitStack) -> ClientConnection | None:
        """Connect the event stream before queueing, so no event of the prompt is missed."""
        parts = urlsplit(self._base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit((scheme, parts.netloc, f"{parts.path}/ws", f"clientId={client_id}", ""))
        try:
            return stack.enter_context(connect(url, open_timeout=5.0, max_size=2**25, close_timeout=1.0))
        except (OSError, WebSocketException, TimeoutError) as error:
            # HTTP may still work (a proxy without WebSocket support): fall back to polling history.
            log.warning("ComfyUI WebSocket unavailable (%s); following the job by polling", error)
            return None

    def _checkpoint(self, request: GenerationRequest) -> str:
        if request.type is GenerationType.UPSCALE:
            return ""
        if request.modelPath:
            return name_in_type_folder(request.modelPath, "checkpoints")
        if request.params and isinstance(request.params.get("ckpt_name"), str):
            return str(request.params["ckpt_name"])
        response = self._call("GET", "/models/checkpoints")
        try:
            names = response.json() if response.status_code == 200 else []
        except ValueError:
            names = []
        if isinstance(names, list) and len(names) == 1:
            return str(names[0])
        count = len(names) if isinstance(names, list) else "no"
        raise ExecutionError(
            "MODEL_NOT_FOUND",
            f"the job names no model and ComfyUI has {count} checkpoints to choose from; "
            "set the GenerationJob's model",
        )

    def _upload_inputs(self, context: JobContext) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
        uploaded: dict[str, str] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for index, path in enumerate(uploads_needed(context.request)):
            try:
                data = Path(path).read_bytes()
                width, height, mime = image_info(data)
            except OSError as error:
                raise ExecutionError(
                    "INVALID_REQUEST", f"cannot read input image {path}: {error.strerror}"
                ) from error
            except ExecutionError as error:
                raise ExecutionError("INVALID_REQUEST", f"input {path} is not an image") from error
            filename = f"{_safe_name(context.job_id)}-{index}{Path(path).suffix or '.png'}"
            response = self._call(
                "POST",
                "/upload/image",
                files={"image": (filename, data, mime)},
                data={"type": "input", "subfolder": UPLOAD_SUBFOLDER, "overwrite": "true"},
            )
            if response.status_code != 200:
                raise ExecutionError(
                    "BACKEND_ERROR", f"ComfyUI refused the upload of {path}: HTTP {response.status_code}"
                )
            body = _json_or_empty(response)
            name = str(body.get("name", filename))
            subfolder = str(body.get("subfolder", ""))
            uploaded[path] = f"{subfolder}/{name}" if subfolder else name
            sizes[path] = (width, height)
        return uploaded, sizes

    def _submit(self, graph: Graph, client_id: str, *, standard: bool) -> str:
        response = self._call("POST", "/prompt", json={"prompt": graph, "client_id": client_id})
        if response.status_code == 400:
            raise _validation_error(_json_or_empty(response), standard=standard)
        if response.status_code != 200:
            raise ExecutionError(
                "BACKEND_ERROR", f"ComfyUI answered HTTP {response.status_code} to the prompt"
            )
        body = _json_or_empty(response)
        prompt_id = body.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise ExecutionError("BACKEND_ERROR", "ComfyUI accepted the prompt without a prompt_id")
        if body.get("node_errors"):
            log.warning("ComfyUI dropped some outputs of prompt %s: %s", prompt_id, _node_errors_text(body))
        return prompt_id

    def _collect(
        self, entry: dict[str, Any], context: JobContext, *, seed: int, prompt_id: str
    ) -> list[OutputImage]:
        listed: list[dict[str, Any]] = []
        outputs = entry.get("outputs") or {}
        for node_id in sorted(outputs, key=lambda node: (len(str(node)), str(node))):
            for image in (outputs[node_id] or {}).get("images") or []:
                if isinstance(image, dict) and image.get("filename"):
                    listed.append({**image, "node": str(node_id)})
        saved = [image for image in listed if image.get("type", "output") == "output"]
        images: list[OutputImage] = []
        for index, image in enumerate(saved or listed):
            if context.cancelled.is_set():
                raise Cancelled()
            params = {k: str(image.get(k, "")) for k in ("filename", "subfolder", "type")}
            response = self._call("GET", "/view", params=params)
            if response.status_code != 200:
                raise ExecutionError(
                    "BACKEND_ERROR",
                    f"ComfyUI could not serve {params['filename']}: HTTP {response.status_code}",
                )
            metadata = {
                "backend": self.name,
                "promptId": prompt_id,
                "node": image["node"],
                "comfyFile": params,
                "request": context.request.model_dump(mode="json", exclude={"workflow"}),
            }
            images.append(
                write_output_image(context.output_dir, index, response.content, seed=seed, metadata=metadata)
            )
        return images


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "job"


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _node_errors_text(body: dict[str, Any]) -> str:
    lines = []
    node_errors = body.get("node_errors")
    for node_id, detail in node_errors.items() if isinstance(node_errors, dict) else []:
        for reason in (detail or {}).get("errors") or []:
            what = f"{reason.get('message', '')}: {reason.get('details', '')}"
            lines.append(f"node {node_id} ({detail.get('class_type', '?')}): {what}")
    return "; ".join(lines)


def _validation_error(body: dict[str, Any], *, standard: bool) -> ExecutionError:
    error = body.get("error")
    summary = error.get("message", "") if isinstance(error, dict) else str(error or "invalid prompt")
    details = _node_errors_text(body)
    message = f"{summary}: {details}" if details else summary
    node_errors = body.get("node_errors")
    if standard and isinstance(node_errors, dict):
        for detail in node_errors.values():
            reasons = (detail or {}).get("errors") or []
            if detail.get("class_type") in _MODEL_LOADERS and any(
                r.get("type") == "value_not_in_list" for r in reasons
            ):
                return ExecutionError("MODEL_NOT_FOUND", message[:4000])
    return ExecutionError("INVALID_WORKFLOW", message[:4000])
