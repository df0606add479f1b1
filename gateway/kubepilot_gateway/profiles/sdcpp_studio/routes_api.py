"""sd.cpp Studio's REST API under ``/api``: health, config, generation, the queue, generations, images.

Every generation is a GenerationJob (``runtime``); shapes come from ``jobs`` in the document's
form, or the product's where ``compat: product`` asks and the two differ (epoch milliseconds,
``{generations, pagination}`` listing every job).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio import logs as lg
from kubepilot_gateway.profiles.sdcpp_studio.runtime import Runtime

JsonObject = dict[str, Any]


async def json_body(request: Request) -> Any:
    """The request's JSON body; bad JSON is a 400, never a 500."""
    raw = await request.body()
    if not raw.strip():
        return {}
    return tr.parse_json(raw)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    return default if value in (None, "") else tr.as_int(name, value, low, high)


async def finish_sync(runtime: Runtime, cr: JsonObject) -> JsonObject:
    """Wait for a synchronous request's job; the product's 500s for failure and timeout."""
    name = str(cr["metadata"]["name"])
    try:
        done = await runtime.wait_terminal(name, runtime.settings.syncTimeoutSeconds)
    except TimeoutError:
        raise HTTPException(status_code=500, detail="Generation timeout") from None
    if done is None:
        raise HTTPException(status_code=500, detail="Generation not found")
    if tr.phase(done) != "Completed":
        text = tr.error_text(done) or ("Generation cancelled" if tr.phase(done) == "Cancelled" else None)
        raise HTTPException(status_code=500, detail=text or "Generation failed")
    if not tr.outputs(done):
        raise HTTPException(status_code=500, detail="No images generated")
    return done


