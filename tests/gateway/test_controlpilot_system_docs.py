"""ControlPilot's docs endpoints (CP-46 … CP-49) and MediaPilot status (CP-50), in-process.

Docs are served from a docs root made in a temporary folder (README.md, CHANGELOG.md, docs/)
and, once, from the default root: this checkout's own README, CHANGELOG and docs/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot.docs import INSTALLED_ROOT, default_root, source_checkout
from kubepilot_gateway.settings import Settings

JsonObject = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
SI = resource_for("ServiceInstance")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A docs root with a README, a changelog, docs/ pages and a secret beside docs/."""
    base = tmp_path / "root"
    (base / "docs" / "guides").mkdir(parents=True)
    (base / "README.md").write_text("# Project\n")
    (base / "CHANGELOG.md").write_text("# Changes\n")
    (base / "docs" / "setup.md").write_text("# Setup\n")
    (base / "docs" / "guides" / "training.md").write_text("# Training\n")
    (base / "docs" / "notes.txt").write_text("not markdown\n")
    (base / "secret.md").write_text("outside docs/\n")
    return base


@pytest.fixture
def ctx(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str) -> GatewayContext:
    return GatewayContext(
        settings=Settings(namespace=namespace), client=kube, cache=cache, store=store, bus=cache.bus
    )


def app_for(ctx: GatewayContext, **system: Any) -> httpx.AsyncClient:
    settings = ctx.settings.model_copy(update={"profileSettings": {"controlpilot": {"system": system}}})
    app = create_app(GatewayContext(settings, ctx.client, ctx.cache, ctx.store, ctx.bus))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://controlpilot.test")


@pytest.fixture
async def http(ctx: GatewayContext, root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_for(ctx, docsRoot=str(root)) as session:
        yield session


# -- CP-46 … CP-48 ---------------------------------------------------------------------------------


async def test_readme_changelog_and_sitemap(http: httpx.AsyncClient, root: Path) -> None:
    assert (await http.get("/api/docs")).json() == {"content": "# Project\n", "source": "README.md"}
    assert (await http.get("/api/changelog")).json() == {"content": "# Changes\n", "source": "CHANGELOG"}
    (root / "docs" / "README.md").write_text("# Index\n")
    sitemap = await http.get("/api/docs/sitemap")
    assert sitemap.json() == {"content": "# Index\n", "source": "docs/README.md"}


async def test_missing_readme_and_changelog_are_404s_and_the_sitemap_is_generated(
    http: httpx.AsyncClient, root: Path
) -> None:
    (root / "README.md").unlink()
    (root / "CHANGELOG.md").unlink()
    response = await http.get("/api/docs")
    assert (response.status_code, response.json()) == (404, {"detail": "README not found"})
    assert (await http.get("/api/changelog")).status_code == 404
    # A bare CHANGELOG (no extension) is read too.
    (root / "CHANGELOG").write_text("plain\n")
    assert (await http.get("/api/changelog")).json() == {"content": "plain\n", "source": "CHANGELOG"}

    sitemap = await http.get("/api/docs/sitemap")
    assert sitemap.status_code == 200
    body = sitemap.json()
    assert body["source"] == "docs/README.md"
    assert "[setup](setup.md)" in body["content"]
    assert "[guides/training](guides/training.md)" in body["content"]
    assert "notes" not in body["content"] and "secret" not in body["content"]


async def test_the_sitemap_never_404s_even_without_docs(ctx: GatewayContext, tmp_path: Path) -> None:
    async with app_for(ctx, docsRoot=str(tmp_path / "nothing-here")) as http:
        response = await http.get("/api/docs/sitemap")
        assert response.status_code == 200 and response.json()["source"] == "docs/README.md"
        assert (await http.get("/api/docs")).status_code == 404
        missing = await http.get("/api/docs/file", params={"path": "setup.md"})
        assert (missing.status_code, missing.json()) == (404, {"detail": "Requested docs file not found"})


# -- CP-49 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("setup.md", "docs/setup.md"),
        ("guides/training.md", "docs/guides/training.md"),
        ("guides\\training.md", "docs/guides/training.md"),  # backslashes read as "/", as ControlPilot does
        ("./setup.md", "docs/setup.md"),
    ],
)
async def test_a_safe_relative_markdown_path_is_served(
    http: httpx.AsyncClient, path: str, source: str
) -> None:
    response = await http.get("/api/docs/file", params={"path": path})
    assert response.status_code == 200, response.text
    assert response.json()["source"] == source
    assert response.json()["content"].startswith("# ")


