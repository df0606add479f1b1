"""ControlPilot's model manifest and pull jobs ↔ ModelPulls: the pure translation, no server."""

from __future__ import annotations

from typing import Any

import pytest

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_api.modelpull import ModelPull
from kubepilot_gateway.profiles.controlpilot import models as mdl

JsonObject = dict[str, Any]
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
STAMP = "2027-01-15T08:00:00Z"
LATER = "2027-01-15T08:01:40Z"  # T0 + 100


def entry(line: str) -> mdl.ManifestEntry:
    return mdl.entry_from_fields(line.split("|"))


def pull_with(phase: str | None, **status: Any) -> JsonObject:
    body = mdl.new_model_pull(entry("sdxl|hf_file|org/repo:sdxl.safetensors|checkpoints||"))
    body["metadata"]["creationTimestamp"] = STAMP
    if phase is not None:
        body["status"] = {"phase": phase, **status}
    return body


# -- the manifest ----------------------------------------------------------------------------------


def test_the_manifest_format_is_parsed_with_comments_blanks_and_optional_fields() -> None:
    manifest = mdl.parse_manifest(
        "# comment\n\n"
        "a|hf_file|org/repo:model.safetensors|checkpoints\n"
        "  b|hf_repo|org/repo|diffusers/b|*.json, *.safetensors|2gb  \n"
        "c|url|https://example.com/files/c.pth?download=1|upscale_models||1234\n"
    )
    assert manifest.problems == ()
    a, b, c = manifest.entries
    assert (a.name, a.kind, a.repo, a.path_in_repo, a.include, a.expected_size_bytes) == (
        "a",
        mdl.ManifestKind.HF_FILE,
        "org/repo",
        "model.safetensors",
        "",
        None,
    )
    assert (b.patterns, b.expected_size_bytes, b.size_is_exact) == (
        ("*.json", "*.safetensors"),
        2 << 30,
        False,
    )
    assert (c.url_filename, c.expected_size_bytes, c.size_is_exact) == ("c.pth", 1234, True)
    assert manifest.get("b") is b and manifest.get("zzz") is None


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("short|hf_file|org/repo", "fewer than 4 fields"),
        ("x|civitai|123|loras", "unknown kind"),
        ("x|hf_file|bad repo id:file|checkpoints", "bad repository id"),
        ("x|hf_file|org/repo|checkpoints", "repo:path"),
        ("x|hf_file|org/repo:../escape|checkpoints", "repo:path"),
        ("x|url|ftp://host/file|checkpoints", "http(s) URL"),
        ("x|url|https://host/|checkpoints", "names no file"),
        ("x|hf_file|org/repo:f|../outside", "unsafe"),
        ("x|hf_file|org/repo:f|/abs", "unsafe"),
        ("x|hf_file|org/repo:f|loras/.hidden", "unsafe"),
        ("x|hf_file|org/repo:f|", "unsafe or empty"),
    ],
)
def test_a_line_that_cannot_be_pulled_is_left_out_with_the_reason(line: str, why: str) -> None:
    manifest = mdl.parse_manifest(f"ok|hf_file|org/repo:f.safetensors|checkpoints\n{line}\n")
    assert [e.name for e in manifest.entries] == ["ok"]
    assert len(manifest.problems) == 1 and "line 2" in manifest.problems[0] and why in manifest.problems[0]


def test_the_first_line_of_a_name_wins() -> None:
    manifest = mdl.parse_manifest(
        "a|hf_file|org/one:f.safetensors|checkpoints\na|hf_file|org/two:f.safetensors|checkpoints\n"
    )
    assert [e.repo for e in manifest.entries] == ["org/one"]
    assert "duplicate" in manifest.problems[0]


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("", None),
        ("12", 12),
        ("1kb", 1024),
        ("1.5MB", 1572864),
        ("2gb", 2 << 30),
        ("1tb", 1 << 40),
        ("x", None),
    ],
)
def test_sizes_are_read_as_controlpilot_reads_them(raw: str, size: int | None) -> None:
    assert mdl.parse_size(raw) == size


@pytest.mark.parametrize(
    ("subdir", "model_type", "rest", "relative"),
    [
        ("checkpoints", "checkpoints", "", "checkpoints"),
        ("loras/styles/v1", "loras", "styles/v1", "loras/styles/v1"),
        ("diffusers/sd-turbo", "diffusers", "sd-turbo", "diffusers/sd-turbo"),
        ("refiners/x", "other", "refiners/x", "other/refiners/x"),
    ],
)
def test_subdir_becomes_the_type_folder_and_the_rest(
    subdir: str, model_type: str, rest: str, relative: str
) -> None:
    destination = mdl.destination_for(subdir)
    assert (destination.model_type, destination.subdir, destination.relative) == (model_type, rest, relative)


