"""The devcluster's Kubernetes API server emulator.

HTTP stack: aiohttp. It is already a dependency of kopf (so installed wherever our operator runs),
its server has low per-request overhead on one event loop, and its ``StreamResponse`` gives
chunked, incrementally flushed responses, which is exactly what watch streams and ``follow`` logs
need. Running everything on one event loop also lets the store mutate without locks.

Modules: :mod:`.store` (objects, resourceVersion, history, watchers), :mod:`.persistence`,
:mod:`.cluster` (write semantics), :mod:`.deletion` (finalizers, GC, namespaces), :mod:`.crds`,
:mod:`.structural` and :mod:`.cel_rules` (CR schemas), :mod:`.patching`, :mod:`.listing`
(list/watch), :mod:`.tables`, :mod:`.discovery`, :mod:`.openapi`, :mod:`.faults`, :mod:`.server`.
"""

from kubepilot_devcluster.apiserver.server import DevClusterServer

__all__ = ["DevClusterServer"]
