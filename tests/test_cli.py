"""The ``kubepilot`` dispatcher finds subcommands through entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _kubepilot(*args: str) -> subprocess.CompletedProcess[str]:
    # The console script the install put beside this interpreter, whatever PATH says.
    exe = Path(sys.executable).parent / "kubepilot"
    assert exe.is_file(), "the kubepilot console script is installed"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)


def test_help_lists_the_registered_commands() -> None:
    result = _kubepilot("--help")
    assert result.returncode == 0
    assert "  crds\n" in result.stdout


def test_an_unknown_command_is_an_error_with_usage() -> None:
    result = _kubepilot("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr and "usage:" in result.stderr


def test_the_crds_subcommand_runs() -> None:
    result = _kubepilot("crds", "--help")
    assert result.returncode == 0 and "generate" in result.stdout
