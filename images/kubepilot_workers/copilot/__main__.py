"""Run the Copilot sidecar: ``python -m kubepilot_workers.copilot --host 0.0.0.0 --port 7879``."""

import sys

from kubepilot_workers.copilot.cli import main

sys.exit(main(sys.argv[1:]))
