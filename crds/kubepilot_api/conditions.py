"""Condition types and reasons, one vocabulary for all four kinds.

Orchestration state (is the pod scheduled, pulled, running) is kept apart from application
state (is the download, the training, the generation making progress): the first set of
conditions comes from child Jobs, Deployments and Pods, the second from the workers' reports.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    """Condition types. Each kind documents the subset it uses."""

    READY = "Ready"
    """The object's outcome is usable: files present, service answering, outputs written."""
    WORKLOAD_READY = "WorkloadReady"
    """Orchestration: the child pod is scheduled, its image pulled and its container running."""
    PROGRESSING = "Progressing"
    """Application: the work is moving (bytes, steps, images); False while waiting or paused."""
    SUSPENDED = "Suspended"
    """spec.suspend (or paused) holds the work; no pod runs."""
    SUCCEEDED = "Succeeded"
    """The work finished successfully (terminal)."""
    FAILED = "Failed"
    """The work failed (terminal); reason and message say why."""
    CANCELLED = "Cancelled"
    """The work was cancelled by a user or a queue operation (terminal)."""
    DEPENDENCIES_READY = "DependenciesReady"
    """Referenced ModelPulls are Completed and referenced services are Running."""
    SCHEDULED = "Scheduled"
    """A GenerationJob has been assigned to a service or a one-shot Job."""
    STOP_REQUESTED = "StopRequested"
    """A stop was asked for and is being carried out gracefully."""
    ACTION_PENDING = "ActionPending"
    """An imperative action was requested and not yet acknowledged."""
    AVAILABLE = "Available"
    """A ServiceInstance has a ready endpoint."""
    DEGRADED = "Degraded"
    """A ServiceInstance's pod keeps failing (CrashLoopBackOff and the like)."""
    REMOVED = "Removed"
    """A ModelPull's files were removed from the models store."""


class ConditionReason(StrEnum):
    """Reasons. Pod failures are never hidden: each has a reason of its own."""

    # orchestration
    PENDING = "Pending"
    CREATED = "Created"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    CONTAINER_ERROR = "ContainerError"
    POD_RUNNING = "PodRunning"
    # application
    STARTING = "Starting"
    RUNNING = "Running"
    WAITING_FOR_DEPENDENCIES = "WaitingForDependencies"
    DEPENDENCY_FAILED = "DependencyFailed"
    SUSPENDED = "Suspended"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    STOPPED = "Stopped"
    STOPPED_BY_USER = "StoppedByUser"
    IDLE_TIMEOUT = "IdleTimeout"
    MAX_DURATION = "MaxDurationReached"
    SCHEDULED_SHUTDOWN = "ScheduledShutdown"
    USER_CANCELLED = "UserCancelled"
    INTERRUPTED = "Interrupted"
    QUEUE_CLEARED = "QueueCleared"
    BACKEND_UNAVAILABLE = "BackendUnavailable"
    INVALID_WORKFLOW = "InvalidWorkflow"
    INVALID_SPEC = "InvalidSpec"
    DOWNLOAD_FAILED = "DownloadFailed"
    INSUFFICIENT_STORAGE = "InsufficientStorage"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    NOT_FOUND = "NotFound"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    TRAINING_FAILED = "TrainingFailed"
    GENERATION_FAILED = "GenerationFailed"
    FILES_REMOVED = "FilesRemoved"
    FILES_RETAINED = "FilesRetained"
    ACTION_REQUESTED = "ActionRequested"
    ACTION_ACKNOWLEDGED = "ActionAcknowledged"
    ENDPOINT_READY = "EndpointReady"
    ENDPOINT_NOT_READY = "EndpointNotReady"
    # dependencies and sharing
    SECRET_NOT_FOUND = "SecretNotFound"
    WAITING_FOR_MODEL = "WaitingForModel"
    WAITING_FOR_DATASET = "WaitingForDataset"
    WAITING_FOR_SERVICE = "WaitingForService"
    SHARED_FILES = "SharedFiles"
    """A ModelPull completed from another ModelPull of the same files, without a second download."""
    WAITING_FOR_SHARED_PULL = "WaitingForSharedPull"
    DISPATCHED = "Dispatched"
    ONE_SHOT_JOB = "OneShotJob"
