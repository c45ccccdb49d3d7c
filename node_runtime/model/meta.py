"""Kubernetes-style object metadata and the resource envelope shared by all kinds."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

GROUP = "knooppunt.nl"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_RE = re.compile(DNS_LABEL)
OIN_PATTERN = r"^[0-9]{20}$"
GEMEENTECODE_PATTERN = r"^[0-9]{4}$"
AGB_PATTERN = r"^[0-9]{8}$"
RETOURCODE_PATTERN = r"^[0-9A-Z]{4}$"
PARTICIPANT_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,63}$"


class Model(BaseModel):
    """Base for spec models: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ObjectMeta that the node and the operator use."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")


class Resource(BaseModel):
    """A namespaced custom resource: apiVersion/kind/metadata/spec (+ status)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()

    api_version: str = Field(default=API_VERSION, alias="apiVersion", pattern=f"^{API_VERSION}$")
    kind: str
    metadata: ObjectMeta
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name
