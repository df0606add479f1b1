"""ControlPilot's static web UI served beside the API (or a page saying where to put it)."""

from __future__ import annotations

from pathlib import Path

import httpx

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.settings import Settings


def context(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, ui: str) -> GatewayContext:
    settings = Settings(namespace=namespace, profileSettings={"controlpilot": {"ui": {"dir": ui}}})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


async def test_the_ui_folder_is_served_at_the_root_and_the_api_still_wins(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<html>portal</html>")
    (tmp_path / "tagpilot").mkdir()
    (tmp_path / "tagpilot" / "index.html").write_text("<html>tagpilot</html>")
    (tmp_path / "app.js").write_text("fetch('/api/services')")
    app = create_app(context(kube, cache, store, namespace, str(tmp_path)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp") as http:
        assert (await http.get("/")).text == "<html>portal</html>"
        assert (await http.get("/tagpilot/")).text == "<html>tagpilot</html>"
        script = await http.get("/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        services = await http.get("/api/services")
        assert services.status_code == 200 and isinstance(services.json(), list)
        assert (await http.get("/docs")).status_code == 404, "ControlPilot serves no /docs"
        assert (await http.get("/missing.js")).status_code == 404


async def test_without_a_ui_folder_the_root_says_how_to_add_one(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str
) -> None:
    app = create_app(context(kube, cache, store, namespace, ""))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp") as http:
        root = await http.get("/")
        assert root.status_code == 200 and "profileSettings.controlpilot.ui.dir" in root.text
        assert (await http.get("/api/services")).status_code == 200
