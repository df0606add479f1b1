"""A ComfyUI stand-in: prompt queue, WebSocket events, history, uploads and interrupts.

Follows ComfyUI's ``server.py`` and ``execution.py``: validation errors as ``{"error", "node_errors"}``,
events sent to the submitting client id, history written before the final ``executing`` event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from tests.workers.fakebackends.harness import LoopbackServer, background_task, png_bytes

# Required inputs of the ComfyUI nodes the fake knows; the value lists it checks come from its folders.
COMFY_NODES: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip", "model", "clip"),
    "CLIPTextEncode": ("text", "clip"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "LoadImage": ("image",),
    "LoadImageMask": ("image", "channel"),
    "VAEEncode": ("pixels", "vae"),
    "RepeatLatentBatch": ("samples", "amount"),
    "SetLatentNoiseMask": ("samples", "mask"),
    "KSampler": (
        "model",
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "positive",
        "negative",
        "latent_image",
    ),
    "VAEDecode": ("samples", "vae"),
    "UpscaleModelLoader": ("model_name",),
    "ImageUpscaleWithModel": ("upscale_model", "image"),
    "ImageScale": ("image", "upscale_method", "width", "height", "crop"),
    "SaveImage": ("images", "filename_prefix"),
    "PreviewImage": ("images",),
}
COMFY_CHOICES = {"ckpt_name": "checkpoints", "lora_name": "loras", "model_name": "upscale_models"}
OUTPUT_NODES = {"SaveImage": "output", "PreviewImage": "temp"}


class FakeComfyUI(LoopbackServer):
    """ComfyUI's prompt queue, WebSocket events, history, uploads and interrupts."""

    def __init__(self, root: Path, *, checkpoints: tuple[str, ...] = ("sd15/tiny.safetensors",)) -> None:
        self.root = root
        self.folders: dict[str, list[str]] = {
            "checkpoints": list(checkpoints),
            "loras": [],
            "upscale_models": [],
        }
        self.step_delay = 0.01
        self.fail_class: str | None = None
        """A node class whose execution fails with ``fail_exception``."""
        self.fail_exception = ("RuntimeError", "boom")
        self.paused = False
        """While set, queued prompts are not started."""
        self.send_events = True
        """False: accept WebSocket clients but send them nothing (to test the history fallback)."""
        self.prompts: dict[str, dict[str, Any]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[str, dict[str, Any], str]] = []
        self.running: str | None = None
        self.interrupts: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self._interrupt = False
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._counter = 0
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/prompt", self._post_prompt)
        app.router.add_get("/queue", self._get_queue)
        app.router.add_post("/queue", self._post_queue)
        app.router.add_post("/interrupt", self._post_interrupt)
        app.router.add_get("/history/{prompt_id}", self._get_history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_get("/models/{folder}", self._models)
        app.cleanup_ctx.append(background_task(self._worker))
        super().__init__(app)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = socket
        queue_info = {"exec_info": {"queue_remaining": len(self.pending) + (self.running is not None)}}
        await self._send("status", {"status": queue_info, "sid": sid}, sid)
        try:
            async for _ in socket:
                pass
        finally:
            self._sockets.pop(sid, None)
        return socket

    async def _post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        graph = body.get("prompt")
        if not isinstance(graph, dict):
            return web.json_response({"error": "no prompt", "node_errors": []}, status=400)
        error, node_errors = self._validate(graph)
        if error is not None:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(uuid.uuid4())
        self.prompts[prompt_id] = graph
        self.pending.append((prompt_id, graph, str(body.get("client_id", ""))))
        return web.json_response({"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}})

    async def _get_queue(self, _: web.Request) -> web.Response:
        running = [[0, self.running, {}, {}, []]] if self.running else []
        pending = [[i + 1, pid, {}, {}, []] for i, (pid, _, _) in enumerate(self.pending)]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        for prompt_id in body.get("delete", []):
            before = len(self.pending)
            self.pending = [item for item in self.pending if item[0] != prompt_id]
            if len(self.pending) < before:
                self.deleted.append(prompt_id)
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.interrupts.append(body)
        if self.running and body.get("prompt_id", self.running) == self.running:
            self._interrupt = True
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        folder = self.root / request.query.get("type", "output") / request.query.get("subfolder", "")
        file = folder / request.query.get("filename", "")
        if ".." in request.query.get("filename", "") or not file.is_file():
            return web.Response(status=404)
        return web.Response(body=file.read_bytes(), content_type="image/png")

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        subfolder = str(form.get("subfolder", ""))
        target = self.root / str(form.get("type", "input")) / subfolder / image.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.file.read())
        return web.json_response({"name": image.filename, "subfolder": subfolder, "type": "input"})

    async def _system_stats(self, _: web.Request) -> web.Response:
        return web.json_response({"system": {"os": "posix", "comfyui_version": "fake"}, "devices": []})

    async def _models(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in self.folders:
            return web.Response(status=404)
        return web.json_response(self.folders[folder])

    # -- validation and execution --------------------------------------------------------------

    def _validate(self, graph: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            class_type = node.get("class_type")
            if class_type not in COMFY_NODES:
                message = f"Cannot execute because node {class_type} does not exist."
                return {"type": "invalid_prompt", "message": message, "details": f"Node ID '#{node_id}'"}, {}
            reasons = []
            inputs = node.get("inputs", {})
            for name in COMFY_NODES[class_type]:
                value = inputs.get(name)
                if name not in inputs:
                    reasons.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                        }
                    )
                elif isinstance(value, list) and str(value[0]) not in graph:
                    reasons.append(
                        {"type": "bad_linked_input", "message": "Bad linked input", "details": name}
                    )
                elif (
                    name in COMFY_CHOICES
                    and class_type != "LoadImage"
                    and value not in self.folders[COMFY_CHOICES[name]]
                ):
                    choices = self.folders[COMFY_CHOICES[name]]
                    reasons.append(
                        {
                            "type": "value_not_in_list",
                            "message": "Value not in list",
                            "details": f"{name}: '{value}' not in {choices}",
                        }
                    )
            if reasons:
                node_errors[node_id] = {"errors": reasons, "dependent_outputs": [], "class_type": class_type}
        if not any(node["class_type"] in OUTPUT_NODES for node in graph.values()):
            return {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": ""}, {}
        if node_errors:
            return {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
            }, node_errors
        return None, {}

    async def _send(self, kind: str, data: dict[str, Any], sid: str) -> None:
        socket = self._sockets.get(sid)
        if socket is not None and self.send_events and not socket.closed:
            await socket.send_json({"type": kind, "data": data})

    async def _worker(self) -> None:
        while True:
            if self.paused or not self.pending:
                await asyncio.sleep(0.005)
                continue
            prompt_id, graph, sid = self.pending.pop(0)
            self.running, self._interrupt = prompt_id, False
            messages: list[list[Any]] = []
            try:
                status, outputs = await self._execute(prompt_id, graph, sid, messages)
            finally:
                self.running = None
            self.history[prompt_id] = {
                "prompt": [0, prompt_id, graph, {}, []],
                "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": messages},
            }
            await self._send("executing", {"node": None, "prompt_id": prompt_id}, sid)

    async def _event(self, kind: str, data: dict[str, Any], sid: str, messages: list[list[Any]]) -> None:
        messages.append([kind, data])
        await self._send(kind, data, sid)

    async def _execute(
        self, prompt_id: str, graph: dict[str, Any], sid: str, messages: list[list[Any]]
    ) -> tuple[str, dict[str, Any]]:
        await self._event(
            "execution_start", {"prompt_id": prompt_id, "timestamp": time.time()}, sid, messages
        )
        await self._event("execution_cached", {"nodes": [], "prompt_id": prompt_id}, sid, messages)
        outputs: dict[str, Any] = {}
        for node_id in self._order(graph):
            node = graph[node_id]
            base = {
                "prompt_id": prompt_id,
                "node_id": node_id,
                "node_type": node["class_type"],
                "executed": [],
            }
            if self._interrupt:
                await self._event("execution_interrupted", base, sid, messages)
                return "error", outputs
            await self._send(
                "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}, sid
            )
            if node["class_type"] == self.fail_class:
                kind, text = self.fail_exception
                error = {**base, "exception_type": kind, "exception_message": text, "traceback": []}
                await self._event("execution_error", error, sid, messages)
                return "error", outputs
            if node["class_type"] == "KSampler":
                steps = int(node["inputs"]["steps"])
                for step in range(1, steps + 1):
                    await asyncio.sleep(self.step_delay)
                    if self._interrupt:
                        await self._event("execution_interrupted", base, sid, messages)
                        return "error", outputs
                    progress = {"value": step, "max": steps, "prompt_id": prompt_id, "node": node_id}
                    await self._send("progress", progress, sid)
            if node["class_type"] in OUTPUT_NODES:
                images = self._save(graph, node)
                outputs[node_id] = {"images": images}
                await self._send(
                    "executed", {"node": node_id, "output": {"images": images}, "prompt_id": prompt_id}, sid
                )
        await self._event(
            "execution_success", {"prompt_id": prompt_id, "timestamp": time.time()}, sid, messages
        )
        return "success", outputs

    @staticmethod
    def _order(graph: dict[str, Any]) -> list[str]:
        order: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in graph[node_id]["inputs"].values():
                if isinstance(value, list):
                    visit(str(value[0]))
            order.append(node_id)

        for node_id in graph:
            visit(node_id)
        return order

    def _shape(self, graph: dict[str, Any], link: list[Any]) -> tuple[int, int, int, int]:
        """(width, height, batch, seed) of the images or latents a link carries."""
        node = graph[str(link[0])]
        inputs = node["inputs"]
        match node["class_type"]:
            case "EmptyLatentImage":
                return int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"]), 0
            case "LoadImage":
                with Image.open(self.root / "input" / inputs["image"]) as image:
                    return image.width, image.height, 1, 0
            case "RepeatLatentBatch":
                width, height, batch, seed = self._shape(graph, inputs["samples"])
                return width, height, batch * int(inputs["amount"]), seed
            case "KSampler":
                width, height, batch, _ = self._shape(graph, inputs["latent_image"])
                return width, height, batch, int(inputs["seed"])
            case "ImageScale":
                _, _, batch, seed = self._shape(graph, inputs["image"])
                return int(inputs["width"]), int(inputs["height"]), batch, seed
            case "ImageUpscaleWithModel":
                width, height, batch, seed = self._shape(graph, inputs["image"])
                return width * 4, height * 4, batch, seed
            case _:
                first = inputs.get("samples") or inputs.get("pixels") or inputs.get("images")
                return self._shape(graph, first)

    def _save(self, graph: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
        width, height, batch, seed = self._shape(graph, node["inputs"]["images"])
        kind = OUTPUT_NODES[node["class_type"]]
        prefix = Path(node["inputs"].get("filename_prefix", "ComfyUI"))
        subfolder = "" if str(prefix.parent) == "." else str(prefix.parent)
        images = []
        for index in range(batch):
            self._counter += 1
            filename = f"{prefix.name}_{self._counter:05d}_.png"
            target = self.root / kind / subfolder / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png_bytes(width, height, ((seed + index) % 256, 40, 90)))
            images.append({"filename": filename, "subfolder": subfolder, "type": kind})
        return images
