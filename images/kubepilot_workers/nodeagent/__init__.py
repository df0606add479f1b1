"""The node agent (a DaemonSet): GPU telemetry through NVML and host usage through psutil, served as
Prometheus metrics on ``/metrics`` and as a JSON snapshot on ``/v1/snapshot`` for the gateway."""
