"""A local Hugging Face Hub + Civitai + plain file server for downloader tests and benchmarks.

Real HTTP on 127.0.0.1 (a threaded ``http.server``, HTTP/1.1 keep-alive) answering the routes
``huggingface_hub`` and our downloader call:

- ``GET /api/{models,datasets}/{repo}/revision/{rev}``: ``sha`` and ``siblings``;
- ``GET /api/{models,datasets}/{repo}/tree/{rev}[/{path}]?recursive=true``: files with
  ``oid``, ``size`` and ``lfs: {oid, size, pointerSize}``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (``X-Linked-Etag``
  and ``X-Linked-Size`` for LFS files), ``Content-Length``, ``Accept-Ranges`` and Range;
- ``GET /files/{name}``: plain files with Range;
- ``GET /api/v1/model-versions/{id}`` (Civitai-like), whose ``downloadUrl`` redirects (307)
  to ``/files/...`` as Civitai redirects to its CDN;
- ``GET /_stats``: the byte counters and per-response transfers, for a server in another process.

Knobs (attributes of :class:`HubFake`, safe to change while serving) make it misbehave: require
a token, refuse some tokens (403, gated), answer 429 a number of times or every n-th request, with
a ``Retry-After`` in seconds or as an HTTP-date, or every request with a fixed status (5xx);
the file-serving knobs (throttle, stall, drop mid-file) and byte counters come from
:class:`~tests.workers.hubfake_files.FileServing`.

Run standalone (the benchmark does, so the server has its own interpreter):
``python -m tests.workers.hubfake --repo org/name --dir FOLDER`` prints the base URL.
:mod:`tests.workers.downloader_harness` runs the downloader against it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from tests.workers.hubfake_files import FakeFile, FileServing, bytes_of

__all__ = ["CivitaiFile", "FakeFile", "FakeRepo", "HubFake", "bytes_of"]


@dataclass
class FakeRepo:
    """A repository at one commit, reachable under several revision names."""

    files: dict[str, FakeFile]
    commit: str = ""
    refs: set[str] = field(default_factory=lambda: {"main"})


@dataclass
class CivitaiFile:
    file_id: int
    name: str
    file: FakeFile
    primary: bool = True
    published_sha256: str | None = None
    """Hash the API publishes; defaults to the real one (set a wrong one to test mismatches)."""


class HubFake(FileServing):
    """The server and its knobs; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self) -> None:
        super().__init__()
        self.repos: dict[str, FakeRepo] = {}
        self.plain: dict[str, FakeFile] = {}
        self.civitai: dict[int, list[CivitaiFile]] = {}
        self.required_token: str | None = None
        """Every route needs ``Authorization: Bearer <this>``: missing or unknown → 401."""
        self.denied_tokens: set[str] = set()
        """Known tokens without access (gated repository): 403."""
        self.rate_limit_remaining = 0
        """Answer this many next requests with 429 (any route but /api/v1 lists)."""
        self.rate_limit_every = 0
        """Answer every n-th request with 429 (2: every other one; 0: never)."""
        self.retry_after: str | Callable[[], str] = "0"
        """The 429's ``Retry-After``, or a function giving it when the 429 is sent (an HTTP-date)."""
        self.rate_limited_at: list[float] = []
        """``time.monotonic()`` of each 429 sent."""
        self.request_times: list[float] = []
        """``time.monotonic()`` of each request's arrival, in the order of ``requests``."""
        self.error_status: int | None = None
        """Answer requests with this status (a broken server) ..."""
        self.error_remaining = -1
        """... this many times (-1: for ever)."""
        self.requests: list[tuple[str, str]] = []
        self.user_agents: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionError, TimeoutError):
                    # The client went away (a killed downloader): nothing to answer.
                    self.close_connection = True

            def do_GET(self) -> None:
                fake.handle(self, head=False)

            def do_HEAD(self) -> None:
                fake.handle(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- setup -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def civitai_api(self) -> str:
        return self.base_url + "/api/v1"

    def add_repo(self, repo_id: str, files: dict[str, FakeFile], *, refs: set[str] | None = None) -> FakeRepo:
        """Publish a repository; its commit id is derived from the content."""
        listing = "".join(
            f"{path}:{f.size}:{f.sha256 if f.lfs else f.git_sha1}" for path, f in sorted(files.items())
        )
        commit = hashlib.sha1(f"{repo_id}\n{listing}".encode(), usedforsecurity=False).hexdigest()
        repo = FakeRepo(files=files, commit=commit, refs=refs or {"main"})
        self.repos[repo_id] = repo
        return repo

    def add_plain(self, name: str, file: FakeFile) -> str:
        """Publish ``/files/{name}``; returns its URL."""
        self.plain[name] = file
        return f"{self.base_url}/files/{quote(name)}"

    def add_civitai_version(self, version_id: int, files: list[CivitaiFile]) -> None:
        self.civitai[version_id] = files
        for item in files:
            self.plain[f"civitai/{item.file_id}/{item.name}"] = item.file

    def start(self) -> HubFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> HubFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler, *, head: bool) -> None:
        parsed = urlparse(request.path)
        path = unquote(parsed.path)
        with self.lock:
            self.requests.append((request.command, path))
            self.request_times.append(time.monotonic())
            self.user_agents.append(request.headers.get("User-Agent", ""))
        refusal = self._refusal(request)
        if refusal is not None:
            status, headers = refusal
            self.send_json(request, status, {"error": "refused"}, headers, head=head)
            return
        route = self._route(request, path, parse_qs(parsed.query), head=head)
        if route is None:
            self.send_json(request, 404, {"error": "not found"}, {"X-Error-Code": "EntryNotFound"}, head=head)

    def _refusal(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str]] | None:
        with self.lock:
            if self.error_status is not None and self.error_remaining != 0:
                self.error_remaining -= 1
                return self.error_status, {}
            # The request is already counted in ``requests``: with every=2 the 2nd, 4th, ... are refused.
            limited = self.rate_limit_remaining > 0 or (
                self.rate_limit_every > 0 and len(self.requests) % self.rate_limit_every == 0
            )
            if limited:
                self.rate_limit_remaining = max(0, self.rate_limit_remaining - 1)
                self.rate_limited_at.append(time.monotonic())
                hint = self.retry_after() if callable(self.retry_after) else self.retry_after
                return 429, {"Retry-After": hint}
        if self.required_token is None:
            return None
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        if token in self.denied_tokens:
            return 403, {"X-Error-Code": "GatedRepo"}
        if token != self.required_token:
            return 401, {}
        return None

    def _route(
        self, request: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]], *, head: bool
    ) -> bool | None:
        if path == "/_stats":
            with self.lock:
                stats = {
                    "served": dict(self.served),
                    "transfers": [[t.key, t.start, t.sent, t.began, t.ended] for t in self.transfers],
                }
            self.send_json(request, 200, stats, {}, head=head)
            return True
        if match := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/revision/([^/]+)", path):
            repo = self._repo(match.group(2), match.group(3))
            if repo is None:
                return self._missing_repo(request, head)
            body = {
                "id": match.group(2),
                "modelId": match.group(2),
                "sha": repo.commit,
                "private": False,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
            self.send_json(request, 200, body, {}, head=head)
            return True
        if match := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
            repo = self._repo(match.group(2), match.group(3))
            if repo is None:
                return self._missing_repo(request, head)
            prefix = (match.group(4) or "").strip("/")
            self.send_json(request, 200, self._tree(repo, prefix), {}, head=head)
            return True
        if match := re.fullmatch(r"/api/v1/model-versions/(\d+)", path):
            files = self.civitai.get(int(match.group(1)))
            if files is None:
                return None
            self.send_json(request, 200, self._civitai_version(int(match.group(1)), files), {}, head=head)
            return True
        if match := re.fullmatch(r"/api/download/models/(\d+)", path):
            wanted = int(query.get("fileId", ["0"])[0])
            for item in self.civitai.get(int(match.group(1)), []):
                if item.file_id == wanted:
                    location = f"/files/{quote(f'civitai/{item.file_id}/{item.name}')}"
                    self.send_json(request, 307, {}, {"Location": location}, head=head)
                    return True
            return None
        if match := re.fullmatch(r"/files/(.+)", path):
            file = self.plain.get(match.group(1))
            if file is None:
                return None
            self.send_file(request, f"files/{match.group(1)}", file, {"ETag": f'"{file.sha256}"'}, head=head)
            return True
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo = self._repo(match.group(1), match.group(2))
            if repo is None:
                return self._missing_repo(request, head)
            file = repo.files.get(match.group(3))
            if file is None:
                return None
            headers = {"X-Repo-Commit": repo.commit}
            if file.lfs:
                headers |= {"X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(file.size)}
                headers["ETag"] = f'"{file.sha256}"'
            else:
                headers["ETag"] = f'"{file.git_sha1}"'
            self.send_file(request, f"{match.group(1)}/{match.group(3)}", file, headers, head=head)
            return True
        return None

    def _repo(self, repo_id: str, revision: str) -> FakeRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None or (revision not in repo.refs and revision != repo.commit):
            return None
        return repo

    def _missing_repo(self, request: BaseHTTPRequestHandler, head: bool) -> bool:
        self.send_json(
            request, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head=head
        )
        return True

    @staticmethod
    def _tree(repo: FakeRepo, prefix: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for path, file in sorted(repo.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            entry: dict[str, Any] = {"type": "file", "path": path, "size": file.size}
            if file.lfs:
                # The git oid of an LFS file is that of its pointer file; any stable id will do here.
                entry["oid"] = hashlib.sha1(file.sha256.encode(), usedforsecurity=False).hexdigest()
                entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": 134}
            else:
                entry["oid"] = file.git_sha1
            entries.append(entry)
        return entries

    def _civitai_version(self, version_id: int, files: list[CivitaiFile]) -> dict[str, Any]:
        return {
            "id": version_id,
            "modelId": 1000 + version_id,
            "files": [
                {
                    "id": item.file_id,
                    "name": item.name,
                    "sizeKB": item.file.size / 1024,
                    "primary": item.primary,
                    "hashes": {"SHA256": (item.published_sha256 or item.file.sha256).upper()},
                    "downloadUrl": f"{self.base_url}/api/download/models/{version_id}?fileId={item.file_id}",
                }
                for item in files
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a folder as one fake Hugging Face repository.")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args()
    files = {
        p.relative_to(args.dir).as_posix(): FakeFile(disk_path=p)
        for p in sorted(args.dir.rglob("*"))
        if p.is_file()
    }
    fake = HubFake()
    fake.add_repo(args.repo, files)
    fake.start()
    print(fake.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
