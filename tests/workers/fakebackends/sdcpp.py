"""An sd.cpp ``sd-server`` stand-in: its native async job API (``examples/server/routes_sdcpp.cpp``)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.workers.fakebackends.harness import LoopbackServer, background_task, png_bytes


class FakeSdCpp(LoopbackServer):
    """sd.cpp's native async job API: capabilities, img_gen, job polling and cancel."""

    SAMPLERS = (
        "euler",
        "euler_a",
        "heun",
        "dpm2",
        "dpm++2s_a",
        "dpm++2m",
        "dpm++2mv2",
        "ipndm",
        "lcm",
        "ddim_trailing",
    )

    def __init__(
        self, model_path: str = "/models/checkpoints/tiny.gguf", loras: tuple[str, ...] = ()
    ) -> None:
        self.model_path = model_path
        self.loras = list(loras)
        self.generate_seconds = 0.05
        self.paused = False
        self.fail_next: str | None = None
        self.jobs: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.queue: list[str] = []
        app = web.Application()
        app.router.add_get("/sdcpp/v1/capabilities", self._capabilities)
        app.router.add_post("/sdcpp/v1/img_gen", self._img_gen)
        app.router.add_get("/sdcpp/v1/jobs/{job_id}", self._job)
        app.router.add_post("/sdcpp/v1/jobs/{job_id}/cancel", self._cancel)
        app.cleanup_ctx.append(background_task(self._worker))
        super().__init__(app)

    async def _capabilities(self, _: web.Request) -> web.Response:
        model = Path(self.model_path)
        return web.json_response(
            {
                "model": {"name": model.name, "stem": model.stem, "path": self.model_path},
                "current_mode": "img_gen",
                "samplers": list(self.SAMPLERS),
                "loras": [{"name": Path(p).stem, "path": p} for p in self.loras],
                "features": {"cancel_queued": True, "cancel_generating": False},
            }
        )

    def _invalid(self, body: Any) -> bool:
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return True
        sample = body.get("sample_params", {})
        if "sample_method" in sample and sample["sample_method"] not in self.SAMPLERS:
            return True
        if any(lora.get("path") not in self.loras for lora in body.get("lora", [])):
            return True
        return not (64 <= int(body.get("width", 512)) <= 4096 and 1 <= int(body.get("batch_count", 1)) <= 8)

    async def _img_gen(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self._invalid(body):
            return web.json_response({"error": "invalid generation parameters"}, status=400)
        job_id = f"job_{uuid.uuid4().hex[:12]}"
        self.jobs[job_id] = {"id": job_id, "kind": "img_gen", "status": "queued", "created": int(time.time())}
        self.bodies[job_id] = body
        self.queue.append(job_id)
        answer = {**self.jobs[job_id], "poll_url": f"/sdcpp/v1/jobs/{job_id}"}
        return web.json_response(answer, status=202)

    def _view(self, job: dict[str, Any]) -> dict[str, Any]:
        position = self.queue.index(job["id"]) + 1 if job["id"] in self.queue else 0
        return {
            "result": None,
            "error": None,
            "started": None,
            "completed": None,
            **job,
            "queue_position": position,
        }

    async def _job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        return web.json_response(self._view(job))

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        if job["status"] == "generating":
            message = "job is currently generating and cannot be interrupted yet"
            return web.json_response({"error": message}, status=409)
        if job["status"] == "queued":
            self.queue.remove(job["id"])
            job.update(status="cancelled", error={"code": "cancelled", "message": "job cancelled by client"})
        return web.json_response(self._view(job))

    async def _worker(self) -> None:
        while True:
            if self.paused or not self.queue:
                await asyncio.sleep(0.005)
                continue
            job = self.jobs[self.queue.pop(0)]
            job.update(status="generating", started=int(time.time()))
            await asyncio.sleep(self.generate_seconds)
            body = self.bodies[job["id"]]
            if self.fail_next is not None:
                job.update(status="failed", error={"code": "generation_failed", "message": self.fail_next})
                self.fail_next = None
                continue
            width, height, seed = int(body["width"]), int(body["height"]), int(body["seed"])
            images = [
                {
                    "index": i,
                    "b64_json": base64.b64encode(png_bytes(width, height, ((seed + i) % 256, 9, 9))).decode(),
                }
                for i in range(int(body.get("batch_count", 1)))
            ]
            job.update(
                status="completed",
                completed=int(time.time()),
                result={"output_format": "png", "images": images},
            )