def test_the_default_manifest_has_every_kind_and_each_entry_is_a_valid_model_pull() -> None:
    manifest = mdl.parse_manifest(mdl.DEFAULT_MANIFEST)
    assert manifest.problems == ()
    assert {e.kind for e in manifest.entries} == set(mdl.ManifestKind)
    assert {"checkpoint", "vae", "diffusers", "upscale"} <= {e.type for e in manifest.entries}
    for item in manifest.entries:
        ModelPull.model_validate(mdl.new_model_pull(item, credentials=("hf-token", "HF_TOKEN")))


def test_display_fields_follow_controlpilot() -> None:
    sdxl = entry("sdxl-base|hf_file|stabilityai/stable-diffusion-xl-base-1.0:sd_xl.safetensors|checkpoints||")
    assert (sdxl.category, sdxl.type, sdxl.info_url) == (
        "SDXL",
        "checkpoint",
        "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0",
    )
    flux = entry("flux-lora|url|https://h/x.safetensors|loras/flux||")
    assert (flux.category, flux.type, flux.info_url) == ("FLUX", "lora", "https://h/x.safetensors")
    assert entry("w|hf_file|o/wan:f|vae||").category == "WAN"
    assert entry("m|hf_file|o/r:f|refiners||").type == "refiner"
    assert entry("m|hf_file|o/r:f|whatever||").type == "checkpoint"


# -- ModelPulls ------------------------------------------------------------------------------------


def test_an_hf_file_entry_becomes_a_hugging_face_pull_of_that_file() -> None:
    body = mdl.new_model_pull(
        entry("SDXL base|hf_file|org/repo:unet/model.safetensors|checkpoints/sdxl||6gb")
    )
    ModelPull.model_validate(body)
    assert body["metadata"]["name"] == mdl.pull_name("SDXL base")
    assert body["metadata"]["labels"] == {
        LABEL_PROFILE: "controlpilot",
        mdl.LABEL_CATALOG: "controlpilot-manifest",
        mdl.LABEL_CATALOG_ENTRY: mdl.entry_label("SDXL base"),
    }
    spec = body["spec"]
    assert spec["source"] == {
        "type": "HuggingFace",
        "huggingFace": {"repo": "org/repo", "files": ["unet/model.safetensors"]},
    }
    assert spec["destination"] == {"modelType": "checkpoints", "subdir": "sdxl"}
    assert spec["catalogRef"] == {"catalog": "controlpilot-manifest", "entry": "SDXL base"}
    assert (spec["displayName"], spec["category"], spec["expectedSizeBytes"]) == (
        "SDXL base",
        "SDXL",
        6 << 30,
    )
    assert spec["deletePolicy"] == "Delete" and "credentialsSecretRef" not in spec


def test_an_hf_repo_entry_pulls_the_repository_filtered_by_include() -> None:
    body = mdl.new_model_pull(entry("t|hf_repo|org/repo|diffusers/t|*.json,*.safetensors|"))
    assert body["spec"]["source"]["huggingFace"] == {
        "repo": "org/repo",
        "allowPatterns": ["*.json", "*.safetensors"],
    }
    assert body["spec"]["destination"] == {"modelType": "diffusers", "subdir": "t"}
    assert "expectedSizeBytes" not in body["spec"]


def test_a_url_entry_pulls_the_file_under_its_name_and_never_gets_the_hf_token() -> None:
    body = mdl.new_model_pull(
        entry("u|url|https://h.example/dl/My%20Model.pth?x=1|upscale_models||500"), credentials=("hf", "K")
    )
    assert body["spec"]["source"] == {
        "type": "URL",
        "urls": [
            {"url": "https://h.example/dl/My%20Model.pth?x=1", "path": "My Model.pth", "sizeBytes": 500}
        ],
    }
    assert "credentialsSecretRef" not in body["spec"]
    hf = mdl.new_model_pull(entry("h|hf_file|o/r:f.bin|vae||"), credentials=("hf-token", "HF_TOKEN"))
    assert hf["spec"]["credentialsSecretRef"] == {"name": "hf-token", "key": "HF_TOKEN"}


