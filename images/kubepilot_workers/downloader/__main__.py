"""``python -m kubepilot_workers.downloader --config FILE``.

Transfer threads are daemons: one stuck on a silent server never keeps the pod alive once the
final report is written (its partial file stays valid for the next run).
"""

import sys

from kubepilot_workers.downloader.cli import main

sys.exit(main(sys.argv[1:]))
