"""``kubepilot crds generate|check``: write the CRD YAML, or fail when the committed YAML drifted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubepilot_api.crdgen import chart_crd_files, plain_crd_files
from kubepilot_api.generated import drift, write_if_changed

CRDS_DIR = Path("crds")
CHART_CRDS_DIR = Path("charts/kubepilot/templates/crds")


def expected_files(root: Path) -> dict[Path, str]:
    """Every generated file, by path under the repository root."""
    files = {root / CRDS_DIR / name: text for name, text in plain_crd_files().items()}
    files.update({root / CHART_CRDS_DIR / name: text for name, text in chart_crd_files().items()})
    return files


def generate(root: Path) -> list[Path]:
    """Write the generated files; returns those that changed."""
    return [path for path, text in expected_files(root).items() if write_if_changed(path, text)]


def check(root: Path) -> list[str]:
    """Differences between the committed and the generated files (empty when in sync)."""
    problems = (drift(path, text, max_lines=40) for path, text in expected_files(root).items())
    return [problem for problem in problems if problem]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kubepilot crds", description=__doc__)
    parser.add_argument(
        "action", choices=["generate", "check"], help="write the YAML, or verify it is current"
    )
    parser.add_argument(
        "--root", type=Path, default=Path(), help="repository root (default: current directory)"
    )
    args = parser.parse_args(argv)
    if args.action == "generate":
        for path in generate(args.root):
            print(f"wrote {path}")
        return 0
    problems = check(args.root)
    for problem in problems:
        sys.stderr.write(problem + "\n")
    if problems:
        sys.stderr.write("CRDs are stale: run `kubepilot crds generate` and commit the result.\n")
        return 1
    print("CRDs are up to date.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
