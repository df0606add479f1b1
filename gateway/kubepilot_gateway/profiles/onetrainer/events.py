"""OT-WS-05 … OT-WS-08: ``sample_*`` messages from one TrainingRun change (old → new). Pure.

The sources, because trainers report samples differently:

- a trainer that reports its sampling pass (``status.sampling``: kind, current, total; the report
  format has it, no trainer fills it yet) gives ``sample_<kind>_progress`` ``{current, total}`` on
  every change of the pass and ``sample_<kind>`` ``{sample_count}`` when the pass is over
  (``sampling`` gone), with the images the pass made;
- a trainer that only reports the newest sample file (``status.samples.latest``; the OneTrainer
  adapter does, once OneTrainer says it rendered one) gives ``sample_<kind>`` ``{sample_count: 1}``
  for each new file, ``custom`` when it is in OneTrainer's ``custom`` folder, else ``default``.
  Reports are coalesced (about one a second), so several images rendered within one report are
  one message;
- the built-in trainer reports its samples the same way (``status.samples``: newest file and a
  running count) into one folder: ``sample_count`` is the count's increase, and the kind is
  ``default`` when the newest file's name carries one of the run's sample prompts (the trainer
  names files ``step<N>-<index>-<prompt slug>``), else ``custom``.

No trainer reports its sampling passes today (``status.sampling`` stays empty), so the
``sample_<kind>_progress`` messages also come from the ``sample`` action itself
(``status.actions.sample``): when a new request is recorded (Pending) a ``{current: 0, total: N}``,
and on a built-in session, whose acknowledgement comes after the images are written ("N sample(s) at
step S"), a ``{current: N, total: N}`` when it is Done. The kind is ``custom`` when the request
carries parameters (``kubepilot.io/action-sample-params``), else ``default``; ``N`` is 1 for a
custom sample and the run's sample prompts for a default one (the built-in trainer renders one
empty-prompt image without any; a OneTrainer session's enabled inline ``samples``, and no message
where it has none, as OneTrainer then reads its own sample file). A OneTrainer acknowledgement only
means OneTrainer took the command, so its pass ends with the ``sample_<kind>`` of the new file.
"""

from __future__ import annotations

import re
from typing import Any

from kubepilot_api.constants import ACTION_ANNOTATION_PREFIX

JsonObject = dict[str, Any]
BUILTIN = "kubepilot-lora"
SAMPLE_ACTION = "sample"
SAMPLE_PARAMS = f"{ACTION_ANNOTATION_PREFIX}{SAMPLE_ACTION}-params"
BUILTIN_ACK = re.compile(r"^(?P<count>\d+) sample\(s\)")


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


def _sample_action(run: JsonObject | None) -> JsonObject:
    action = (_status(run).get("actions") or {}).get(SAMPLE_ACTION)
    return action if isinstance(action, dict) else {}


def default_total(run: JsonObject) -> int | None:
    """Images a default sample pass of ``run`` renders; None where the gateway cannot know."""
    spec = run.get("spec") or {}
    if spec.get("trainer") == BUILTIN:
        prompts = (spec.get("hyperparameters") or {}).get("samplePrompts")
        return max(1, len(prompts)) if isinstance(prompts, list) else 1
    samples = ((spec.get("tool") or {}).get("config") or {}).get("samples")
    if not isinstance(samples, list):
        return None
    enabled = [s for s in samples if isinstance(s, dict) and s.get("enabled", True) is not False]
    return len(enabled) or None


def action_events(old: JsonObject | None, new: JsonObject) -> list[JsonObject]:
    """``sample_<kind>_progress`` from the ``sample`` action's state (see the module docstring)."""
    before, after = _sample_action(old), _sample_action(new)
    nonce = after.get("requestedNonce")
    if not nonce:
        return []
    annotations = (new.get("metadata") or {}).get("annotations") or {}
    kind = "custom" if annotations.get(SAMPLE_PARAMS) else "default"
    total = 1 if kind == "custom" else default_total(new)
    messages: list[JsonObject] = []
    if nonce != before.get("requestedNonce") and after.get("state") == "Pending" and total:
        messages.append({"type": f"sample_{kind}_progress", "data": {"current": 0, "total": total}})
    done = after.get("state") == "Done" and (
        nonce != before.get("requestedNonce") or before.get("state") != "Done"
    )
    if done and (new.get("spec") or {}).get("trainer") == BUILTIN:
        match = BUILTIN_ACK.match(str(after.get("message") or ""))
        count = int(match["count"]) if match else total or 0
        messages.append({"type": f"sample_{kind}_progress", "data": {"current": count, "total": count}})
    return messages


def sample_events(old: JsonObject | None, new: JsonObject) -> list[JsonObject]:
    """The ``sample_*`` messages the change from ``old`` to ``new`` stands for (oldest first)."""
    before, after = _status(old).get("sampling"), _status(new).get("sampling")
    messages: list[JsonObject] = action_events(old, new)
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
