"""Readiness and liveness probes (httpGet, tcpSocket, exec) run against a container's pod IP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from .env import expand

JsonObject = dict[str, Any]


def resolve_port(port: object, container: JsonObject) -> int:
    """A probe port given as a number or as the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for declared in container.get("ports") or []:
        if declared.get("name") == text:
            return int(declared.get("containerPort", 0))
    raise ValueError(f"container has no port named {text!r}")


async def probe_once(probe: JsonObject, container: JsonObject, pod_ip: str, env: dict[str, str]) -> bool:
    """Run the probe one time; True when it succeeds within its timeoutSeconds."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            host = str(spec.get("host") or pod_ip)
            port = resolve_port(spec.get("port", 80), container)
            scheme = str(spec.get("scheme", "HTTP")).lower()
            path = str(spec.get("path", "/"))
            headers = {str(h.get("name")): str(h.get("value")) for h in spec.get("httpHeaders") or []}
            client_timeout = aiohttp.ClientTimeout(total=timeout)
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.get(f"{scheme}://{host}:{port}{path}", headers=headers, ssl=False) as resp,
            ):
                return 200 <= resp.status < 400
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host = str(spec.get("host") or pod_ip)
            port = resolve_port(spec.get("port", 0), container)
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        if "exec" in probe:
            argv = [expand(str(a), env) for a in probe["exec"].get("command") or []]
            if not argv:
                return False
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return False
    except (OSError, aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return False


async def run_probe(
    probe: JsonObject,
    container: JsonObject,
    pod_ip: str,
    env: dict[str, str],
    on_result: Callable[[bool], Awaitable[None]],
) -> None:
    """Probe forever at periodSeconds, reporting each change of the thresholded verdict via ``on_result``."""
    await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
    period = max(float(probe.get("periodSeconds", 10)), 0.1)
    success_threshold = max(int(probe.get("successThreshold", 1)), 1)
    failure_threshold = max(int(probe.get("failureThreshold", 3)), 1)
    verdict: bool | None = None
    successes = failures = 0
    while True:
        ok = await probe_once(probe, container, pod_ip, env)
        successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
        new_verdict = verdict
        if successes >= success_threshold:
            new_verdict = True
        elif failures >= failure_threshold:
            new_verdict = False
        if new_verdict is not None and new_verdict != verdict:
            verdict = new_verdict
            await on_result(verdict)
        await asyncio.sleep(period)


async def wait_for_startup(
    probe: JsonObject, container: JsonObject, pod_ip: str, env: dict[str, str]
) -> bool:
    """Run a startupProbe until its first success (True) or failureThreshold failures in a row (False)."""
    await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
    period = max(float(probe.get("periodSeconds", 10)), 0.1)
    failure_threshold = max(int(probe.get("failureThreshold", 3)), 1)
    failures = 0
    while True:
        if await probe_once(probe, container, pod_ip, env):
            return True
        failures += 1
        if failures >= failure_threshold:
            return False
        await asyncio.sleep(period)
