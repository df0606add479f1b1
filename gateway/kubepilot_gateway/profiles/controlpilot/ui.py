"""ControlPilot's own web UI, TagPilot and MediaPilot pages: static files the profile can serve.

The product serves its single-page UI at ``/``, TagPilot at ``/tagpilot`` and MediaPilot at
``/mediapilot``. Those files belong to LoRA Pilot, not to kubepilot, so they are not shipped:
point ``profileSettings.controlpilot.ui.dir`` at a copy of the product's static folder (in the
cluster, a volume or an image layer) and the profile serves it unchanged, next to the API it
calls. Without one, ``/`` answers a short page that says so, instead of a bare 404.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from kubepilot_gateway.settings import Strict

NO_UI_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>LoRA Pilot Portal (kubepilot)</title></head>
<body><h1>LoRA Pilot Portal API</h1>
<p>This is kubepilot's ControlPilot API (try <a href="api/services">api/services</a>).
The product's web UI is not bundled: set <code>profileSettings.controlpilot.ui.dir</code> in the
gateway settings to a copy of ControlPilot's static folder to serve it here.</p></body></html>
"""


class UiSettings(Strict):
    """Where the product's static web UI lives (optional)."""

    dir: str = Field(
        default="",
        description="ControlPilot's static folder (index.html at its root, tagpilot/ and mediapilot/ "
        "inside if present); empty: no UI, only the API.",
    )


def mount_ui(app: FastAPI, settings: UiSettings) -> None:
    """Serve the UI folder at ``/`` (after every API route, so the API always wins)."""
    folder = Path(settings.dir) if settings.dir else None
    if folder is None or not (folder / "index.html").is_file():

        @app.get("/", include_in_schema=False)
        async def no_ui() -> HTMLResponse:
            return HTMLResponse(NO_UI_PAGE)

        return
    # html=True serves index.html for a folder (/, /tagpilot/, /mediapilot/), as the product does.
    app.mount("/", StaticFiles(directory=folder, html=True), name="ui")
