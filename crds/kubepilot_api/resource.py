"""The custom resource base class and the CRD facts of a kind (plural, short names, printer columns).

The four kind modules stand on this module; ``registry`` stands on them. Keeping the base apart
from the registry is what keeps the API package free of import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from kubepilot_api.common import KubeModel, ObjectMeta
from kubepilot_api.constants import CATEGORY, GROUP, VERSION


@dataclass(frozen=True)
class PrinterColumn:
    """An additionalPrinterColumn of the CRD, shown by ``kubectl get``."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0

    def to_dict(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
PHASE_COLUMN = PrinterColumn("Phase", ".status.phase", description="Where the object stands.")


@dataclass(frozen=True)
class CrdInfo:
    """Everything about a kind's CRD that is not its schema."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)
    categories: tuple[str, ...] = (CATEGORY,)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


class CustomResource(KubeModel):
    """Base of the four kinds: apiVersion, kind, metadata, spec and status."""

    crd: ClassVar[CrdInfo]

    apiVersion: Literal["kubepilot.io/v1alpha1"] = Field(
        default="kubepilot.io/v1alpha1", description="kubepilot.io/v1alpha1"
    )
    kind: str = Field(description="The kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")

    @classmethod
    def api_path(cls, namespace: str) -> str:
        """Collection path on a Kubernetes API server."""
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{cls.crd.plural}"
