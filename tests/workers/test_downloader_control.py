"""The downloader as a real process: progress every second, SIGKILL and resume, SIGTERM, pause, cancel."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubepilot_api.modelpull import FileState
from kubepilot_api.workers.progress import DownloadReport, PendingAction, WorkState
from kubepilot_workers.downloader.progress import ProgressTracker
from tests.workers.downloader_harness import PullHarness, wait_for
from tests.workers.hubfake import FakeFile, HubFake, bytes_of
from tests.workers.intake import ContractIntake

BIG = bytes_of("big", 3_000_000)
SMALL = bytes_of("small", 400_000)
THROTTLE = 1_000_000
"""Bytes per second: the big file takes about three seconds."""


@pytest.fixture
def hub() -> Iterator[HubFake]:
    with HubFake() as server:
        server.add_repo(
            "org/big", {"a-small.safetensors": FakeFile(SMALL), "b-big.safetensors": FakeFile(BIG)}
        )
        yield server


def _start(hub: HubFake, pull: PullHarness, parallel: int = 1) -> None:
    pull.write_config(
        {"type": "HuggingFace", "huggingFace": {"repo": "org/big"}},
        huggingFaceEndpoint=hub.base_url,
        maxParallelFiles=parallel,
    )


def _part_size(pull: PullHarness) -> int:
    return sum(p.stat().st_size for p in pull.partials())


def _download_reports(pull: PullHarness) -> list[DownloadReport]:
    return [r for r in pull.reports() if isinstance(r, DownloadReport)]


def test_progress_is_reported_at_least_once_a_second_while_running(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.throttle_bytes_per_second = THROTTLE
    pull = PullHarness(tmp_path, intake)
    _start(hub, pull)
    process = pull.spawn()
    assert process.wait(timeout=30) == 0

    reports = _download_reports(pull)
    for starting in [r.progress for r in reports if r.state is WorkState.STARTING and r.progress]:
        # Before the repository is resolved nothing is known, and says so (not "0 of 0 bytes, 100%").
        assert (starting.bytesTotal, starting.filesTotal, starting.percent) == (-1, -1, -1)
    running = [r for r in reports if r.state is WorkState.RUNNING and r.progress is not None]
    assert len(running) >= 2
    times = [r.progress.lastUpdatedTime for r in running if r.progress is not None]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 2.0, f"reports must come about every second, gaps {gaps}"  # second-precision stamps
    done = [r.progress.bytesDone for r in running if r.progress is not None]
    assert done == sorted(done) and done[-1] > 0
    middle = running[len(running) // 2].progress
    assert middle is not None and middle.bytesTotal == len(BIG) + len(SMALL) and 0 < middle.percent < 100
    assert middle.speedBytesPerSecond > THROTTLE // 4 and middle.etaSeconds >= 0
    assert middle.currentFile == "checkpoints/pull/b-big.safetensors"
    final = reports[-1]
    assert final.final and final.state is WorkState.SUCCEEDED and final.progress is not None
    assert final.progress.filesDone == 2 and all(f.state is FileState.VERIFIED for f in final.files)


def test_progress_before_resolving_is_unknown_and_an_empty_resolved_list_is_complete() -> None:
    unknown = ProgressTracker([], resolved=False).progress()
    assert (unknown.bytesTotal, unknown.filesTotal, unknown.percent, unknown.etaSeconds) == (-1, -1, -1, -1)
    empty = ProgressTracker([]).progress()
    assert (empty.bytesTotal, empty.filesTotal, empty.percent, empty.etaSeconds) == (0, 0, 100, 0)


def test_a_killed_download_resumes_without_fetching_complete_bytes_again(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.throttle_bytes_per_second = THROTTLE
    pull = PullHarness(tmp_path, intake)
    _start(hub, pull)
    process = pull.spawn()
    wait_for(lambda: _part_size(pull) >= len(BIG) // 2, timeout=20, what="half of the big file")
    process.kill()
    process.wait(timeout=10)
    kept = _part_size(pull)
    assert len(BIG) // 2 <= kept < len(BIG)
    assert (pull.target / "a-small.safetensors").read_bytes() == SMALL
    assert not (pull.target / "b-big.safetensors").exists(), "nothing partial in the type folder"
    earlier = len(hub.transfers)

    hub.throttle_bytes_per_second = 0
    rerun = pull.spawn()
    assert rerun.wait(timeout=30) == 0

    assert (pull.target / "b-big.safetensors").read_bytes() == BIG
    resumed = hub.transfers[earlier:]
    assert [(t.key, t.start, t.sent) for t in resumed] == [
        ("org/big/b-big.safetensors", kept, len(BIG) - kept)
    ], "only the missing tail of the partial file is fetched; the complete file not at all"
    assert pull.partials() == []


def test_sigterm_stops_cleanly_and_keeps_the_partial_file(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.throttle_bytes_per_second = THROTTLE
    pull = PullHarness(tmp_path, intake)
    _start(hub, pull)
    process = pull.spawn()
    wait_for(lambda: _part_size(pull) > 0, timeout=20, what="a partial file")
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 143
    final = pull.final()
    assert final["state"] == "Stopped" and final["final"] is True
    assert _part_size(pull) > 0
    assert not (pull.target / "b-big.safetensors").exists()


@pytest.mark.parametrize(("action", "state"), [("pause", "Paused"), ("cancel", "Cancelled")])
def test_pause_keeps_and_cancel_removes_partial_files(
    hub: HubFake, intake: ContractIntake, tmp_path: Path, action: str, state: str
) -> None:
    hub.throttle_bytes_per_second = THROTTLE
    pull = PullHarness(tmp_path, intake)
    _start(hub, pull, parallel=2)
    process = pull.spawn()
    wait_for(lambda: _part_size(pull) > 0, timeout=20, what="a partial file")
    intake.request_action("ns", "modelpulls", "pull", PendingAction(name=action, nonce="n-1"))

    assert process.wait(timeout=15) == 0

    final = pull.final()
    assert final["state"] == state
    assert {"name": action, "nonce": "n-1", "ok": True}.items() <= final["acks"][0].items()
    assert not intake.workload("ns", "modelpulls", "pull").pending, "the action was acknowledged"
    assert not (pull.target / "b-big.safetensors").exists()
    served = hub.served.get("org/big/b-big.safetensors", 0)
    assert served < len(BIG), "stopped promptly, before the whole file arrived"
    if action == "pause":
        assert _part_size(pull) > 0
    else:
        assert pull.partials() == []


def test_no_more_files_than_max_parallel_files_are_in_flight(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.add_repo(
        "org/many", {f"part-{n}.safetensors": FakeFile(bytes_of(f"part{n}", 300_000)) for n in range(5)}
    )
    hub.throttle_bytes_per_second = 1_500_000
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        {"type": "HuggingFace", "huggingFace": {"repo": "org/many"}},
        huggingFaceEndpoint=hub.base_url,
        maxParallelFiles=2,
    )

    assert pull.run() == 0

    assert hub.most_active == 2
    assert len(list(pull.target.iterdir())) == 5


def test_a_pause_ends_the_process_even_while_the_server_is_silent(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.stall_after["org/big/b-big.safetensors"] = 1_000_000
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        {"type": "HuggingFace", "huggingFace": {"repo": "org/big", "files": ["b-big.safetensors"]}},
        huggingFaceEndpoint=hub.base_url,
    )
    process = pull.spawn()
    # The last few KiB before the stall may still sit in the writer's buffer, hence "about".
    wait_for(lambda: _part_size(pull) >= 900_000, timeout=20, what="about the stall point")
    intake.request_action("ns", "modelpulls", "pull", PendingAction(name="pause", nonce="n-2"))

    assert process.wait(timeout=15) == 0, "the stuck transfer is abandoned after the grace period"
    assert pull.final()["state"] == "Paused"
    assert 900_000 <= _part_size(pull) <= 1_000_000