def test_pull_names_are_deterministic_short_and_distinct_for_similar_names() -> None:
    names = ["sdxl-base", "SDXL base", "sdxl_base", "x" * 300, "日本語"]
    pulled = [mdl.pull_name(n) for n in names]
    assert pulled == [mdl.pull_name(n) for n in names]
    assert len(set(pulled)) == len(names)
    for name in pulled:
        assert len(name) <= 48 and name.startswith("cp-model-")
        assert all((ch.isalnum() and ch.islower()) or ch.isdigit() or ch == "-" for ch in name)
    assert all(len(mdl.entry_label(n)) <= 63 for n in names)


# -- job dicts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        (None, "running"),
        ("Pending", "running"),
        ("Downloading", "running"),
        ("Paused", "running"),
        ("Completed", "done"),
        ("Failed", "error"),
        ("Cancelled", "error"),
        ("Removing", "idle"),
    ],
)
def test_the_phase_maps_to_controlpilots_job_state(phase: str | None, state: str) -> None:
    assert mdl.job("sdxl", pull_with(phase), now=T0)["state"] == state


def test_a_running_job_has_controlpilots_shape_and_progress() -> None:
    progress = {
        "bytesDone": 512,
        "bytesTotal": 1024,
        "percent": 50,
        "currentFile": "f",
        "lastUpdatedTime": LATER,
    }
    rendered = mdl.job("sdxl", pull_with("Downloading", progress=progress, startedAt=STAMP), now=T0 + 200)
    assert list(rendered) == [
        "name",
        "state",
        "pid",
        "progress_pct",
        "last_line",
        "error",
        "started_at",
        "updated_at",
        "output_tail",
    ]
    assert rendered["pid"] is None and rendered["error"] is None
    assert (rendered["progress_pct"], rendered["started_at"], rendered["updated_at"]) == (50, T0, T0 + 100)
    assert rendered["output_tail"][0].startswith(
        "Pulling sdxl from org/repo:sdxl.safetensors into checkpoints"
    )
    assert rendered["last_line"] == rendered["output_tail"][-1] == "50% — 512 B of 1.0 KB — f"
    assert mdl.job("sdxl", pull_with("Pending"), now=T0)["progress_pct"] is None


def test_finished_jobs_say_done_or_why_they_failed() -> None:
    files = [{"path": "checkpoints/sdxl.safetensors", "sizeBytes": 2048, "state": "Verified"}]
    done = mdl.job("sdxl", pull_with("Completed", files=files, completedAt=LATER), now=T0)
    assert (done["progress_pct"], done["error"]) == (100, None)
    assert "Verified checkpoints/sdxl.safetensors (2.0 KB)" in done["output_tail"]
    assert done["last_line"] == "Done: 1 files in checkpoints"
    failed = mdl.job(
        "sdxl", pull_with("Failed", error={"code": "NOT_FOUND", "message": "no such file"}), now=T0
    )
    assert (failed["error"], failed["last_line"], failed["progress_pct"]) == (
        "no such file",
        "Error: no such file",
        None,
    )
    assert mdl.job("sdxl", pull_with("Cancelled"), now=T0)["error"] == "cancelled"


def test_a_finished_job_is_idle_ten_minutes_later_unless_asked_for_as_is() -> None:
    done = pull_with("Completed", completedAt=STAMP)
    assert mdl.job("sdxl", done, now=T0 + 599, keep_finished=False)["state"] == "done"
    assert mdl.job("sdxl", done, now=T0 + 601, keep_finished=False) == {"name": "sdxl", "state": "idle"}
    assert mdl.job("sdxl", done, now=T0 + 601)["state"] == "done"
    running = pull_with("Downloading")
    assert mdl.job("sdxl", running, now=T0 + 9999, keep_finished=False)["state"] == "running"
    assert mdl.job("x", None, now=T0) == {"name": "x", "state": "idle"}
    deleting = pull_with("Completed")
    deleting["metadata"]["deletionTimestamp"] = STAMP
    assert mdl.job("sdxl", deleting, now=T0) == {"name": "sdxl", "state": "idle"}


def test_recent_jobs_are_ours_newest_first_without_expired_ones() -> None:
    old = pull_with("Completed", completedAt="2027-01-15T07:00:00Z")
    new = mdl.new_model_pull(entry("b|hf_file|org/b:f.safetensors|vae||"))
    new["metadata"]["creationTimestamp"] = LATER
    mid = pull_with("Downloading", startedAt=STAMP)
    foreign = pull_with("Downloading")
    foreign["spec"]["catalogRef"] = {"catalog": "comfyui-presets", "entry": "x"}
    jobs = mdl.recent_jobs([old, mid, new, foreign], now=T0 + 200)
    assert [(j["name"], j["updated_at"]) for j in jobs] == [("b", T0 + 100), ("sdxl", T0)]


