"""``python -m kubepilot_workers.adapters``."""

import sys

from kubepilot_workers.adapters.cli import main

raise SystemExit(main(sys.argv[1:]))
