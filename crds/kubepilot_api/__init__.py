"""kubepilot's API: the four custom resource kinds and the operator-to-worker contract.

This package is the ground floor. It imports nothing from kopf, FastAPI, a Kubernetes client or
any other kubepilot package, so the operator, the gateway and every worker image can stand on it.
"""

from kubepilot_api.constants import API_VERSION, CATEGORY, GROUP, VERSION
from kubepilot_api.generationjob import GenerationJob, GenerationJobSpec, GenerationJobStatus
from kubepilot_api.modelpull import ModelPull, ModelPullSpec, ModelPullStatus
from kubepilot_api.registry import KINDS, kind_by_name
from kubepilot_api.resource import CustomResource
from kubepilot_api.serviceinstance import ServiceInstance, ServiceInstanceSpec, ServiceInstanceStatus
from kubepilot_api.trainingrun import TrainingRun, TrainingRunSpec, TrainingRunStatus

__all__ = [
    "API_VERSION",
    "CATEGORY",
    "GROUP",
    "KINDS",
    "VERSION",
    "CustomResource",
    "GenerationJob",
    "GenerationJobSpec",
    "GenerationJobStatus",
    "ModelPull",
    "ModelPullSpec",
    "ModelPullStatus",
    "ServiceInstance",
    "ServiceInstanceSpec",
    "ServiceInstanceStatus",
    "TrainingRun",
    "TrainingRunSpec",
    "TrainingRunStatus",
    "kind_by_name",
]