def create_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    settings = runtime.settings
    compat = settings.compat

    @router.get("/api/health")
    async def health() -> JsonObject:
        """SD-01."""
        return {"status": "ok", "timestamp": now_iso()}

    @router.get("/api/config")
    async def config() -> JsonObject:
        """SD-02 (open without a key); the product says ``authRequired`` where the document says
        ``authEnabled``: whether an API key is required (see :mod:`.auth`)."""
        default = settings.default()
        answer: JsonObject = {
            "sdApiEndpoint": settings.sdApiEndpoint,
            "model": default.id if default else None,
        }
        answer["authRequired" if compat == "product" else "authEnabled"] = runtime.auth_required()
        return answer

    async def submit(request: Request) -> JsonObject:
        body = await json_body(request)
        generation = tr.generate_request(
            body, settings.models, settings.model, default_steps=settings.defaultSteps
        )
        return await runtime.submit(generation)

    @router.post("/api/generate")
    async def generate(request: Request) -> JsonObject:
        """SD-03: queue a job, wait until it ends (the job goes on if the client leaves)."""
        cr = await submit(request)
        return tr.sync_answer(await finish_sync(runtime, cr))

    @router.post("/api/queue/generate")
    async def queue_generate(request: Request) -> JsonObject:
        """SD-06."""
        cr = await submit(request)
        return {"job_id": cr["metadata"]["name"], "status": "pending"}

    @router.get("/api/queue/stats")
    async def queue_stats() -> dict[str, int]:
        """SD-14 (declared before ``/api/queue/{id}``)."""
        return tr.stats(runtime.all())

    @router.get("/api/queue")
    async def queue(request: Request) -> JsonObject:
        """SD-10: every job (optionally of one status) and the counts."""
        wanted = request.query_params.get("status")
        if wanted is not None and wanted not in tr.JOB_STATUSES:
            raise tr.BadRequest(
                f"Invalid status: {wanted}", f"status is one of {', '.join(sorted(tr.JOB_STATUSES))}"
            )
        everything = runtime.all()
        chosen = [cr for cr in everything if wanted is None or tr.job_status(cr) == wanted]
        return {"jobs": [tr.job_object(cr, compat) for cr in chosen], "stats": tr.stats(everything)}

    @router.post("/api/queue/cancel-all")
    async def cancel_all() -> JsonObject:
        """SD-13: every pending or processing job, cancelled as a cleared queue."""
        active = [cr for cr in runtime.all() if tr.phase(cr) in tr.ACTIVE_PHASES]
        cancelled = 0
        for cr in active:
            if not (cr.get("spec") or {}).get("cancel"):
                await runtime.cancel(cr, "QueueCleared")
                cancelled += 1
        return {"success": True, "cancelled": cancelled}

    @router.get("/api/queue/{job_id}")
    async def queue_job(job_id: str) -> JsonObject:
        """SD-11."""
        return tr.job_object(runtime.require(job_id), compat)

    @router.delete("/api/queue/{job_id}")
    async def cancel(job_id: str) -> JsonObject:
        """SD-12: only a pending or processing job can be cancelled (others: 400)."""
        cr = runtime.require(job_id)
        if tr.phase(cr) not in tr.ACTIVE_PHASES:
            raise tr.BadRequest(f"Job cannot be cancelled (status: {tr.job_status(cr)})")
        patched = await runtime.cancel(cr)
        return {"success": True, "job": tr.job_object(patched, compat)}

    @router.get("/api/generations")
    async def generations(request: Request) -> Any:
        """SD-15: completed generations, newest first (the product: every job, with pagination)."""
        limit = query_int(request, "limit", 20, 1, 1000)
        offset = query_int(request, "offset", 0, 0, 10**9)
        everything = runtime.all()
        if compat == "document":
            done = [cr for cr in everything if tr.phase(cr) == "Completed"]
            return [tr.generation_summary(cr, compat) for cr in done[offset : offset + limit]]
        page = everything[offset : offset + limit]
        return {
            "generations": [tr.generation_summary(cr, compat) for cr in page],
            "pagination": {
                "total": len(everything),
                "limit": limit,
                "offset": offset,
                "hasMore": offset + limit < len(everything),
            },
        }

    @router.delete("/api/generations")
    async def delete_generations(request: Request) -> JsonObject:
        """SD-21: every finished generation (queued and running jobs stay); files only when
        ``delete_files=true``."""
        files = request.query_params.get("delete_files", "false").lower() == "true"
        finished = [cr for cr in runtime.all() if tr.phase(cr) not in tr.ACTIVE_PHASES]
        removed = 0
        for cr in finished:
            removed += await runtime.delete(cr, files=files)
        if compat == "product":
            return {"success": True, "count": len(finished), "filesDeleted": removed}
        return {"success": True, "deleted": len(finished)}

    @router.delete("/api/generations/{generation_id}")
    async def delete_generation(generation_id: str) -> JsonObject:
        """SD-20: the generation and its image files."""
        cr = runtime.require(generation_id, "Generation")
        if tr.phase(cr) in tr.ACTIVE_PHASES and not (cr.get("spec") or {}).get("cancel"):
            await runtime.cancel(cr)
        await runtime.delete(cr, files=True)
        return {"success": True}

    @router.get("/api/generations/{generation_id}")
    async def generation(generation_id: str) -> JsonObject:
        """SD-16."""
        cr = runtime.require(generation_id, "Generation")
        return tr.generation_detail(cr, compat, str(runtime.outputs_root))

    @router.get("/api/generations/{generation_id}/logs")
    async def generation_logs(generation_id: str, request: Request) -> JsonObject:
        """SD-34: the job's story as the operator recorded it (its conditions); ``limit`` (the
        product's, default 50) keeps the newest lines."""
        limit = query_int(request, "limit", 50, 1, 10_000)
        answer = tr.generation_logs(runtime.require(generation_id, "Generation"))
        return {"logs": answer["logs"][-limit:]}

    @router.get("/api/logs")
    @router.get("/api/api/logs")  # the seed writes this path with the prefix; both answer
    async def application_logs(request: Request) -> JsonObject:
        """SD-33: the application log (see :mod:`.logs`); ``limit`` (default 100) newest lines."""
        limit = query_int(request, "limit", 100, 1, 100_000)
        return lg.application_log(runtime.logs, runtime.all(), limit)

    @router.get("/api/generations/{generation_id}/images")
    async def generation_images(generation_id: str) -> list[JsonObject]:
        """SD-19: a bare array of image objects."""
        cr = runtime.require(generation_id, "Generation")
        return [tr.image_object(cr, o, str(runtime.outputs_root)) for o in tr.outputs(cr)]

    async def image_response(cr: JsonObject, index: int) -> Response:
        found = [o for o in tr.outputs(cr) if int(o.get("index", -1)) == index]
        data = await runtime.image_bytes(found[0]) if found else None
        if data is None:
            raise HTTPException(status_code=404, detail="Image not found")
        return Response(content=data, media_type=str(found[0].get("mimeType") or "image/png"))

    @router.get("/api/generations/{generation_id}/image")
    async def generation_image(generation_id: str) -> Response:
        """SD-18: the first image's bytes."""
        cr = runtime.require(generation_id, "Generation")
        first = tr.outputs(cr)
        if not first:
            raise HTTPException(status_code=404, detail="Image not found")
        return await image_response(cr, int(first[0].get("index", 0)))

    @router.get("/api/images/{image_id}")
    async def image(image_id: str) -> Response:
        """SD-17: an image's bytes by its id."""
        parts = tr.split_image_id(image_id)
        cr = runtime.find(parts[0]) if parts else None
        if parts is None or cr is None:
            raise HTTPException(status_code=404, detail="Image not found")
        return await image_response(cr, parts[1])

    @router.get("/static/images/{file_name}")
    async def static_image(file_name: str) -> Response:
        """The product also serves ``/static/images/<image id>.png``."""
        stem = file_name[:-4] if file_name.endswith(".png") else file_name
        return await image(stem)

    return router


def bad_request_response(error: tr.BadRequest) -> JSONResponse:
    body = {"error": error.message}
    if error.detail:
        body["detail"] = error.detail
    return JSONResponse(body, status_code=400)
