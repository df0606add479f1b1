"""Where the kubelet keeps each pod's files under the devcluster data directory.

The API server serves ``GET .../pods/<name>/log`` by reading exactly these paths, so this module is the
contract between the two: ``<data_dir>/pods/<namespace>_<name>_<uid>/<container>.log`` holds the current
run's stdout+stderr and ``<container>.previous.log`` the run before the last restart (``?previous=true``).
"""

from __future__ import annotations

from pathlib import Path


def pod_dir(data_dir: Path, namespace: str, pod_name: str, pod_uid: str) -> Path:
    """The directory holding everything the kubelet writes for one pod."""
    return data_dir / "pods" / f"{namespace}_{pod_name}_{pod_uid}"


def container_log_path(data_dir: Path, namespace: str, pod_name: str, pod_uid: str, container: str) -> Path:
    """The log file of the container's current (or last) run."""
    return pod_dir(data_dir, namespace, pod_name, pod_uid) / f"{container}.log"


def previous_container_log_path(
    data_dir: Path, namespace: str, pod_name: str, pod_uid: str, container: str
) -> Path:
    """The log file of the container's run before its latest restart."""
    return pod_dir(data_dir, namespace, pod_name, pod_uid) / f"{container}.previous.log"


def container_pid_path(data_dir: Path, namespace: str, pod_name: str, pod_uid: str, container: str) -> Path:
    """Where the pid of a running container process is recorded (see :mod:`.orphans`)."""
    return pod_dir(data_dir, namespace, pod_name, pod_uid) / f"{container}.pid"


def volume_dir(data_dir: Path, namespace: str, pod_name: str, pod_uid: str, volume: str) -> Path:
    """Where a secret/configMap/emptyDir/downwardAPI volume is materialised."""
    return pod_dir(data_dir, namespace, pod_name, pod_uid) / "volumes" / volume


def termination_message_path(
    data_dir: Path, namespace: str, pod_name: str, pod_uid: str, container: str
) -> Path:
    """The real file behind a container's ``terminationMessagePath``."""
    return pod_dir(data_dir, namespace, pod_name, pod_uid) / "termination" / container
