"""Run the node agent: ``python -m kubepilot_workers.nodeagent --config FILE``."""

import sys

from kubepilot_workers.nodeagent.cli import main

sys.exit(main(sys.argv[1:]))
