"""Programs that run inside kubepilot's pods: downloader, trainer, generator, adapters, node agent.

Workers are cluster-unaware: they read their config file, do the work, push progress to the
operator's intake and write a termination message (``kubepilot_api.workers``). They hold no
Kubernetes client and need no Kubernetes permissions.
"""
