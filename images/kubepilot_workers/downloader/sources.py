"""Civitai model versions and plain URLs turned into file tasks (Hugging Face lives in ``huggingface``)."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from kubepilot_api.modelpull import CivitaiSource, UrlFile
from kubepilot_workers.downloader.errors import (
    DownloadError,
    ErrorCode,
    classify,
    error_for_status,
    parse_retry_after,
)
from kubepilot_workers.downloader.tasks import FileTask, Transport, safe_relative_path

if TYPE_CHECKING:
    import httpx

SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def new_api_client() -> httpx.Client:
    """Client for small API calls (Civitai's model-version JSON); file bytes go through ``http_transfer``.

    httpx is imported here, not at module level: only Civitai sources need it, and it costs a tenth of a
    second of start-up that Hub and URL pulls would otherwise pay.
    """
    import httpx

    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0))


def url_tasks(files: list[UrlFile]) -> list[FileTask]:
    """One task per URL; the spec's sha256 (when given) is what the file must hash to."""
    tasks = []
    for item in files:
        path = safe_relative_path(item.path, item.url)
        tasks.append(
            FileTask(
                relative_path=path,
                url=item.url,
                transport=Transport.HTTP,
                identity=f"url:{item.url}",
                # The spec's size is a hint for progress and the free-space check; the hash is the proof.
                size_hint=item.sizeBytes,
                sha256=item.sha256.lower() if item.sha256 else None,
            )
        )
    if len({t.relative_path for t in tasks}) != len(tasks):
        raise DownloadError(ErrorCode.INVALID_CONFIG, "two URLs have the same destination path")
    return tasks


def civitai_tasks(
    client: httpx.Client, source: CivitaiSource, *, api_base: str, key: str | None
) -> list[FileTask]:
    """Resolve a model version through ``GET {api}/model-versions/{id}`` to its chosen file."""
    what = f"Civitai model version {source.versionId}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{api_base.rstrip('/')}/model-versions/{source.versionId}"
    import httpx  # already loaded by new_api_client; see there

    try:
        response = client.get(url, headers=headers)
    except httpx.HTTPError as error:
        raise classify(error, what) from None
    if response.status_code >= 400:
        raise error_for_status(
            response.status_code, what, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    try:
        body = response.json()
        files: list[dict[str, Any]] = list(body["files"])
    except (ValueError, KeyError, TypeError):
        raise DownloadError(ErrorCode.DOWNLOAD_FAILED, f"{what}: unexpected API answer") from None
    chosen = _choose(files, source.fileId)
    if chosen is None:
        detail = f"file {source.fileId}" if source.fileId else "a file"
        raise DownloadError(ErrorCode.MODEL_NOT_FOUND, f"{what} has no {detail}")
    download_url = str(chosen.get("downloadUrl") or "")
    if not download_url.startswith(("http://", "https://")):
        raise DownloadError(ErrorCode.DOWNLOAD_FAILED, f"{what}: the file has no download URL")
    name = str(chosen.get("name") or unquote(urlparse(download_url).path.rsplit("/", 1)[-1]))
    sha = str((chosen.get("hashes") or {}).get("SHA256") or "")
    return [
        FileTask(
            relative_path=safe_relative_path(name.rsplit("/", 1)[-1], what),
            url=download_url,
            transport=Transport.HTTP,
            identity=f"civitai:{source.versionId}:{chosen.get('id')}:"
            + hashlib.sha256(download_url.encode()).hexdigest()[:16],
            # sizeKB is rounded: good for progress only, never used as the exact size.
            size=None,
            size_hint=int(float(chosen.get("sizeKB") or 0) * 1024) or None,
            sha256=sha.lower() if SHA256_HEX.match(sha) else None,
            headers=headers,
        )
    ]


def _choose(files: list[dict[str, Any]], file_id: int | None) -> dict[str, Any] | None:
    if file_id is not None:
        return next((f for f in files if f.get("id") == file_id), None)
    return next((f for f in files if f.get("primary")), files[0] if files else None)
