"""``python -m kubepilot_devcluster`` runs the devcluster in the foreground (same flags as the CLI)."""

import sys

from kubepilot_devcluster.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
