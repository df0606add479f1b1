"""Hugging Face repositories through ``huggingface_hub``: revision, file list, hashes, location.

``huggingface_hub`` does all the Hub protocol: ``HfApi.repo_info`` resolves the revision to a
commit, ``list_repo_tree`` lists the files with their LFS sha256 and sizes, ``filter_repo_objects``
applies the patterns, ``hf_hub_url`` + ``get_hf_file_metadata`` authenticate, follow the Hub's
redirects and give each file's final location. The bytes then travel through our
:mod:`~kubepilot_workers.downloader.http_transfer` into a ``.part`` file we own, for two measured
reasons: ``hf_hub_download`` (2.x) writes to a process-unique temporary file that it deletes on
failure, so a killed pod would start every large file over, and its httpx transfer reached about
a third of our throughput (see ``http_transfer``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFile

# Public names of a lazily loaded package that mypy does not see as re-exported.
from huggingface_hub.utils import (  # type: ignore[attr-defined]
    build_hf_headers,
    disable_progress_bars,
    filter_repo_objects,
)

from kubepilot_api.modelpull import HuggingFaceSource
from kubepilot_workers.downloader import http_transfer
from kubepilot_workers.downloader.errors import DownloadError, ErrorCode, classify
from kubepilot_workers.downloader.partfile import PartWriter
from kubepilot_workers.downloader.retry import RetryPolicy, call_with_retries
from kubepilot_workers.downloader.tasks import FileTask, Transport, safe_relative_path

log = logging.getLogger(__name__)

T = TypeVar("T")

PUBLIC_ENDPOINT = "https://huggingface.co"


class HuggingFaceClient:
    """One repository's files at one commit, fetched with one token (or none)."""

    def __init__(
        self,
        source: HuggingFaceSource,
        *,
        endpoint: str,
        token: str | None,
        retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        disable_progress_bars()
        self.source = source
        self.endpoint = (endpoint or PUBLIC_ENDPOINT).rstrip("/")
        # False, not None: never fall back to a token cached on the machine or in HF_TOKEN.
        self._token: str | bool = token or False
        self._api = HfApi(endpoint=self.endpoint, token=self._token)
        self._retry = retry or RetryPolicy()
        self._stop = stop or threading.Event()
        self.commit = ""

    def _retried(self, call: Callable[[], T], what: str, stop: threading.Event | None = None) -> T:
        """One Hub request, retried on its own while the Hub rate-limits it or fails passingly.

        Alone, not with the requests around it: a Hub refusing every other request would otherwise
        refuse each retry of a pair at the same place, for ever.
        """

        def attempt() -> T:
            try:
                return call()
            except (HfHubHTTPError, OSError, ValueError) as error:
                raise classify(error, what) from None

        return call_with_retries(attempt, self._retry, stop or self._stop)

    def resolve(self) -> list[FileTask]:
        """Resolve the revision to a commit and list the files to fetch, with their hashes and sizes."""
        source = self.source
        what = f"{source.repoType} {source.repo}@{source.revision}"
        info = self._retried(
            lambda: self._api.repo_info(source.repo, repo_type=source.repoType, revision=source.revision),
            what,
        )
        if not info.sha:
            raise DownloadError(ErrorCode.DOWNLOAD_FAILED, f"{what}: the Hub returned no commit")
        self.commit = commit = info.sha
        listing = self._retried(
            lambda: list(
                self._api.list_repo_tree(
                    source.repo, repo_type=source.repoType, revision=commit, recursive=True
                )
            ),
            what,
        )
        entries = [entry for entry in listing if isinstance(entry, RepoFile)]
        return [self._task(entry) for entry in self._select(entries, what)]

    def _select(self, entries: list[RepoFile], what: str) -> list[RepoFile]:
        if self.source.files:
            by_path = {entry.path: entry for entry in entries}
            wanted = [safe_relative_path(path, what) for path in self.source.files]
            missing = [path for path in wanted if path not in by_path]
            if missing:
                raise DownloadError(
                    ErrorCode.MODEL_NOT_FOUND, f"{what}: no such file(s): {', '.join(missing[:5])}"
                )
            return [by_path[path] for path in dict.fromkeys(wanted)]
        selected = list(
            filter_repo_objects(
                entries,
                allow_patterns=self.source.allowPatterns or None,
                ignore_patterns=self.source.ignorePatterns or None,
                key=lambda entry: entry.path,
            )
        )
        if not selected:
            raise DownloadError(
                ErrorCode.MODEL_NOT_FOUND,
                f"{what}: no file matches allowPatterns {self.source.allowPatterns or ['*']}"
                f" and ignorePatterns {self.source.ignorePatterns}",
            )
        return selected

    def _task(self, entry: RepoFile) -> FileTask:
        source = self.source
        path = safe_relative_path(entry.path, source.repo)
        url = hf_hub_url(
            source.repo, entry.path, repo_type=source.repoType, revision=self.commit, endpoint=self.endpoint
        )
        lfs = entry.lfs
        return FileTask(
            relative_path=path,
            url=url,
            transport=Transport.HUGGING_FACE,
            identity=f"hf:{source.repoType}:{source.repo}@{self.commit}:{entry.path}",
            size=lfs.size if lfs is not None else entry.size,
            sha256=lfs.sha256.lower() if lfs is not None else None,
            git_sha1=None if lfs is not None else entry.blob_id,
        )

    def fetch(self, task: FileTask, writer: PartWriter) -> None:
        """Transfer one file into ``writer``, resuming from its size."""
        metadata = self._retried(
            lambda: get_hf_file_metadata(task.url, token=self._token, endpoint=self.endpoint),
            task.relative_path,
            writer.stop_event,
        )
        if metadata.size is not None and task.size is not None and metadata.size != task.size:
            raise DownloadError(
                ErrorCode.CHECKSUM_MISMATCH,
                f"{task.relative_path}: the Hub lists {task.size} bytes but serves {metadata.size}",
            )
        # The library's own headers (user agent, token); the transfer drops the token on a CDN redirect.
        headers = build_hf_headers(token=self._token)
        if urlparse(metadata.location).netloc != urlparse(self.endpoint).netloc:
            # A CDN location is pre-signed: the Hub token must not travel to another host.
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        http_transfer.fetch(
            metadata.location, headers, writer, size=task.size, label=task.relative_path, retry=self._retry
        )
