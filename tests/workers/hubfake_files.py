"""File content and the HTTP file serving of the fake Hub: Range, throttling, stalls, drops, counters."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

SERVE_CHUNK = 1024 * 1024
THROTTLE_CHUNK = 16 * 1024


@dataclass
class FakeFile:
    """File content, in memory (tests) or on disk (benchmark)."""

    data: bytes | None = None
    disk_path: Path | None = None
    lfs: bool = True
    _sha256: str = ""

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.disk_path is not None
        return self.disk_path.stat().st_size

    @property
    def sha256(self) -> str:
        if not self._sha256:
            digest = hashlib.sha256()
            for offset in range(0, self.size, SERVE_CHUNK):
                digest.update(self.read(offset, SERVE_CHUNK))
            self._sha256 = digest.hexdigest()
        return self._sha256

    @property
    def git_sha1(self) -> str:
        digest = hashlib.sha1(f"blob {self.size}\0".encode(), usedforsecurity=False)
        for offset in range(0, self.size, SERVE_CHUNK):
            digest.update(self.read(offset, SERVE_CHUNK))
        return digest.hexdigest()

    def read(self, offset: int, count: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + count]
        assert self.disk_path is not None
        with self.disk_path.open("rb") as file:
            file.seek(offset)
            return file.read(count)


@dataclass
class Transfer:
    """One response body: which file, from which offset, how many bytes went out."""

    key: str
    start: int
    sent: int = 0
    began: float = field(default_factory=time.monotonic)
    ended: float = 0.0


class FileServing:
    """File bodies with Range; knobs make transfers slow or broken, counters show what was sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.throttle_bytes_per_second = 0
        self.stall_after: dict[str, int] = {}
        """file key → stop sending after this many bytes of the file, until :attr:`release` is set."""
        self.drop_after: dict[str, int] = {}
        """file key → close the connection once the body reaches this file offset (once)."""
        self.release = threading.Event()
        self.served: dict[str, int] = {}
        """file key → body bytes written to sockets (``repo/path`` or ``files/name``)."""
        self.range_starts: dict[str, list[int]] = {}
        self.active = 0
        self.most_active = 0
        """Most response bodies in flight at once."""
        self.transfers: list[Transfer] = []
        """One entry per GET body, in arrival order (a killed client's entry may still grow a little)."""
        """file key → start offsets of the GET requests (0 for a full download)."""

    @staticmethod
    def send_json(
        request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str], *, head: bool
    ) -> None:
        payload = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if not head:
            request.wfile.write(payload)

    def send_file(
        self,
        request: BaseHTTPRequestHandler,
        key: str,
        file: FakeFile,
        headers: dict[str, str],
        *,
        head: bool,
    ) -> None:
        size = file.size
        start, end = 0, size - 1
        status = 200
        range_header = request.headers.get("Range")
        if range_header and not head:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if match is None or int(match.group(1)) >= size:
                self.send_json(request, 416, {}, {"Content-Range": f"bytes */{size}"}, head=head)
                return
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            status = 206
        request.send_response(status)
        request.send_header("Content-Length", str(end - start + 1))
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            request.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if head:
            return
        with self.lock:
            self.range_starts.setdefault(key, []).append(start)
            transfer = Transfer(key, start)
            self.transfers.append(transfer)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self._stream(request, transfer, file, start, end + 1)
        finally:
            with self.lock:
                self.active -= 1
                transfer.ended = time.monotonic()

    def _stream(
        self, request: BaseHTTPRequestHandler, transfer: Transfer, file: FakeFile, start: int, stop: int
    ) -> None:
        key = transfer.key
        throttle = self.throttle_bytes_per_second
        if (
            file.disk_path is not None
            and not throttle
            and key not in self.stall_after
            and key not in self.drop_after
        ):
            self._sendfile(request, transfer, file.disk_path, start, stop)
            return
        chunk_size = THROTTLE_CHUNK if throttle else SERVE_CHUNK
        began = time.monotonic()
        position = start
        sent = 0
        while position < stop:
            limit = stop
            stall = self.stall_after.get(key)
            if stall is not None and position <= stall and not self.release.is_set():
                limit = min(limit, stall)
            drop = self.drop_after.get(key)
            if drop is not None and position < drop:
                limit = min(limit, drop)
            if position >= limit:
                if drop is not None and position >= drop and self.drop_after.get(key) == drop:
                    del self.drop_after[key]
                    request.close_connection = True
                    return
                # Stalled: keep the connection open and silent until released.
                self.release.wait(0.05)
                continue
            chunk = file.read(position, min(chunk_size, limit - position))
            try:
                request.wfile.write(chunk)
            except OSError:
                request.close_connection = True
                return
            position += len(chunk)
            sent += len(chunk)
            with self.lock:
                self.served[key] = self.served.get(key, 0) + len(chunk)
                transfer.sent += len(chunk)
            if throttle:
                ahead = sent / throttle - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
            if drop is not None and position >= drop:
                del self.drop_after[key]
                request.close_connection = True
                return

    def _sendfile(
        self, request: BaseHTTPRequestHandler, transfer: Transfer, path: Path, start: int, stop: int
    ) -> None:
        key = transfer.key
        """Zero-copy path for the benchmark: no knobs apply, the kernel moves the bytes."""
        sent = 0
        try:
            with path.open("rb") as source:
                while start + sent < stop:
                    count = request.connection.sendfile(
                        source, offset=start + sent, count=stop - start - sent
                    )
                    if count == 0:
                        break
                    sent += count
        except OSError:
            request.close_connection = True
        with self.lock:
            self.served[key] = self.served.get(key, 0) + sent
            transfer.sent += sent


def bytes_of(seed: str, size: int) -> bytes:
    """Deterministic incompressible-looking content of ``size`` bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 32
        counter += 1
    return bytes(out[:size])
