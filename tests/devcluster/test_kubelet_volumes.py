"""Volume materialisation under the data dir and the mountPath rewriting rule."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from kubepilot_devcluster.kubelet.env import PodFacts
from kubepilot_devcluster.kubelet.sources import ContainerConfigError, PodSources
from kubepilot_devcluster.kubelet.volumes import (
    Mount,
    container_mounts,
    materialise_volumes,
    remove_pod_volumes,
    rewrite_paths,
    volume_env,
)


def _pod(volumes: list[dict[str, object]]) -> dict[str, object]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "uid-1",
            "labels": {"a": "1"},
            "annotations": {"b": "2"},
        },
        "spec": {"volumes": volumes},
    }


def _sources() -> PodSources:
    found = PodSources("ns")
    found.add_secret(
        {"metadata": {"name": "tls"}, "data": {"crt": base64.b64encode(b"CERT").decode(), "key": "S0VZ"}}
    )
    found.add_configmap({"metadata": {"name": "cfg"}, "data": {"app.yaml": "x: 1\n", "other": "o"}})
    return found


def test_secret_configmap_downward_and_empty_dir_are_written_with_items_and_modes(tmp_path: Path) -> None:
    pod = _pod(
        [
            {"name": "certs", "secret": {"secretName": "tls", "defaultMode": 0o400}},
            {
                "name": "config",
                "configMap": {"name": "cfg", "items": [{"key": "app.yaml", "path": "conf/app.yaml"}]},
            },
            {
                "name": "info",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    ]
                },
            },
            {"name": "scratch", "emptyDir": {}},
        ]
    )
    facts = PodFacts(pod, "127.1.0.2", "127.0.0.1", "n")
    real = materialise_volumes(pod, facts, _sources(), tmp_path)
    pod_root = tmp_path / "pods" / "ns_p_uid-1" / "volumes"
    assert real["certs"] == pod_root / "certs"
    assert (real["certs"] / "crt").read_bytes() == b"CERT"
    assert (real["certs"] / "key").read_bytes() == b"KEY"
    assert stat.S_IMODE((real["certs"] / "crt").stat().st_mode) == 0o400
    assert (real["config"] / "conf" / "app.yaml").read_text() == "x: 1\n"
    assert not (real["config"] / "other").exists()
    assert (real["info"] / "labels").read_text() == 'a="1"'
    assert (real["info"] / "annotations").read_text() == 'b="2"'
    assert real["scratch"].is_dir()
    assert volume_env(real)["KUBEPILOT_VOLUME_CERTS"] == str(pod_root / "certs")
    remove_pod_volumes(tmp_path / "pods" / "ns_p_uid-1")
    assert not pod_root.exists()


def test_item_paths_cannot_escape_the_volume(tmp_path: Path) -> None:
    pod = _pod(
        [{"name": "bad", "configMap": {"name": "cfg", "items": [{"key": "other", "path": "../../evil"}]}}]
    )
    with pytest.raises(ContainerConfigError, match="escapes the volume"):
        materialise_volumes(pod, PodFacts(pod, "", "", ""), _sources(), tmp_path)


def test_unsupported_volume_type_is_reported(tmp_path: Path) -> None:
    pod = _pod([{"name": "nfs-vol", "nfs": {"server": "x", "path": "/"}}])
    with pytest.raises(ContainerConfigError, match="not supported by the devcluster"):
        materialise_volumes(pod, PodFacts(pod, "", "", ""), _sources(), tmp_path)


def test_host_path_and_pvc_volumes_are_host_directories(tmp_path: Path) -> None:
    host_dir = tmp_path / "models"
    pod = _pod(
        [
            {"name": "models", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
            {"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}},
        ]
    )
    real = materialise_volumes(pod, PodFacts(pod, "", "", ""), _sources(), tmp_path)
    assert real["models"] == host_dir and host_dir.is_dir()
    assert real["cache"] == tmp_path / "volumes" / "pvc" / "ns" / "hf-cache"


def test_rewrite_replaces_whole_mount_path_prefixes_only() -> None:
    mounts = container_mounts(
        {
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/app"},
                {"name": "cfg", "mountPath": "/etc/app/nested", "subPath": "deeper"},
            ]
        },
        {"cfg": Path("/real/cfg")},
    )
    assert mounts[0] == Mount("/etc/app/nested", "/real/cfg/deeper")
    text = "open('/etc/app/x.yaml'); /etc/app; /etc/apple; /my/etc/app/y; /etc/app/nested/z"
    assert rewrite_paths(text, mounts) == (
        "open('/real/cfg/x.yaml'); /real/cfg; /etc/apple; /my/etc/app/y; /real/cfg/deeper/z"
    )


def test_mount_of_unknown_volume_is_a_config_error() -> None:
    with pytest.raises(ContainerConfigError, match="refers to no volume"):
        container_mounts({"volumeMounts": [{"name": "ghost", "mountPath": "/x"}]}, {})
