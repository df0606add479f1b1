"""Leader election on a coordination.k8s.io Lease: several replicas, one acting.

Every replica watches and caches; only the holder of the Lease reconciles and writes. A holder
that stops renewing loses the Lease after ``leaseDurationSeconds``; writes go through
resourceVersion preconditions, so two replicas never both take it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from kubepilot_operator import kube

log = logging.getLogger(__name__)


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


class LeaseElector:
    """One replica's view of the Lease; ``try_acquire_or_renew`` is called every renew interval."""

    def __init__(self, api: kube.Kube, namespace: str, name: str, identity: str, duration: float) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.leading = False

    def try_acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        try:
            lease = self.api.get(kube.LEASES, self.namespace, self.name)
            if lease is None:
                self.api.request("POST", kube.LEASES, self.namespace, body=self._body(now, now, 0))
                return self._set(True)
            spec: dict[str, Any] = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            renewed = _parse(spec.get("renewTime")) or datetime.min.replace(tzinfo=UTC)
            expired = (
                renewed + timedelta(seconds=float(spec.get("leaseDurationSeconds") or self.duration)) < now
            )
            if holder != self.identity and not expired:
                return self._set(False)
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
            acquired = now if holder != self.identity else (_parse(spec.get("acquireTime")) or now)
            body = self._body(acquired, now, transitions)
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            self.api.request("PUT", kube.LEASES, self.namespace, self.name, body=body)
            return self._set(True)
        except kube.ApiError as error:
            if error.status != 409:
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
            return self._set(False)
        except Exception as error:  # an unreachable API server: stop acting, try again later
            log.warning("lease %s/%s: %s", self.namespace, self.name, error)
            return self._set(False)

    def release(self) -> None:
        """Give the Lease up on a clean shutdown, so another replica takes over at once."""
        if not self.leading:
            return
        try:
            lease = self.api.get(kube.LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                body = self._body(datetime.now(UTC), datetime(1970, 1, 1, tzinfo=UTC), 0)
                body["spec"]["holderIdentity"] = ""
                body["spec"]["leaseTransitions"] = (lease.get("spec") or {}).get("leaseTransitions", 0)
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                self.api.request("PUT", kube.LEASES, self.namespace, self.name, body=body)
        except Exception as error:
            log.info("could not release the lease: %s", error)
        self.leading = False

    def _set(self, leading: bool) -> bool:
        if leading != self.leading:
            log.info(
                "%s leadership of lease %s/%s", "acquired" if leading else "lost", self.namespace, self.name
            )
        self.leading = leading
        return leading

    def _body(self, acquired: datetime, renewed: datetime, transitions: int) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.duration),
                "acquireTime": _micro(acquired),
                "renewTime": _micro(renewed),
                "leaseTransitions": transitions,
            },
        }
