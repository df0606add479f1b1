"""An asyncio client for the Kubernetes API over httpx, configured the way kubectl is.

The official client's loaders read the kubeconfig or the pod's service account (host, bearer
token, client certificate, CA); its requests are synchronous, so we keep its ``Configuration``
and speak JSON over ``httpx.AsyncClient`` ourselves. Objects stay plain dicts, as the watch stream
delivers them, so the cache and the profiles never see generated model classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from kubepilot_gateway.kube.apiuse import Grant, grant_for
from kubepilot_gateway.kube.errors import ApiError, KubeUnavailable, TooManyRequests, api_error
from kubepilot_gateway.settings import Kube

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
Params = dict[str, str | int]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
MAX_RETRY_AFTER_SECONDS = 10.0


def load_configuration(kube: Kube) -> kube_client.Configuration:
    """The client configuration: the pod's service account in a cluster, else the kubeconfig."""
    configuration = kube_client.Configuration()
    in_cluster = kube.mode == "in-cluster" or (
        kube.mode == "auto" and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    if in_cluster:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration
        except kube_config.ConfigException:
            if kube.mode == "in-cluster":
                raise
            # auto: a pod without a mounted token (or a shell with the variable set) uses a kubeconfig.
            log.info("no in-cluster service account; falling back to the kubeconfig")
    kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kube.kubeconfig or None,
        context=kube.context or None,
        client_configuration=configuration,
    )
    return configuration


class _ConfigurationAuth(httpx.Auth):
    """Bearer token (or basic auth) from the configuration, refreshed as the loaders arrange."""

    def __init__(self, configuration: kube_client.Configuration) -> None:
        self._configuration = configuration
        # Service-account tokens rotate and exec plugins expire: the loaders install a hook that
        # reloads them. Without one the header never changes, so it is computed once.
        self._static = None if configuration.refresh_api_key_hook is not None else self._header()

    def _header(self) -> str | None:
        token = self._configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            return str(token)
        if self._configuration.username or self._configuration.password:
            return str(self._configuration.get_basic_auth_token())
        return None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        header = self._static if self._static is not None else self._header()
        if header:
            request.headers["Authorization"] = header
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        header = self._static
        if header is None and self._configuration.refresh_api_key_hook is not None:
            # The hook may read a file or run an exec plugin: keep it off the event loop.
            header = await asyncio.to_thread(self._header)
        if header:
            request.headers["Authorization"] = header
        yield request


def _tls(configuration: kube_client.Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


class KubeClient:
    """JSON requests and watch streams against one API server."""

    def __init__(
        self,
        configuration: kube_client.Configuration,
        *,
        request_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        throttle_retries: int = 3,
    ) -> None:
        self.host = str(configuration.host).rstrip("/")
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._throttle_retries = throttle_retries
        self.used: set[Grant] = set()
        """Every RBAC grant a request of this client needed (the RBAC tests read it)."""
        self._http = httpx.AsyncClient(
            base_url=self.host,
            auth=_ConfigurationAuth(configuration),
            verify=_tls(configuration) if self.host.startswith("https") else True,
            proxy=configuration.proxy or None,
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
            # Every informer holds one connection for its watch; requests need their own.
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            headers={"Accept": "application/json", "User-Agent": "kubepilot-gateway"},
        )

    @classmethod
    def from_settings(cls, kube: Kube) -> KubeClient:
        return cls(
            load_configuration(kube),
            request_timeout=kube.requestTimeoutSeconds,
            connect_timeout=kube.connectTimeoutSeconds,
            throttle_retries=kube.throttleRetries,
        )

    def _record(self, method: str, path: str, params: Params | None) -> None:
        grant = grant_for(method, path, params)
        if grant is not None:
            self.used.add(grant)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        """One call; the decoded JSON answer, or a typed ``ApiError`` / ``KubeUnavailable``.

        A 429 is retried after the server's Retry-After (bounded): the server refused the request
        before acting on it, so repeating it is safe for every verb.
        """
        self._record(method, path, params)
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else None
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, path, params=params, content=content, headers=headers
                )
            except httpx.TransportError as error:
                raise KubeUnavailable(f"{method} {path}: {type(error).__name__}: {error}") from error
            if response.is_success:
                if not response.content:
                    return {}
                answer = response.json()
                return answer if isinstance(answer, dict) else {"items": answer}
            failure = api_error(response.status_code, response.content)
            if isinstance(failure, TooManyRequests) and attempt < self._throttle_retries:
                attempt += 1
                await asyncio.sleep(min(_retry_after(failure, response), MAX_RETRY_AFTER_SECONDS))
                continue
            raise failure

    async def request_text(self, method: str, path: str, *, params: Params | None = None) -> str:
        """One call whose answer is text (a pod log); failures as typed errors, like ``request``."""
        self._record(method, path, params)
        try:
            response = await self._http.request(
                method, path, params=params, headers={"Accept": "text/plain, */*"}
            )
        except httpx.TransportError as error:
            raise KubeUnavailable(f"{method} {path}: {type(error).__name__}: {error}") from error
        if not response.is_success:
            raise api_error(response.status_code, response.content)
        return response.content.decode("utf-8", errors="replace")

    async def watch(
        self, path: str, params: Params, *, idle_timeout: float
    ) -> AsyncGenerator[JsonObject, None]:
        """The events of one watch stream until the server ends it.

        Raises ``ApiError`` when the server refuses the watch and ``KubeUnavailable`` when the
        connection fails or stays silent longer than ``idle_timeout`` (bookmarks keep a healthy
        stream talking).
        """
        self._record("GET", path, {**params, "watch": "1"})
        timeout = httpx.Timeout(self._request_timeout, connect=self._connect_timeout, read=idle_timeout)
        try:
            async with self._http.stream(
                "GET", path, params={**params, "watch": "1"}, timeout=timeout
            ) as response:
                if not response.is_success:
                    raise api_error(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError as error:
                        raise KubeUnavailable(f"watch {path}: undecodable line: {line[:200]!r}") from error
                    if isinstance(event, dict):
                        yield event
        except httpx.TransportError as error:
            raise KubeUnavailable(f"watch {path}: {type(error).__name__}: {error}") from error


def _retry_after(error: ApiError, response: httpx.Response) -> float:
    if error.retry_after is not None:
        return error.retry_after
    try:
        return float(response.headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0
