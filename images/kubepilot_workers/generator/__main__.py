"""``python -m kubepilot_workers.generator``."""

import sys

from kubepilot_workers.generator.cli import main

raise SystemExit(main(sys.argv[1:]))
