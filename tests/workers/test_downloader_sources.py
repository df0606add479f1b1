"""The downloader's Civitai and plain-URL sources, checksums, rate limits and bad input."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubepilot_workers.downloader.retry import RETRY_BUDGET_ENV
from tests.workers.downloader_harness import PullHarness
from tests.workers.hubfake import CivitaiFile, FakeFile, HubFake, bytes_of
from tests.workers.intake import ContractIntake

LORA = bytes_of("lora", 700_000)
PLAIN = bytes_of("plain", 900_000)


@pytest.fixture
def hub() -> Iterator[HubFake]:
    with HubFake() as server:
        server.add_civitai_version(
            4242,
            [
                CivitaiFile(file_id=1, name="style-lora.safetensors", file=FakeFile(LORA), primary=True),
                CivitaiFile(
                    file_id=2, name="style-lora-fp32.safetensors", file=FakeFile(PLAIN), primary=False
                ),
            ],
        )
        server.add_civitai_version(
            5000,
            [CivitaiFile(file_id=9, name="bad.safetensors", file=FakeFile(LORA), published_sha256="ab" * 32)],
        )
        yield server


def _url(hub: HubFake, name: str, path: str, sha256: str | None = None) -> dict[str, object]:
    item: dict[str, object] = {"url": hub.add_plain(name, FakeFile(PLAIN)), "path": path}
    if sha256 is not None:
        item["sha256"] = sha256
    return {"type": "URL", "urls": [item]}


def test_a_civitai_version_is_resolved_to_its_primary_file_and_verified(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.required_token = "civitai-key"
    pull = PullHarness(tmp_path, intake)
    pull.write_config(
        {"type": "Civitai", "civitai": {"versionId": 4242}},
        token="civitai-key",
        civitaiApiBase=hub.civitai_api,
    )

    assert pull.run() == 0

    assert (pull.target / "style-lora.safetensors").read_bytes() == LORA
    final = pull.final()
    assert final["state"] == "Succeeded"
    assert final["files"] == [
        {
            "path": "checkpoints/pull/style-lora.safetensors",
            "sizeBytes": len(LORA),
            "sha256": hashlib.sha256(LORA).hexdigest(),
            "state": "Verified",
        }
    ]
    assert "civitai-key" not in pull.termination.read_text()


def test_a_chosen_civitai_file_and_a_wrong_key_are_told_apart(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.required_token = "civitai-key"
    chosen = PullHarness(tmp_path, intake, name="chosen")
    chosen.write_config(
        {"type": "Civitai", "civitai": {"versionId": 4242, "fileId": 2}},
        token="civitai-key",
        civitaiApiBase=hub.civitai_api,
    )
    assert chosen.run() == 0
    assert (chosen.target / "style-lora-fp32.safetensors").read_bytes() == PLAIN

    refused = PullHarness(tmp_path, intake, name="refused")
    refused.write_config({"type": "Civitai", "civitai": {"versionId": 4242}}, civitaiApiBase=hub.civitai_api)
    assert refused.run() == 1
    assert refused.final()["error"]["code"] == "AUTHENTICATION_FAILED"

    absent = PullHarness(tmp_path, intake, name="absent")
    absent.write_config(
        {"type": "Civitai", "civitai": {"versionId": 77}}, token="civitai-key", civitaiApiBase=hub.civitai_api
    )
    assert absent.run() == 1
    assert absent.final()["error"]["code"] == "MODEL_NOT_FOUND"


def test_a_civitai_hash_mismatch_leaves_nothing_in_place(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.write_config({"type": "Civitai", "civitai": {"versionId": 5000}}, civitaiApiBase=hub.civitai_api)

    assert pull.run() == 1

    assert pull.final()["error"]["code"] == "CHECKSUM_MISMATCH"
    assert not (pull.target / "bad.safetensors").exists()
    assert pull.partials() == [] and not any((pull.store / "blobs").glob("*"))


def test_urls_download_with_and_without_a_published_hash_and_reruns_skip_them(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    sha = hashlib.sha256(PLAIN).hexdigest()
    source = {
        "type": "URL",
        "urls": [
            {"url": hub.add_plain("a.bin", FakeFile(PLAIN)), "path": "upscale/a.pth", "sha256": sha},
            {"url": hub.add_plain("b.bin", FakeFile(LORA)), "path": "b.safetensors"},
        ],
    }
    pull.write_config(source)
    assert pull.run() == 0
    assert (pull.target / "upscale" / "a.pth").read_bytes() == PLAIN
    assert (pull.target / "b.safetensors").read_bytes() == LORA
    served = dict(hub.served)

    assert pull.run() == 0
    assert hub.served == served, "a file without a published hash is recognised by its recorded sha256"
    assert {f["sha256"] for f in pull.final()["files"]} == {sha, hashlib.sha256(LORA).hexdigest()}


def test_a_url_whose_content_does_not_match_its_sha256_is_rejected(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_url(hub, "c.bin", "model.safetensors", sha256="0" * 64))

    assert pull.run() == 1

    final = pull.final()
    assert final["state"] == "Failed" and final["error"]["code"] == "CHECKSUM_MISMATCH"
    assert final["files"][0]["state"] == "Failed"
    assert not (pull.target / "model.safetensors").exists()
    assert pull.partials() == [] and not any((pull.store / "blobs").glob("*"))


def test_rate_limiting_is_retried_then_reported_as_rate_limited(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.rate_limit_remaining = 3
    recovers = PullHarness(tmp_path, intake, name="recovers")
    recovers.write_config(_url(hub, "d.bin", "d.bin"))
    assert recovers.run() == 0
    assert (recovers.target / "d.bin").read_bytes() == PLAIN

    hub.rate_limit_remaining = 1000
    gives_up = PullHarness(tmp_path, intake, name="gives-up")
    gives_up.env[RETRY_BUDGET_ENV] = "1"
    gives_up.write_config(_url(hub, "e.bin", "e.bin"))
    assert gives_up.run() == 1
    error = gives_up.final()["error"]
    assert error["code"] == "RATE_LIMITED" and "retry budget 1s" in error["message"], "bounded by time"
    assert 1000 - hub.rate_limit_remaining > 2


def test_a_dropped_connection_resumes_plain_downloads_from_the_partial_file(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    hub.drop_after["files/f.bin"] = 500_000
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_url(hub, "f.bin", "f.bin"))

    assert pull.run() == 0

    assert (pull.target / "f.bin").read_bytes() == PLAIN
    first, resumed = hub.range_starts["files/f.bin"]
    assert first == 0 and 500_000 - 256 * 1024 <= resumed <= 500_000
    assert hub.served["files/f.bin"] == len(PLAIN) + (500_000 - resumed)


def test_a_path_escaping_the_target_folder_is_refused(
    hub: HubFake, intake: ContractIntake, tmp_path: Path
) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.write_config(_url(hub, "g.bin", "sub/../../../escape.bin"))

    assert pull.run() == 1

    assert pull.final()["error"]["code"] == "INVALID_CONFIG"
    assert not list(tmp_path.rglob("escape.bin")) and hub.served == {}


def test_an_invalid_config_file_fails_with_a_clear_error(intake: ContractIntake, tmp_path: Path) -> None:
    pull = PullHarness(tmp_path, intake)
    pull.config_path.write_text('{"workload": {"kind": "ModelPull"}, "source": 3}')

    assert pull.run() == 1

    final = pull.final()
    assert final["state"] == "Failed" and final["error"]["code"] == "INVALID_CONFIG"
    assert "config" in final["error"]["message"]


@pytest.mark.parametrize("status", [500, 503])
def test_a_broken_server_is_a_download_failure(
    hub: HubFake, intake: ContractIntake, tmp_path: Path, status: int
) -> None:
    url = hub.add_plain("h.bin", FakeFile(PLAIN))
    hub.error_status = status
    pull = PullHarness(tmp_path, intake)
    pull.write_config({"type": "URL", "urls": [{"url": url, "path": "h.bin"}]})

    assert pull.run() == 1

    final = pull.final()
    assert final["error"]["code"] == "DOWNLOAD_FAILED"
    assert f"HTTP {status} after 5 attempts" in final["error"]["message"], (
        "server errors are retried, boundedly"
    )
    assert not (pull.target / "h.bin").exists()
