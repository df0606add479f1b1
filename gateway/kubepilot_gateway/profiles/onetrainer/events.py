"""OT-WS-05 … OT-WS-08: ``sample_*`` messages from one TrainingRun change (old → new). Pure.

Two sources, because trainers report samples differently:

- a trainer that reports its sampling pass (``status.sampling``: kind, current, total; the built-in
  trainer does) gives ``sample_<kind>_progress`` ``{current, total}`` on every change of the pass and
  ``sample_<kind>`` ``{sample_count}`` when the pass is over (``sampling`` gone), with the images the
  pass made;
- a trainer that only reports the newest sample file (``status.samples.latest``; the OneTrainer
  adapter does, once OneTrainer says it rendered one) gives ``sample_<kind>`` ``{sample_count: 1}``
  for each new file, ``custom`` when it is in OneTrainer's ``custom`` folder, else ``default``.
  Reports are coalesced (about one a second), so several images rendered within one report are
  one message;
- the built-in trainer reports its samples the same way (``status.samples``: newest file and a
  running count) into one folder: ``sample_count`` is the count's increase, and the kind is
  ``default`` when the newest file's name carries one of the run's sample prompts (the trainer
  names files ``step<N>-<index>-<prompt slug>``), else ``custom``.
"""

from __future__ import annotations

import re
from typing import Any

JsonObject = dict[str, Any]
BUILTIN = "kubepilot-lora"


def _status(run: JsonObject | None) -> JsonObject:
    status = (run or {}).get("status")
    return status if isinstance(status, dict) else {}


BUILTIN_NAME = re.compile(r"^step\d{8}-\d{2}-(?P<slug>.*)\.[A-Za-z]+$")


def slug(text: str) -> str:
    """The built-in trainer's file-name form of a prompt."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "empty"


def _builtin_sample(old: JsonObject | None, new: JsonObject, latest: str) -> JsonObject:
    spec = new.get("spec") or {}
    prompts = (spec.get("hyperparameters") or {}).get("samplePrompts") or []
    match = BUILTIN_NAME.match(latest.rsplit("/", 1)[-1])
    default = match is not None and match["slug"] in {slug(str(p)) for p in prompts}
    before = (_status(old).get("samples") or {}).get("count")
    after = (_status(new).get("samples") or {}).get("count")
    count = after - before if isinstance(before, int) and isinstance(after, int) and after > before else 1
    if not isinstance(before, int) and isinstance(after, int) and after > 0:
        count = after
    return {"type": f"sample_{'default' if default else 'custom'}", "data": {"sample_count": count}}


def _kind(value: Any) -> str:
    return "custom" if value == "custom" else "default"


def sample_events(old: JsonObject | None, new: JsonObject) -> list[JsonObject]:
    """The ``sample_*`` messages the change from ``old`` to ``new`` stands for (oldest first)."""
    before, after = _status(old).get("sampling"), _status(new).get("sampling")
    messages: list[JsonObject] = []
    if isinstance(before, dict) and (
        not isinstance(after, dict) or after.get("startedAt") != before.get("startedAt")
    ):
        current = before.get("current")
        count = current if isinstance(current, int) and current > 0 else 0
        messages.append({"type": f"sample_{_kind(before.get('kind'))}", "data": {"sample_count": count}})
    if isinstance(after, dict) and after != before:
        current, total = after.get("current"), after.get("total")
        data = {
            "current": current if isinstance(current, int) else 0,
            "total": total if isinstance(total, int) and total >= 0 else 0,
        }
        messages.append({"type": f"sample_{_kind(after.get('kind'))}_progress", "data": data})
    if before is None and after is None:
        old_latest = str((_status(old).get("samples") or {}).get("latest") or "")
        new_latest = str((_status(new).get("samples") or {}).get("latest") or "")
        if new_latest and new_latest != old_latest and (new.get("spec") or {}).get("trainer") == BUILTIN:
            messages.append(_builtin_sample(old, new, new_latest))
        elif new_latest and new_latest != old_latest:
            folder = new_latest.rsplit("/", 2)[-2] if new_latest.count("/") >= 1 else ""
            messages.append({"type": f"sample_{_kind(folder)}", "data": {"sample_count": 1}})
    return messages
