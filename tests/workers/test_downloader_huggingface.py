"""The downloader against a local Hugging Face-compatible Hub: selection, revision, reruns, errors."""

from __future__ import annotations

import email.utils
import itertools
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubepilot_api.workers.progress import DownloadReport, WorkState
from kubepilot_workers.downloader.errors import parse_retry_after
from kubepilot_workers.downloader.retry import RETRY_BUDGET_ENV
from tests.workers.downloader_harness import PullHarness
from tests.workers.hubfake import FakeFile, HubFake, bytes_of
from tests.workers.intake import ContractIntake

WEIGHTS = bytes_of("weights", 1_500_000)
VAE = bytes_of("vae", 300_000)
CONFIG = b'{"architectures": ["Tiny"]}'


@pytest.fixture
def hub() -> Iterator[HubFake]:
    with HubFake() as server:
        server.add_repo(
            "org/tiny-model",
            {
                "model.safetensors": FakeFile(WEIGHTS),
                "vae/diffusion_pytorch_model.safetensors": FakeFile(VAE),
                "config.json": FakeFile(CONFIG, lfs=False),
                "pytorch_model.bin": FakeFile(bytes_of("pickle", 200_000)),
                "README.md": FakeFile(b"# tiny\n", lfs=False),
            },
            refs={"main", "v1.0"},
        )
        yield server


def _hf(hub: HubFake, **fields: object) -> dict[str, object]:
    return {"type": "HuggingFace", "huggingFace": {"repo": "org/tiny-model", **fields}}


def test_a_repo_is_downloaded_with_patterns_and_its_revision_recorded(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        _hf(hub, revision="v1.0", allowPatterns=["*.safetensors", "*.json"], ignorePatterns=["vae/*"]),
        huggingFaceEndpoint=hub.base_url,
    )

    assert pull.run() == 0

    final = pull.final()
    assert final["state"] == "Succeeded" and final["final"] is True
    assert final["resolvedRevision"] == hub.repos["org/tiny-model"].commit
    assert sorted(f["path"] for f in final["files"]) == [
        "checkpoints/pull/config.json",
        "checkpoints/pull/model.safetensors",
    ]
    assert all(f["state"] == "Verified" and len(f["sha256"]) == 64 for f in final["files"])
    assert (pull.target / "model.safetensors").read_bytes() == WEIGHTS
    assert (pull.target / "config.json").read_bytes() == CONFIG
    assert not (pull.target / "vae").exists() and not (pull.target / "pytorch_model.bin").exists()
    blob = pull.store / "blobs" / hub.repos["org/tiny-model"].files["model.safetensors"].sha256
    assert (pull.target / "model.safetensors").samefile(blob), "the type folder links the verified blob"
    assert pull.partials() == []
    last = pull.reports()[-1]
    assert isinstance(last, DownloadReport) and last.state is WorkState.SUCCEEDED
    assert last.progress is not None and last.progress.percent == 100
    assert last.progress.bytesDone == last.progress.bytesTotal == len(WEIGHTS) + len(CONFIG)
    # The Hub API calls go through huggingface_hub, without telemetry details (torch is installed here).
    api_agents = [ua for ua in hub.user_agents if "hf_hub/" in ua]
    assert api_agents and not any("torch/" in ua for ua in api_agents)


