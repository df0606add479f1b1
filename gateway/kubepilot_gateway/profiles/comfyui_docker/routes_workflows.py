"""The seed's Workflow Management endpoints: ``GET /api/workflows``, ``GET /api/workflows/{id}``,
``POST /api/workflows`` (templates and user workflows: see ``workflows``).

Answers beyond the seed's: list rows and the single workflow carry ``source`` (``template`` /
``user``), and the single workflow its list row's fields besides ``id`` and ``workflow``; ``total``
counts the matches (after ``category`` / ``search``, all pages: the guide's optional ``page`` /
``per_page`` paging). Errors: an id that cannot name a
workflow is 400 ``INVALID_REQUEST``, an unknown one 404 ``WORKFLOW_NOT_FOUND`` (a code of ours);
a save with a bad graph 400 ``INVALID_WORKFLOW``; a body over ``workflowMaxBytes`` 413
``PAYLOAD_TOO_LARGE`` (read no further than the limit); a name that is a template's id 409
``WORKFLOW_IS_TEMPLATE`` (templates are read-only); saving a name again replaces that workflow.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kubepilot_gateway.profiles.comfyui_docker import workflows as wf
from kubepilot_gateway.profiles.comfyui_docker.dashboard import Dashboard
from kubepilot_gateway.profiles.comfyui_docker.errors import JsonInputError, api_error, now_iso, parse_json
from kubepilot_gateway.profiles.comfyui_docker.routes import PAGE, PER_PAGE, paginate

JsonObject = dict[str, Any]


def _bad_request(message: str, field: str | None = None) -> Exception:
    return api_error(400, "INVALID_REQUEST", message, {"field": field} if field else {})


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    too_large = api_error(
        413, "PAYLOAD_TOO_LARGE", f"A workflow save is at most {limit} bytes", {"max_bytes": limit}
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_router(board: Dashboard, store: wf.Workflows) -> APIRouter:
    router = APIRouter()

    async def templates() -> dict[str, wf.Workflow]:
        return await store.templates(await board.catalog())

    @router.get("/api/workflows")
    async def list_workflows(
        category: str | None = None,
        search: str | None = None,
        page: int | None = PAGE,
        per_page: int | None = PER_PAGE,
    ) -> JsonObject:
        """CD-18: templates, then user workflows, filtered by category and a name/description search
        (``total``: every match, all pages)."""
        found = list((await templates()).values()) + await store.user()
        rows = [flow.row() for flow in found if flow.matches(category, search)]
        shown, paging = paginate(rows, page, per_page)
        return {"workflows": shown, "total": len(rows), **paging}

    @router.get("/api/workflows/{workflow_id}")
    async def get_workflow(workflow_id: str) -> JsonObject:
        """CD-19: a template (which wins over a user file of the same id) or a user workflow."""
        ident = wf.workflow_id(workflow_id)
        if ident is None:
            raise _bad_request(f"{workflow_id!r} is not a workflow id", "workflow_id")
        flow = (await templates()).get(ident) or await store.user_one(ident)
        if flow is None:
            raise api_error(
                404, "WORKFLOW_NOT_FOUND", f"Workflow {ident} does not exist", {"workflow_id": ident}
            )
        return {"id": flow.id, "workflow": flow.graph, **flow.row()}

    @router.post("/api/workflows")
    async def save_workflow(request: Request) -> JsonObject:
        """CD-20: validate, then write ``<workflowUserFolder>/<id>.json`` on the outputs volume."""
        raw = await read_limited(request, store.settings.workflowMaxBytes)
        try:
            body = parse_json(raw)
        except JsonInputError as error:
            raise _bad_request(f"The body is not JSON: {error}") from error
        if not isinstance(body, dict):
            raise _bad_request("The body is a JSON object with name and workflow")
        name = body.get("name")
        if not isinstance(name, str):
            raise _bad_request("name (a string) is required", "name")
        ident = wf.id_from_name(name)
        graph = body.get("workflow")
        if isinstance(graph, str):  # a graph sent as JSON text
            try:
                graph = parse_json(graph)
            except JsonInputError as error:
                raise wf.invalid_workflow(f"workflow is not valid JSON: {error}") from error
        problem = wf.graph_problem(graph)
        if problem is not None:
            raise wf.invalid_workflow(problem, field="workflow")
        for field in ("category", "description"):
            if body.get(field) is not None and not isinstance(body.get(field), str):
                raise _bad_request(f"{field} is a string", field)
        if ident in await templates():
            raise api_error(
                409,
                "WORKFLOW_IS_TEMPLATE",
                f"{ident} is a template's id; save under another name",
                {"id": ident},
            )
        document = {
            "id": ident,
            "name": name.strip(),
            "category": str(body.get("category") or wf.USER_CATEGORY),
            "description": str(body.get("description") or ""),
            "saved_at": now_iso(),
            "workflow": graph,
        }
        await store.save(ident, document)
        return {"id": ident, "status": "saved", "path": store.relative(ident)}

    return router
