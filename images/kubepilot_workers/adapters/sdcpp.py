"""Run GenerationJobs on a stable-diffusion.cpp server (``sd-server``) through its native API.

The server (leejet/stable-diffusion.cpp ``examples/server``: ``routes_sdcpp.cpp``,
``async_jobs.cpp`` and ``api.md``) offers three API families; the adapter uses the native async
one because only it can cancel a job:

- ``GET /sdcpp/v1/capabilities`` → {"model": {"name", "stem", "path"}, "samplers", "loras", ...}
- ``POST /sdcpp/v1/img_gen`` with the native request → 202 {"id", "status": "queued", ...};
  400 {"error"} for invalid parameters, 429 when its queue is full.
- ``GET /sdcpp/v1/jobs/{id}`` → {"status": queued|generating|completed|failed|cancelled,
  "queue_position", "result": {"images": [{"index", "b64_json"}]}, "error": {"code", "message"}}.
- ``POST /sdcpp/v1/jobs/{id}/cancel`` → 200 for a queued job; 409 while it is generating.

Honest limits: the job API reports no per-step progress, so the adapter reports the job's phase
and ``imagesDone`` only when the batch is finished; and a generation that has started cannot be
interrupted: the adapter gives the job up as Cancelled and the server finishes it unseen.
The server loads one model at start (``-m``), so a job naming another model is refused.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from kubepilot_api.common import now
from kubepilot_api.generationjob import GenerationProgress, GenerationType, OutputImage
from kubepilot_api.workers.config import GenerationRequest
from kubepilot_workers.adapters.files import name_in_type_folder, pick_seed, write_output_image
from kubepilot_workers.adapters.samplers import resolve_sampler
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, JobContext

log = logging.getLogger(__name__)

CAPABILITIES_PATH = "/sdcpp/v1/capabilities"
IMG_GEN_PATH = "/sdcpp/v1/img_gen"
JOB_PATH = "/sdcpp/v1/jobs/{job_id}"
CANCEL_PATH = "/sdcpp/v1/jobs/{job_id}/cancel"
SUPPORTED_TYPES = {
    GenerationType.TXT2IMG,
    GenerationType.IMG2IMG,
    GenerationType.VARIATION,
    GenerationType.INPAINT,
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``, nested objects merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _encoded_image(path: str, what: str) -> str:
    try:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError as error:
        raise ExecutionError("INVALID_REQUEST", f"cannot read the {what} {path}: {error.strerror}") from error


def native_request(request: GenerationRequest, seed: int) -> dict[str, Any]:
    """The ``/sdcpp/v1/img_gen`` body for a request; ``params`` are laid over it as written."""
    if request.type not in SUPPORTED_TYPES:
        raise ExecutionError(
            "UNSUPPORTED",
            f"the sd.cpp adapter runs txt2img, img2img, variation and inpaint jobs, not {request.type.value}",
        )
    sample_params: dict[str, Any] = {"sample_steps": request.steps, "guidance": {"txt_cfg": request.cfgScale}}
    choice = resolve_sampler(request.sampler, "sdcpp")
    if choice is not None:
        sample_params["sample_method"] = choice.sampler
        if choice.scheduler:
            sample_params["scheduler"] = choice.scheduler
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negativePrompt,
        "width": request.width,
        "height": request.height,
        "seed": seed,
        "batch_count": request.count,
        "strength": request.strength,
        "sample_params": sample_params,
        # The server resolves LoRAs relative to its --lora-model-dir, the models volume's loras folder.
        "lora": [
            {"path": name_in_type_folder(lora.path, "loras"), "multiplier": lora.weight}
            for lora in request.loras
        ],
        "output_format": "png",
    }
    if request.type is not GenerationType.TXT2IMG:
        if not request.image:
            raise ExecutionError("INVALID_REQUEST", f"a {request.type.value} job needs an input image")
        body["init_image"] = _encoded_image(request.image, "input image")
    if request.type is GenerationType.INPAINT:
        if not request.mask:
            raise ExecutionError("INVALID_REQUEST", "an inpaint job needs a mask")
        body["mask_image"] = _encoded_image(request.mask, "mask")
    return _merge(body, request.params or {})


class SdCppBackend:
    """An ExecutorBackend that drives one sd.cpp server."""

    name = "sdcpp"

    def __init__(
        self,
        base_url: str,
        *,
        request_timeout: float = 30.0,
        poll_interval: float = 0.5,
        unavailable_after: float = 30.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self._base_url, timeout=request_timeout)
        self._poll_interval = poll_interval
        self._unavailable_after = unavailable_after

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def health(self) -> tuple[bool, str]:
        """Ready when the capabilities answer; the model is the file the server loaded."""
        try:
            response = self._http.get(CAPABILITIES_PATH, timeout=5.0)
        except httpx.HTTPError:
            return False, ""
        if response.status_code != 200:
            return False, ""
        return True, self._model_path(response)

    def run(self, context: JobContext) -> list[OutputImage]:
        """Submit the job, poll it to the end and write its images."""
        request = context.request
        if context.cancelled.is_set():
            raise Cancelled()
        seed = pick_seed(request.seed)
        body = native_request(request, seed)
        self._check_model(request)
        job_id = self._submit(body)
        self._report(context, phase_percent=0)
        job = self._wait(job_id, context)
        return self._write(job, context, seed=seed, job_id=job_id)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ExecutionError(
                "BACKEND_UNAVAILABLE", f"sd.cpp server at {self._base_url} is unreachable: {error}"
            ) from error

    @staticmethod
    def _model_path(response: httpx.Response) -> str:
        try:
            model = response.json().get("model") or {}
        except (ValueError, AttributeError):
            return ""
        return str(model.get("path") or model.get("name") or "") if isinstance(model, dict) else ""

    def _check_model(self, request: GenerationRequest) -> None:
        if not request.modelPath:
            return
        loaded = self._model_path(self._call("GET", CAPABILITIES_PATH))
        if not loaded:
            return
        if (
            PurePosixPath(loaded) != PurePosixPath(request.modelPath)
            and PurePosixPath(loaded).name != PurePosixPath(request.modelPath).name
        ):
            raise ExecutionError(
                "MODEL_NOT_FOUND",
                f"this sd.cpp server serves {loaded}, not {request.modelPath} (it loads one model at start)",
            )

    def _submit(self, body: dict[str, Any]) -> str:
        response = self._call("POST", IMG_GEN_PATH, json=body)
        answer = _json_object(response)
        if response.status_code == 400:
            detail = answer.get("message") or answer.get("error") or "invalid request"
            raise ExecutionError("INVALID_REQUEST", f"sd.cpp refused the job: {detail}")
        if response.status_code == 429:
            raise ExecutionError("BACKEND_BUSY", "the sd.cpp server's queue is full")
        if response.status_code not in (200, 202) or not isinstance(answer.get("id"), str):
            raise ExecutionError("BACKEND_ERROR", f"sd.cpp answered HTTP {response.status_code} to the job")
        return str(answer["id"])

    def _wait(self, job_id: str, context: JobContext) -> dict[str, Any]:
        last_contact = time.monotonic()
        reported_status = "queued"
        while True:
            if context.cancelled.is_set():
                self._cancel(job_id)
            try:
                response = self._call("GET", JOB_PATH.format(job_id=job_id))
            except ExecutionError:
                if time.monotonic() - last_contact > self._unavailable_after:
                    raise
                context.cancelled.wait(self._poll_interval)
                continue
            last_contact = time.monotonic()
            if response.status_code in (404, 410):
                raise ExecutionError(
                    "BACKEND_ERROR", f"the sd.cpp server lost job {job_id} (HTTP {response.status_code})"
                )
            job = _json_object(response)
            status = job.get("status")
            if status == "completed":
                return job
            if status == "failed":
                error = job.get("error") or {}
                raise ExecutionError(
                    "EXECUTION_FAILED", f"sd.cpp: {error.get('message') or 'generation failed'}"
                )
            if status == "cancelled":
                if context.cancelled.is_set():
                    raise Cancelled()
                raise ExecutionError(
                    "INTERRUPTED", "the job was cancelled on the sd.cpp server by someone else"
                )
            if status != reported_status and status == "generating":
                reported_status = status
                self._report(context, phase_percent=-1)
            context.cancelled.wait(self._poll_interval)

    def _cancel(self, job_id: str) -> None:
        try:
            response = self._call("POST", CANCEL_PATH.format(job_id=job_id))
        except ExecutionError as error:
            raise Cancelled() from error
        if response.status_code == 409:
            log.warning(
                "sd.cpp cannot interrupt generating job %s; it finishes on the server, unseen", job_id
            )
        raise Cancelled()

    def _write(
        self, job: dict[str, Any], context: JobContext, *, seed: int, job_id: str
    ) -> list[OutputImage]:
        result = job.get("result") or {}
        encoded = [
            image for image in result.get("images") or [] if isinstance(image, dict) and image.get("b64_json")
        ]
        if not encoded:
            raise ExecutionError("NO_OUTPUTS", "the sd.cpp job completed without images")
        images = []
        for position, image in enumerate(sorted(encoded, key=lambda item: int(item.get("index", 0)))):
            try:
                data = base64.b64decode(image["b64_json"], validate=True)
            except (binascii.Error, ValueError) as error:
                raise ExecutionError(
                    "BAD_OUTPUT", f"sd.cpp returned image {position} in invalid base64"
                ) from error
            metadata = {
                "backend": self.name,
                "sdcppJob": job_id,
                "request": context.request.model_dump(mode="json", exclude={"workflow"}),
            }
            # sd.cpp seeds image i of a batch with seed + i.
            images.append(
                write_output_image(
                    context.output_dir, position, data, seed=seed + position, metadata=metadata
                )
            )
        total = len(images)
        context.report_progress(
            GenerationProgress(
                step=context.request.steps,
                totalSteps=context.request.steps,
                imagesDone=total,
                imagesTotal=total,
                percent=100,
                etaSeconds=0,
                lastUpdatedTime=now(),
            )
        )
        return images

    @staticmethod
    def _report(context: JobContext, *, phase_percent: int) -> None:
        context.report_progress(
            GenerationProgress(
                totalSteps=context.request.steps,
                imagesTotal=context.request.count,
                percent=phase_percent,
                lastUpdatedTime=now(),
            )
        )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