@pytest.mark.parametrize(
    "path",
    [
        "",
        "   ",
        "/etc/passwd.md",
        "../secret.md",
        "guides/../../secret.md",
        "..\\secret.md",
        "\\secret.md",
        "C:/docs/setup.md",
        "c:setup.md",
        "notes.txt",
        "setup",
        "setup.md/",
        "guides//training.md",
    ],
)
async def test_unsafe_or_non_markdown_paths_are_400s(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get("/api/docs/file", params={"path": path})
    assert (response.status_code, response.json()) == (400, {"detail": "Invalid docs path"})


async def test_a_symlink_out_of_docs_is_refused(http: httpx.AsyncClient, root: Path) -> None:
    (root / "docs" / "escape.md").symlink_to(root / "secret.md")
    (root / "docs" / "outside").symlink_to(root, target_is_directory=True)
    (root / "docs" / "inside.md").symlink_to(root / "docs" / "setup.md")
    for path in ("escape.md", "outside/secret.md", "outside/README.md"):
        response = await http.get("/api/docs/file", params={"path": path})
        assert (response.status_code, response.json()) == (400, {"detail": "Invalid docs path"}), path
    # A link that stays inside docs/ is an ordinary page.
    inside = await http.get("/api/docs/file", params={"path": "inside.md"})
    assert inside.json() == {"content": "# Setup\n", "source": "docs/inside.md"}
    # Nor does the generated sitemap list what the links lead to.
    (root / "docs" / "README.md").unlink(missing_ok=True)
    content = (await http.get("/api/docs/sitemap")).json()["content"]
    assert "escape" not in content and "secret" not in content


async def test_missing_pages_and_folders_named_like_pages_are_404s(
    http: httpx.AsyncClient, root: Path
) -> None:
    (root / "docs" / "folder.md").mkdir()
    for path in ("nope.md", "guides/nope.md", "folder.md"):
        response = await http.get("/api/docs/file", params={"path": path})
        assert (response.status_code, response.json()) == (404, {"detail": "Requested docs file not found"})


async def test_a_missing_path_parameter_is_a_422(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/docs/file")).status_code == 422


async def test_the_default_root_is_this_checkouts_own_docs(ctx: GatewayContext) -> None:
    assert source_checkout() == REPO
    assert default_root("") == REPO and default_root("/srv/docs") == Path("/srv/docs")
    assert INSTALLED_ROOT.parts[-3:] == ("share", "kubepilot", "docs")
    async with app_for(ctx) as http:
        readme = (await http.get("/api/docs")).json()
        assert readme["content"] == (REPO / "README.md").read_text()
        assert (await http.get("/api/changelog")).json()["content"] == (REPO / "CHANGELOG.md").read_text()
        sitemap = (await http.get("/api/docs/sitemap")).json()
        assert sitemap["content"] == (REPO / "docs" / "README.md").read_text()
        assert "workers.md" in sitemap["content"]
        page = await http.get("/api/docs/file", params={"path": "workers.md"})
        assert page.status_code == 200 and page.json()["source"] == "docs/workers.md"


# -- CP-50 -----------------------------------------------------------------------------------------

MEDIAPILOT_KEYS = [
    "available",
    "app_dir",
    "env_file",
    "env_file_exists",
    "output_dir",
    "invoke_dir",
    "thumbs_dir",
    "db_file",
    "comfy_api_url",
    "error",
]


async def test_mediapilot_is_reported_as_not_deployed(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/mediapilot/status")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == MEDIAPILOT_KEYS
    assert body["available"] is False and body["env_file_exists"] is False
    assert "not deployed" in body["error"]


async def test_mediapilot_follows_a_configured_service_instance(ctx: GatewayContext, store: CrStore) -> None:
    async with app_for(ctx, mediapilotServiceInstance="mediapilot") as http:
        missing = (await http.get("/api/mediapilot/status")).json()
        assert missing["available"] is False and "'mediapilot' not found" in missing["error"]

        # MediaPilot has no service type of its own: a ServiceInstance running its image.
        await store.create(SI, service_instance("mediapilot", "jupyter", image="example/mediapilot:1"))
        stopped = (await http.get("/api/mediapilot/status")).json()
        assert stopped["available"] is False and "'mediapilot' is" in stopped["error"]

        await store.create(SI, service_instance("comfy", "comfyui"))
        await store.patch_status(SI, "comfy", {"phase": "Running", "endpoint": "http://comfy.ns.svc:8188"})
        await store.patch_status(SI, "mediapilot", {"phase": "Running", "ready": True})
        ready = (await http.get("/api/mediapilot/status")).json()
        assert list(ready) == MEDIAPILOT_KEYS
        assert (ready["available"], ready["error"]) == (True, None)
        assert ready["comfy_api_url"] == "http://comfy.ns.svc:8188"
        assert ready["output_dir"] == ctx.settings.volumes.outputs


def service_instance(name: str, service_type: str, image: str = "") -> JsonObject:
    spec: JsonObject = {"serviceType": service_type, "running": True}
    if image:
        spec["image"] = image
    return {"apiVersion": SI.api_version, "kind": "ServiceInstance", "metadata": {"name": name}, "spec": spec}