# -- catalog rows ----------------------------------------------------------------------------------


def test_a_row_joins_the_entry_with_the_files_on_the_volume() -> None:
    item = entry("base|hf_file|org/repo:sd.safetensors|checkpoints||2kb")
    assert mdl.file_query(item, None) == (("checkpoints/sd.safetensors",), None)
    missing = mdl.catalog_row(item, None, {}, models_root="/models")
    assert missing == {
        "name": "base",
        "kind": "hf_file",
        "source": "org/repo:sd.safetensors",
        "subdir": "checkpoints",
        "include": "",
        "expected_size_bytes": 2048,
        "category": "OTHERS",
        "type": "checkpoint",
        "installed": False,
        "size_bytes": 2048,
        "info_url": "https://huggingface.co/org/repo",
        "target_path": "/models/checkpoints",
        "primary_path": None,
    }
    present = mdl.catalog_row(item, None, {"checkpoints/sd.safetensors": 1000}, models_root="/models")
    assert (present["installed"], present["size_bytes"], present["primary_path"]) == (
        True,
        1000,
        "/models/checkpoints/sd.safetensors",
    )


def test_an_exact_size_must_match_and_an_empty_file_is_not_installed() -> None:
    item = entry("u|url|https://h/u.pth|upscale_models||100")
    assert not mdl.installed(item, None, {"upscale_models/u.pth": 99})
    assert not mdl.installed(item, None, {"upscale_models/u.pth": 0})
    assert mdl.installed(item, None, {"upscale_models/u.pth": 100})


def test_a_completed_pull_is_installed_only_while_all_its_files_are_there() -> None:
    item = entry("r|hf_repo|org/r|diffusers/r|*.json,*.safetensors|")
    files = [{"path": "diffusers/r/a.safetensors"}, {"path": "diffusers/r/model_index.json"}]
    pull = pull_with("Completed", files=files)
    both = {"diffusers/r/a.safetensors": 10, "diffusers/r/model_index.json": 2}
    assert mdl.file_query(item, pull) == (
        ("diffusers/r/a.safetensors", "diffusers/r/model_index.json"),
        "diffusers/r",
    )
    assert mdl.installed(item, pull, both)
    assert not mdl.installed(item, pull, {"diffusers/r/model_index.json": 2})
    row = mdl.catalog_row(item, pull, both, models_root="/m")
    assert (row["size_bytes"], row["primary_path"]) == (10, "/m/diffusers/r/a.safetensors")


def test_an_hf_repo_without_a_pull_is_installed_when_its_own_folder_holds_weights() -> None:
    item = entry("r|hf_repo|org/r|diffusers/r|*.json,*.safetensors|")
    assert not mdl.installed(item, None, {"diffusers/r/model_index.json": 2})
    assert mdl.installed(item, None, {"diffusers/r/model_index.json": 2, "diffusers/r/unet/w.safetensors": 5})
    assert not mdl.installed(item, None, {"diffusers/r/w.bin": 5})  # not matched by include
    shared = entry("r|hf_repo|org/r|checkpoints|*.safetensors|")
    assert mdl.file_query(shared, None) == ((), None)  # a bare type folder is never walked


def test_owned_files_and_files_held_by_other_pulls() -> None:
    item = entry("r|hf_repo|org/r|diffusers/r|*.safetensors|")
    pull = pull_with("Completed", files=[{"path": "diffusers/r/x.bin"}])
    found = {"diffusers/r/x.bin": 1, "diffusers/r/a.safetensors": 1, "diffusers/r/notes.txt": 1}
    assert mdl.owned_files(item, pull, found) == ["diffusers/r/x.bin", "diffusers/r/a.safetensors"]
    other = pull_with("Completed", files=[{"path": "vae/v.safetensors"}])
    other["metadata"]["name"] = "other"
    gone = pull_with("Completed", files=[{"path": "vae/gone.safetensors"}])
    gone["metadata"].update(name="gone", deletionTimestamp=STAMP)
    assert mdl.held_by_others([pull, other, gone], excluding=pull["metadata"]["name"]) == {
        "vae/v.safetensors"
    }