def test_exact_files_of_a_repo_are_downloaded_into_their_repo_relative_paths(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        _hf(hub, files=["vae/diffusion_pytorch_model.safetensors"]), huggingFaceEndpoint=hub.base_url
    )

    assert pull.run() == 0

    assert (pull.target / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == VAE
    assert [p.name for p in pull.target.rglob("*") if p.is_file()] == ["diffusion_pytorch_model.safetensors"]
    assert set(hub.served) == {"org/tiny-model/vae/diffusion_pytorch_model.safetensors"}


def test_a_rerun_skips_verified_files_and_force_downloads_them_again(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        _hf(hub, allowPatterns=["*.safetensors", "config.json"]), huggingFaceEndpoint=hub.base_url
    )
    assert pull.run() == 0
    first = dict(hub.served)
    assert sum(first.values()) == len(WEIGHTS) + len(VAE) + len(CONFIG)

    assert pull.run() == 0
    assert hub.served == first, "verified files are not downloaded again"
    assert pull.final()["state"] == "Succeeded" and len(pull.final()["files"]) == 3

    pull.write_config(
        _hf(hub, allowPatterns=["*.safetensors", "config.json"]), huggingFaceEndpoint=hub.base_url, force=True
    )
    assert pull.run() == 0
    assert sum(hub.served.values()) == 2 * sum(first.values())
    assert (pull.target / "model.safetensors").read_bytes() == WEIGHTS


def test_a_file_another_pull_verified_is_linked_from_the_store_without_downloading(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    first = PullHarness(tmp_path, intake, name="first")
    first.write_config(_hf(hub, files=["model.safetensors"]), huggingFaceEndpoint=hub.base_url)
    assert first.run() == 0
    second = PullHarness(tmp_path, intake, name="second")
    second.write_config(_hf(hub, files=["model.safetensors"]), huggingFaceEndpoint=hub.base_url)

    assert second.run() == 0

    assert hub.served["org/tiny-model/model.safetensors"] == len(WEIGHTS)
    assert (second.target / "model.safetensors").samefile(first.target / "model.safetensors")


@pytest.mark.parametrize(
    ("required", "given", "repo", "code"),
    [
        (None, None, "org/absent", "MODEL_NOT_FOUND"),
        ("good-token", None, "org/tiny-model", "AUTHENTICATION_FAILED"),
        ("good-token", "wrong-token", "org/tiny-model", "AUTHENTICATION_FAILED"),
        ("good-token", "gated-token", "org/tiny-model", "ACCESS_DENIED"),
    ],
)
def test_hub_refusals_give_distinct_error_codes(
    hub: HubFake,
    intake: ContractIntake,
    tmp_path: Path,
    required: str | None,
    given: str | None,
    repo: str,
    code: str,
) -> None:
    hub.required_token = required
    hub.denied_tokens = {"gated-token"}
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        {"type": "HuggingFace", "huggingFace": {"repo": repo}}, token=given, huggingFaceEndpoint=hub.base_url
    )

    assert pull.run() == 1

    final = pull.final()
    assert final["state"] == "Failed" and final["error"]["code"] == code
    assert (
        "good-token" not in pull.termination.read_text() and "gated-token" not in pull.termination.read_text()
    )
    assert not pull.target.exists()


def test_a_token_from_the_token_file_opens_a_private_repo(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.required_token = "good-token"
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_hf(hub, files=["config.json"]), token="good-token", huggingFaceEndpoint=hub.base_url)

    assert pull.run() == 0
    assert (pull.target / "config.json").read_bytes() == CONFIG


def test_a_missing_file_in_the_repo_is_model_not_found(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_hf(hub, files=["nope.safetensors"]), huggingFaceEndpoint=hub.base_url)

    assert pull.run() == 1
    assert pull.final()["error"]["code"] == "MODEL_NOT_FOUND"
    assert "nope.safetensors" in pull.final()["error"]["message"]


def test_a_connection_dropped_mid_file_is_resumed_with_a_range_request(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    key = "org/tiny-model/model.safetensors"
    hub.drop_after[key] = 1_200_000
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_hf(hub, files=["model.safetensors"]), huggingFaceEndpoint=hub.base_url)

    assert pull.run() == 0

    assert (pull.target / "model.safetensors").read_bytes() == WEIGHTS
    first, resumed = hub.range_starts[key]
    # Whole chunks written before the drop are kept; only the torn chunk is fetched again.
    assert first == 0 and 1_200_000 - 256 * 1024 <= resumed <= 1_200_000
    assert hub.served[key] == len(WEIGHTS) + (1_200_000 - resumed)


def test_rate_limited_requests_are_retried_after_the_servers_hint(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.rate_limit_remaining = 2
    hub.retry_after = "0"
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_hf(hub, files=["config.json"]), huggingFaceEndpoint=hub.base_url)

    assert pull.run() == 0
    assert pull.final()["state"] == "Succeeded"
    assert hub.rate_limit_remaining == 0


def _waits_after_refusals(hub: HubFake) -> list[float]:
    """For each 429, the seconds until the next request arrived (the client's wait)."""
    return [
        min(t for t in hub.request_times if t > refused) - refused
        for refused in hub.rate_limited_at
        if any(t > refused for t in hub.request_times)
    ]


def test_a_hub_refusing_every_other_request_is_waited_out_as_its_retry_after_says(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.rate_limit_every = 2
    hub.retry_after = "1"
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        _hf(hub, files=["config.json", "model.safetensors"]),
        huggingFaceEndpoint=hub.base_url,
        maxParallelFiles=1,  # one request at a time, so each retry's wait can be measured
    )

    assert pull.run() == 0, pull.final().get("error")

    assert (pull.target / "model.safetensors").read_bytes() == WEIGHTS
    assert (pull.target / "config.json").read_bytes() == CONFIG
    waits = _waits_after_refusals(hub)
    assert len(waits) >= 4, "the revision, the file list and both files' requests were refused"
    assert min(waits) >= 0.95, f"retried sooner than Retry-After: 1 allows: {waits}"


def test_a_retry_after_given_as_an_http_date_is_waited_for(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.rate_limit_remaining = 1
    # Whole seconds, as HTTP-dates have: 3 to 4 s from the moment the 429 is sent.
    hub.retry_after = lambda: email.utils.formatdate(math.floor(time.time()) + 4, usegmt=True)
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_hf(hub, files=["config.json"]), huggingFaceEndpoint=hub.base_url)

    assert pull.run() == 0

    [wait] = _waits_after_refusals(hub)
    assert 2.9 <= wait < 6, f"waited {wait:.2f}s for a date 3-4 s ahead"


def test_retry_after_is_read_in_seconds_and_as_an_http_date() -> None:
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("Sat, 01 Mar 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Sat, 01 Mar 2025 11:59:00 GMT", now=now) == 0.0, "a past date: at once"
    assert parse_retry_after("soon", now=now) is None and parse_retry_after(None) is None


def test_a_hub_that_always_rate_limits_fails_clearly_once_the_retry_budget_is_spent(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.rate_limit_every = 1
    pull = PullHarness(tmp_path, intake)
    pull.env[RETRY_BUDGET_ENV] = "2"
    pull.write_config(_hf(hub, files=["config.json"]), huggingFaceEndpoint=hub.base_url)

    started = time.monotonic()
    assert pull.run() == 1
    elapsed = time.monotonic() - started

    error = pull.final()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert "HTTP 429" in error["message"] and f"retry budget 2s, ${RETRY_BUDGET_ENV}" in error["message"]
    assert 2.0 <= elapsed < 8, f"gave up after {elapsed:.1f}s of a 2 s budget"
    times = hub.rate_limited_at
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) >= 3 and gaps[0] < gaps[1] < gaps[2], f"waits must grow: {gaps}"


def test_a_passing_server_error_while_resolving_is_retried(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.error_status, hub.error_remaining = 503, 1
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_hf(hub, files=["config.json"]), huggingFaceEndpoint=hub.base_url)

    assert pull.run() == 0
    assert hub.error_remaining == 0 and (pull.target / "config.json").read_bytes() == CONFIG
