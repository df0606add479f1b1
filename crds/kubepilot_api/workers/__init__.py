"""The operator-to-worker contract: the config file each pod reads and the progress protocol.

Workers hold no Kubernetes client. The operator renders a config file (``config.py``) into the
pod, gives it a token file and an intake URL (``env.py``), and the worker pushes reports
(``progress.py``) back; servers that execute GenerationJobs speak ``executor.py``.
"""
