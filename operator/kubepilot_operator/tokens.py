"""Intake tokens: derived from one operator key and the workload's uid (HMAC-SHA256).

Deriving instead of storing means the intake checks a token without reading a Secret per report,
every operator replica computes the same token, and a GenerationJob dispatched to a running
service needs no Secret at all (its token travels in the dispatch). Pods still receive theirs as a
file from a Secret owned by their CR (DESIGN §4), so user code never sees the operator key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from kubepilot_operator import kube

KEY_SECRET_NAME = "kubepilot-intake-key"
KEY_FIELD = "key"


def derive(key: bytes, uid: str) -> str:
    return hmac.new(key, uid.encode(), hashlib.sha256).hexdigest()


def matches(key: bytes, uid: str, presented: str) -> bool:
    return bool(uid) and hmac.compare_digest(derive(key, uid), presented)


def subject(cr: dict[str, Any]) -> str:
    """What a workload's token is derived from: its uid, and a GenerationJob's scheduling attempt.

    A GenerationJob scheduled again (its service lost it) gets a new token, so the old executor's
    late reports cannot overwrite the new attempt's progress.
    """
    uid = str(cr.get("metadata", {}).get("uid", ""))
    # Only GenerationJobs have status.attempt (bodies need not carry ``kind``: a PATCH answer may not).
    attempt = int((cr.get("status") or {}).get("attempt", 0) or 0)
    return f"{uid}/{attempt}" if attempt and uid else uid


def load_or_create_key(api: kube.Kube, namespace: str) -> bytes:
    """The operator key from its Secret, created (once, race-safe) when absent."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KEY_SECRET_NAME, "namespace": namespace},
        "type": "Opaque",
        "data": {KEY_FIELD: base64.b64encode(secrets.token_bytes(32)).decode()},
    }
    secret = api.create(kube.SECRETS, namespace, body)  # an existing Secret wins over ours
    return base64.b64decode(secret["data"][KEY_FIELD])
