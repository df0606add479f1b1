"""The distribution builds as a wheel that carries every package, its type markers and entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "kubepilot_api",
    "kubepilot_operator",
    "kubepilot_gateway",
    "kubepilot_workers",
    "kubepilot_devcluster",
]


def test_the_wheel_holds_every_package_and_imports_from_a_plain_install(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("kubepilot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names
        assert f"{package}/py.typed" in names
    assert not any(name.startswith(("tests/", "operator/", "examples/")) for name in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "kubepilot = kubepilot_api.cli:main" in text
    assert "crds = kubepilot_api.crdgen_cli:main" in text

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    # PYTHONPATH comes before the editable install's finder, so these imports come from the wheel.
    probe = (
        "import importlib, sys; print('\\n'.join(importlib.import_module(p).__file__ for p in sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *PACKAGES],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(target)) for line in result.stdout.splitlines())
    assert len(result.stdout.splitlines()) == len(PACKAGES)
