"""The downloader on real filesystems: a full disk, and a type folder that cannot hard-link the store.

The full disk is a real one: a 1 MiB tmpfs mounted for the test (the tests run as root here).
Where mounting is not permitted, the same code path is driven by a real file-size limit
(``RLIMIT_FSIZE`` with SIGXFSZ ignored, so writes fail with EFBIG) in a downloader subprocess.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workers.downloader_harness import PullHarness
from tests.workers.hubfake import FakeFile, HubFake, bytes_of
from tests.workers.intake import ContractIntake

BIG = bytes_of("disk", 2_500_000)
FS_LIMIT = 1024 * 1024


@pytest.fixture
def hub() -> Iterator[HubFake]:
    with HubFake() as server:
        yield server


@contextlib.contextmanager
def _tiny_tmpfs(path: Path) -> Iterator[bool]:
    """Mount a 1 MiB tmpfs at ``path``; yields False (mounting nothing) where that is not permitted."""
    path.mkdir(parents=True)
    try:
        command = ["mount", "-t", "tmpfs", "-o", f"size={FS_LIMIT}", "tmpfs", str(path)]
        mounted = subprocess.run(command, capture_output=True, check=False).returncode == 0
    except OSError:
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FS_LIMIT, FS_LIMIT))


def test_a_full_disk_fails_with_insufficient_storage_and_the_partial_file_resumes_later(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    url = hub.add_plain("big.bin", FakeFile(BIG))
    with _tiny_tmpfs(tmp_path / "small") as mounted:
        pull = PullHarness(tmp_path, intake, models=tmp_path / "small" if mounted else None)
        pull.write_config({"type": "URL", "urls": [{"url": url, "path": "big.safetensors"}]})
        if mounted:
            code = pull.run()
        else:
            env = pull.env | {"PATH": "/usr/bin:/bin"}
            code = subprocess.run(
                [sys.executable, "-m", "kubepilot_workers.downloader", "--config", str(pull.config_path)],
                env=env,
                preexec_fn=_limit_file_size,
                capture_output=True,
                check=False,
            ).returncode

        assert code == 1
        final = pull.final()
        assert final["state"] == "Failed" and final["error"]["code"] == "INSUFFICIENT_STORAGE"
        assert not (pull.target / "big.safetensors").exists(), "nothing partial in the type folder"
        [part] = pull.partials()
        kept = part.stat().st_size
        assert 0 < kept <= FS_LIMIT and BIG.startswith(part.read_bytes()), (
            "the partial file is a valid prefix"
        )

        if mounted:
            subprocess.run(["mount", "-o", "remount,size=8m", str(tmp_path / "small")], check=True)
            assert pull.run() == 0
            assert (pull.target / "big.safetensors").read_bytes() == BIG
            assert hub.range_starts["files/big.bin"][-1] == kept


def test_a_type_folder_on_another_filesystem_gets_a_copy_and_reruns_still_skip_it(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    other_fs = Path(tempfile.mkdtemp(prefix="kubepilot-target-", dir="/dev/shm"))
    try:
        assert other_fs.stat().st_dev != tmp_path.stat().st_dev
        url = hub.add_plain("copy.bin", FakeFile(BIG[:300_000]))
        pull = PullHarness(tmp_path, intake, target=other_fs / "checkpoints")
        pull.write_config({"type": "URL", "urls": [{"url": url, "path": "copy.safetensors"}]})

        assert pull.run() == 0
        placed = pull.target / "copy.safetensors"
        assert placed.read_bytes() == BIG[:300_000]
        [blob] = (pull.store / "blobs").iterdir()
        assert not placed.samefile(blob), "a copy, since hard links cannot cross filesystems"

        assert pull.run() == 0
        assert hub.served["files/copy.bin"] == 300_000, "the copy is re-hashed, not downloaded again"
        assert pull.final()["files"][0]["state"] == "Verified"
    finally:
        shutil.rmtree(other_fs, ignore_errors=True)


def test_a_pull_larger_than_the_free_space_fails_before_downloading(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    url = hub.add_plain("sized.bin", FakeFile(BIG))
    declared = 2 * shutil.disk_usage(tmp_path).free
    pull = PullHarness(tmp_path, intake)
    pull.write_config({"type": "URL", "urls": [{"url": url, "path": "sized.bin", "sizeBytes": declared}]})

    assert pull.run() == 1

    assert pull.final()["error"]["code"] == "INSUFFICIENT_STORAGE"
    assert "free" in pull.final()["error"]["message"] and hub.served == {}


def test_an_expected_size_larger_than_the_free_space_fails_before_downloading(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    # The URL publishes no size up front: only the spec's expectedSizeBytes can tell it will not fit.
    url = hub.add_plain("unsized.bin", FakeFile(BIG))
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        {"type": "URL", "urls": [{"url": url, "path": "unsized.bin"}]},
        expectedSizeBytes=2 * shutil.disk_usage(tmp_path).free,
    )

    assert pull.run() == 1

    assert pull.final()["error"]["code"] == "INSUFFICIENT_STORAGE" and hub.served == {}


def test_an_expected_size_that_fits_downloads(hub: HubFake, intake: ContractIntake, tmp_path: Path) -> None:
    url = hub.add_plain("unsized.bin", FakeFile(BIG))
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        {"type": "URL", "urls": [{"url": url, "path": "unsized.bin"}]}, expectedSizeBytes=len(BIG)
    )

    assert pull.run() == 0

    assert pull.final()["state"] == "Succeeded" and hub.served["files/unsized.bin"] == len(BIG)
