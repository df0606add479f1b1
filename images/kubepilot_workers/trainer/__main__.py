"""``python -m kubepilot_workers.trainer``: see :mod:`kubepilot_workers.trainer.cli`."""

import sys

from kubepilot_workers.trainer.cli import main

sys.exit(main(sys.argv[1:]))
