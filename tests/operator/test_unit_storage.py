"""Unit tests of the models-store file operations (reconcile/storage.py) on a temporary folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kubepilot_operator.reconcile.storage import inside, publish, remove_files, sha256_of

PAYLOAD = b"lora weights " * 1000


def store_file(root: Path, relative: str, payload: bytes) -> Path:
    """A file as the downloader leaves it: a blob in .store/blobs hard-linked into a type folder."""
    digest = hashlib.sha256(payload).hexdigest()
    blob = root / ".store" / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        blob.write_bytes(payload)
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(blob, target)
    return blob


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "outputs" / "run" / "final.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


def test_publish_creates_a_blob_and_a_hard_link(models: Path, source: Path) -> None:
    digest = publish(models, source, "loras/trained/cat.safetensors")
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    blob = models / ".store" / "blobs" / digest
    target = models / "loras" / "trained" / "cat.safetensors"
    assert blob.read_bytes() == PAYLOAD
    assert target.read_bytes() == PAYLOAD
    assert target.stat().st_ino == blob.stat().st_ino
    assert not list((models / ".store" / "blobs").glob(".*.tmp"))


def test_publish_is_idempotent(models: Path, source: Path) -> None:
    first = publish(models, source, "loras/cat.safetensors")
    target = models / "loras" / "cat.safetensors"
    before = target.stat()
    second = publish(models, source, "loras/cat.safetensors")
    after = target.stat()
    assert first == second
    assert (before.st_ino, before.st_mtime_ns, before.st_nlink) == (
        after.st_ino,
        after.st_mtime_ns,
        after.st_nlink,
    )
    assert len(list((models / ".store" / "blobs").iterdir())) == 1


def test_publish_replaces_a_different_file_at_the_target(models: Path, source: Path) -> None:
    (models / "loras").mkdir()
    (models / "loras" / "cat.safetensors").write_bytes(b"old bytes")
    digest = publish(models, source, "loras/cat.safetensors")
    target = models / "loras" / "cat.safetensors"
    assert target.read_bytes() == PAYLOAD
    assert target.stat().st_ino == (models / ".store" / "blobs" / digest).stat().st_ino


def test_publish_refuses_a_target_outside_the_volume(models: Path, source: Path) -> None:
    with pytest.raises(ValueError, match="leaves the models volume"):
        publish(models, source, "../escape.safetensors")


def test_sha256_of_matches_hashlib(source: Path) -> None:
    assert sha256_of(source) == hashlib.sha256(PAYLOAD).hexdigest()


def test_inside_rejects_escapes(models: Path) -> None:
    assert inside(models, "loras/a") == (models / "loras" / "a").resolve()
    assert inside(models, "../x") is None
    assert inside(models, "/etc/passwd") is None


def test_remove_files_removes_the_file_and_its_last_blob(models: Path) -> None:
    blob = store_file(models, "checkpoints/sdxl/model.safetensors", PAYLOAD)
    result = remove_files(models, ["checkpoints/sdxl/model.safetensors"], set())
    assert result["filesRemoved"] == 1
    assert result["bytesFreed"] == len(PAYLOAD)
    assert result["filesKept"] == 0
    assert result["removedAt"].endswith("Z")
    assert not blob.exists()
    assert not (models / "checkpoints" / "sdxl").exists()  # emptied sub-folder pruned
    assert (models / "checkpoints").is_dir()  # the type folder stays


def test_remove_files_keeps_a_blob_still_linked_elsewhere(models: Path) -> None:
    blob = store_file(models, "loras/a.safetensors", PAYLOAD)
    store_file(models, "loras/copy/a.safetensors", PAYLOAD)
    result = remove_files(models, ["loras/a.safetensors"], set())
    assert result["filesRemoved"] == 1
    assert result["bytesFreed"] == 0
    assert blob.exists()
    assert (models / "loras" / "copy" / "a.safetensors").read_bytes() == PAYLOAD


def test_remove_files_keeps_files_held_by_another_pull(models: Path) -> None:
    store_file(models, "vae/shared.safetensors", PAYLOAD)
    store_file(models, "vae/own.safetensors", b"own")
    result = remove_files(
        models, ["vae/shared.safetensors", "vae/own.safetensors"], {"vae/shared.safetensors"}
    )
    assert result["filesKept"] == 1
    assert result["filesRemoved"] == 1
    assert (models / "vae" / "shared.safetensors").exists()
    assert not (models / "vae" / "own.safetensors").exists()


def test_remove_files_refuses_paths_outside_the_root(models: Path, tmp_path: Path) -> None:
    victim = tmp_path / "x"
    victim.write_bytes(b"keep me")
    result = remove_files(models, ["../x"], set())
    assert victim.read_bytes() == b"keep me"
    assert result["filesRemoved"] == 0


def test_remove_files_tolerates_files_already_gone(models: Path) -> None:
    store_file(models, "loras/present.safetensors", PAYLOAD)
    result = remove_files(models, ["loras/missing.safetensors", "loras/present.safetensors"], set())
    assert result["filesRemoved"] == 1


def test_remove_files_counts_a_plain_file_without_blob(models: Path) -> None:
    (models / "embeddings").mkdir()
    (models / "embeddings" / "e.pt").write_bytes(b"12345")
    result = remove_files(models, ["embeddings/e.pt"], set())
    assert result == {**result, "filesRemoved": 1, "bytesFreed": 5}
    assert (models / "embeddings").is_dir()


def test_remove_files_prunes_nested_empty_folders_only(models: Path) -> None:
    store_file(models, "diffusers/sd/unet/w.bin", b"unet")
    store_file(models, "diffusers/sd/vae/w.bin", b"vae")
    remove_files(models, ["diffusers/sd/unet/w.bin"], set())
    assert not (models / "diffusers" / "sd" / "unet").exists()
    assert (models / "diffusers" / "sd" / "vae" / "w.bin").exists()
    remove_files(models, ["diffusers/sd/vae/w.bin"], set())
    assert not (models / "diffusers" / "sd").exists()
    assert (models / "diffusers").is_dir()


def test_remove_files_keeps_the_type_folder_under_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "volume"
    real.mkdir()
    root = tmp_path / "models-link"
    root.symlink_to(real, target_is_directory=True)
    (root / "loras").mkdir()
    (root / "loras" / "x.safetensors").write_bytes(b"x")
    result = remove_files(root, ["loras/x.safetensors"], set())
    assert result["filesRemoved"] == 1
    assert real.is_dir()
    assert (real / "loras").is_dir()
