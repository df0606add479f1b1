"""Download failures with stable error codes, and the mapping from HTTP and OS errors to them."""

from __future__ import annotations

import email.utils
import errno
import math
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx
    from huggingface_hub.errors import HfHubHTTPError


class ErrorCode(StrEnum):
    """``ErrorInfo.code`` values the downloader reports."""

    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    ACCESS_DENIED = "ACCESS_DENIED"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
    INSUFFICIENT_STORAGE = "INSUFFICIENT_STORAGE"
    INVALID_CONFIG = "INVALID_CONFIG"
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"


class DownloadError(Exception):
    """A failure with its code; ``retryable`` ones (429, 5xx) are worth another try after ``retry_after``."""

    def __init__(
        self, code: ErrorCode, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable or code is ErrorCode.RATE_LIMITED
        self.retry_after = retry_after


class Interrupted(Exception):
    """Raised inside a transfer when the run was asked to stop (pause, cancel, SIGTERM, another failure)."""


STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (``120``) or an HTTP-date
    (``Wed, 21 Oct 2015 07:28:00 GMT``, counted from ``now``); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # RFC 9110 dates are GMT; a zone-less one is taken as such
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def error_for_status(status: int, what: str, *, retry_after: float | None = None) -> DownloadError:
    """The error for an HTTP failure status while fetching ``what``."""
    if status == 401:
        return DownloadError(
            ErrorCode.AUTHENTICATION_FAILED,
            f"{what}: HTTP 401, the token is missing or invalid (or the repository does not exist)",
        )
    if status == 403:
        return DownloadError(
            ErrorCode.ACCESS_DENIED, f"{what}: HTTP 403, access denied (gated or private; request access)"
        )
    if status in (404, 410):
        return DownloadError(ErrorCode.MODEL_NOT_FOUND, f"{what}: HTTP {status}, not found")
    if status == 429:
        return DownloadError(
            ErrorCode.RATE_LIMITED, f"{what}: HTTP 429, rate limited", retry_after=retry_after
        )
    if status == 507:
        return DownloadError(ErrorCode.INSUFFICIENT_STORAGE, f"{what}: HTTP 507 from the server")
    return DownloadError(
        ErrorCode.DOWNLOAD_FAILED, f"{what}: HTTP {status}", retryable=status in (500, 502, 503, 504)
    )


def classify(error: BaseException, what: str) -> DownloadError:
    """Map any exception raised while fetching ``what`` to a :class:`DownloadError`."""
    if isinstance(error, DownloadError):
        return error
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        return DownloadError(
            ErrorCode.INSUFFICIENT_STORAGE,
            f"{what}: no space left on the models volume ({errno.errorcode.get(error.errno or 0, '?')}); "
            "the partial file is kept for resume",
        )
    # huggingface_hub costs a quarter second to import: only Hub sources load it, and only they raise this.
    hub_error: type[HfHubHTTPError] | None = getattr(
        sys.modules.get("huggingface_hub.errors"), "HfHubHTTPError", None
    )
    if hub_error is not None and isinstance(error, hub_error) and error.response is not None:
        response = error.response
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return error_for_status(response.status_code, what, retry_after=retry_after)
    # httpx likewise: only the Civitai API client loads it.
    status_error: type[httpx.HTTPStatusError] | None = getattr(
        sys.modules.get("httpx"), "HTTPStatusError", None
    )
    if status_error is not None and isinstance(error, status_error):
        retry_after = parse_retry_after(error.response.headers.get("Retry-After"))
        return error_for_status(error.response.status_code, what, retry_after=retry_after)
    # Messages of transport errors carry URLs at most, never headers, so they are safe to report.
    detail = str(error).splitlines()[0][:300] if str(error) else ""
    return DownloadError(ErrorCode.DOWNLOAD_FAILED, f"{what}: {type(error).__name__}: {detail}".rstrip(": "))
