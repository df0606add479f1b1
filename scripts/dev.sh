#!/usr/bin/env bash
# The local stack: devcluster + operator + gateway with the five API profiles answering.
# Today only the pieces that exist are started; see the README's "What runs today".
set -euo pipefail
cd "$(dirname "$0")/.."
echo "kubepilot dev: the devcluster, operator and gateway are not in this build yet." >&2
echo "Run 'bash scripts/test.sh' to check the API types, CRDs and workers that are." >&2
exit 1
