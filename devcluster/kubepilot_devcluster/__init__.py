"""kubepilot devcluster: a single-process Kubernetes API emulator for local development and tests.

Real clients (kubectl, the ``kubernetes`` Python client, kopf) talk to it over plain HTTP as if it
were a cluster. The API server lives in :mod:`kubepilot_devcluster.apiserver`; the controllers and
the process kubelet (separate packages) are ordinary API clients of it.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
