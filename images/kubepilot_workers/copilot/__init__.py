"""The Copilot sidecar: ControlPilot's Copilot Sidecar API (CS-01 … CS-03) over the GitHub Copilot CLI.

Served by the ``copilot`` ServiceInstance (``python -m kubepilot_workers.copilot``, port 7879); the
gateway's ControlPilot profile proxies ``/api/copilot/*`` to it. ``POST /chat`` runs
``copilot -p <prompt>`` non-interactively in a folder under the workspace root and answers with its
output. The GitHub token reaches the CLI through its environment only and never appears in a
response or a log line.
"""
