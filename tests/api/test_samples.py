"""The example CRs validate against the generated schemas; broken ones are rejected clearly."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubepilot_api import kind_by_name
from tests.api.schema_tools import ROOT, cel_errors, load_crds, structural_errors

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRDS = load_crds()


def _load(path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(path.read_text())
    return obj


def test_there_is_an_example_of_every_kind() -> None:
    kinds = {_load(path)["kind"] for path in EXAMPLES}
    assert kinds == set(CRDS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_for_the_schema_the_cel_rules_and_the_models(path: Path) -> None:
    obj = _load(path)
    crd = CRDS[obj["kind"]]
    assert structural_errors(crd, obj) == []
    assert cel_errors(crd, obj) == []
    model = kind_by_name(obj["kind"]).model_validate(obj)
    assert model.metadata.name == obj["metadata"]["name"]


def _modelpull() -> dict[str, Any]:
    return _load(ROOT / "examples" / "modelpull-sdxl.yaml")


def test_a_wrong_enum_value_is_rejected_naming_the_allowed_values() -> None:
    obj = _modelpull()
    obj["spec"]["destination"]["modelType"] = "weights"
    errors = structural_errors(CRDS["ModelPull"], obj)
    assert len(errors) == 1
    assert errors[0].startswith("spec.destination.modelType: 'weights' is not one of")
    assert "'checkpoints'" in errors[0]


def test_a_missing_required_field_is_rejected() -> None:
    obj = _modelpull()
    del obj["spec"]["destination"]
    assert structural_errors(CRDS["ModelPull"], obj) == ["spec: 'destination' is a required property"]


@pytest.mark.parametrize(
    ("kind", "path", "value", "message"),
    [
        ("GenerationJob", ("spec", "count"), 11, "11 is greater than the maximum of 10"),
        ("GenerationJob", ("spec", "width"), 100, "100 is not a multiple of 8"),
        (
            "TrainingRun",
            ("spec", "hyperparameters", "learningRate"),
            0,
            "0 is less than or equal to the minimum of 0",
        ),
        ("ModelPull", ("spec", "maxParallelFiles"), 0, "0 is less than the minimum of 1"),
    ],
)
def test_out_of_range_values_are_rejected(kind: str, path: tuple[str, ...], value: Any, message: str) -> None:
    obj = next(_load(p) for p in EXAMPLES if _load(p)["kind"] == kind)
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert structural_errors(CRDS[kind], obj) == [f"{'.'.join(path)}: {message}"]


def test_unknown_fields_are_rejected_but_free_form_configs_are_kept() -> None:
    obj = _modelpull()
    obj["spec"]["destination"]["folder"] = "x"
    errors = structural_errors(CRDS["ModelPull"], obj)
    assert errors == ["spec.destination: Additional properties are not allowed ('folder' was unexpected)"]

    job = _load(ROOT / "examples" / "generationjob-txt2img.yaml")
    job["spec"]["type"] = "workflow"
    job["spec"]["workflow"] = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
    assert structural_errors(CRDS["GenerationJob"], job) == []


def test_a_source_without_its_sub_object_breaks_a_cel_rule() -> None:
    obj = _modelpull()
    del obj["spec"]["source"]["huggingFace"]
    assert structural_errors(CRDS["ModelPull"], obj) == []
    assert cel_errors(CRDS["ModelPull"], obj) == ["spec.source: type HuggingFace needs huggingFace"]


@pytest.mark.parametrize(
    ("change", "broken"),
    [
        ({"destination": {"modelType": "mixed", "subdir": "x"}}, "and no subdir"),
        ({"source": {"type": "HuggingFace", "huggingFace": {"repoId": "a/b"}}}, "URL source"),
        (
            {"source": {"type": "URL", "urls": [{"url": "https://x/a", "path": "a.safetensors"}]}},
            "type folder",
        ),
        ({"source": {"type": "URL", "urls": [{"url": "https://x/a", "path": "mixed/a"}]}}, "type folder"),
    ],
)
def test_a_mixed_destination_takes_only_url_files_under_type_folders(
    change: dict[str, Any], broken: str
) -> None:
    good = _load(ROOT / "examples" / "modelpull-preset-mixed.yaml")
    assert cel_errors(CRDS["ModelPull"], good) == []
    bad = copy.deepcopy(good)
    bad["spec"].update(change)
    errors = cel_errors(CRDS["ModelPull"], bad)
    assert (
        len(errors) == 1 and errors[0].startswith("spec: destination modelType mixed") and broken in errors[0]
    )


@pytest.mark.parametrize(
    ("kind", "field", "change"),
    [
        (
            "ModelPull",
            "source",
            {"type": "URL", "urls": [{"url": "https://example.com/a", "path": "a.safetensors"}]},
        ),
        ("ModelPull", "destination", {"modelType": "vae"}),
        ("TrainingRun", "trainer", "kohya"),
        ("TrainingRun", "baseModel", {"path": "checkpoints/other.safetensors"}),
        ("TrainingRun", "dataset", {"path": "other"}),
        ("GenerationJob", "type", "img2img"),
        ("GenerationJob", "prompt", "something else"),
        ("ServiceInstance", "serviceType", "jupyter"),
    ],
)
def test_identity_fields_are_immutable(kind: str, field: str, change: Any) -> None:
    old = next(_load(p) for p in EXAMPLES if _load(p)["kind"] == kind)
    new = copy.deepcopy(old)
    new["spec"][field] = change
    errors = cel_errors(CRDS[kind], new, old=old)
    assert f"spec.{field}: {field} is immutable" in " ".join(errors)
    assert cel_errors(CRDS[kind], copy.deepcopy(old), old=old) == []


def test_mutable_fields_can_change() -> None:
    old = _modelpull()
    new = copy.deepcopy(old)
    new["spec"]["paused"] = True
    new["spec"]["deletePolicy"] = "Delete"
    assert cel_errors(CRDS["ModelPull"], new, old=old) == []
