"""Pure: which WebSocket messages one GenerationJob change makes, per channel (no I/O).

Document mode sends ``{"type", "data"}`` with the full job (``queue``) or generation
(``generations``) object, as the inventory proposes for the seed's unspecified payloads. Product
mode sends what the product's server sends: ``{"channel", "type", "data"}`` with its short
payloads, ``job_created`` for a new job and ``generation_complete`` (not ``_completed``).
"""

from __future__ import annotations

from typing import Any

from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio.config import Compat

JsonObject = dict[str, Any]
CHANNELS = ("queue", "generations", "models")


def _changed(old: JsonObject | None, new: JsonObject) -> bool:
    if old is None:
        return True
    before, after = old.get("status") or {}, new.get("status") or {}
    return (before.get("phase"), before.get("progress"), before.get("error")) != (
        after.get("phase"),
        after.get("progress"),
        after.get("error"),
    ) or bool((old.get("spec") or {}).get("cancel")) != bool((new.get("spec") or {}).get("cancel"))


def _product_job(cr: JsonObject) -> JsonObject:
    job = tr.job_object(cr, "product")
    return {key: job[key] for key in ("id", "status", "type", "prompt", "created_at", "progress", "error")}


def message(channel: str, event: str, data: JsonObject, compat: Compat) -> JsonObject:
    if compat == "product":
        return {"channel": channel, "type": event, "data": data}
    return {"type": event, "data": data}


def job_messages(old: JsonObject | None, new: JsonObject, compat: Compat) -> list[tuple[str, JsonObject]]:
    """(channel, message) pairs for a job that changed from ``old`` (None: new) to ``new``."""
    if not tr.is_ours(new) or not _changed(old, new):
        return []
    product = compat == "product"
    job = _product_job(new) if product else tr.job_object(new, compat)
    was = tr.phase(old) if old is not None else ""
    now = tr.phase(new)
    out: list[tuple[str, JsonObject]] = []
    first = "job_created" if product and old is None else "job_updated"
    out.append(("queue", message("queue", first, job, compat)))
    if now != was and now == "Completed":
        out.append(("queue", message("queue", "job_completed", job, compat)))
        if product:
            data = {**{k: job[k] for k in ("id", "status", "type", "prompt", "created_at")}}
            data["imageCount"] = len(tr.outputs(new))
            out.append(("generations", message("generations", "generation_complete", data, compat)))
        else:
            summary = tr.generation_summary(new, compat)
            out.append(("generations", message("generations", "generation_completed", summary, compat)))
    elif now != was and now == "Failed":
        out.append(("queue", message("queue", "job_failed", job, compat)))
    return out
