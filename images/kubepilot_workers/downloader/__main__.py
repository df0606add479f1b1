"""``python -m kubepilot_workers.downloader --config FILE`` (the downloader image's entrypoint).

Transfer threads are daemons: one stuck on a silent server never keeps the pod alive once the
final report is written (its partial file stays valid for the next run).

The process ends with ``os._exit`` once logs and standard streams are flushed: by then the final
report is sent, the termination message written and every file closed, and a normal interpreter
shutdown would spend another 0.1-0.2 s tearing down modules (pydantic, huggingface_hub) that a
2 GB pull on a fast link would otherwise pay for nothing.
"""

import logging
import os
import sys

from kubepilot_workers.downloader.cli import main

code = main(sys.argv[1:])
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
