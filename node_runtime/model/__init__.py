"""One typed resource model: the single source of truth for CRDs, operator and runtime."""

from node_runtime.model.connector import (
    BundleSource,
    Conversion,
    Mapping,
    MessageType,
    Participant,
    Purpose,
    Rule,
    SectorConnector,
    SectorConnectorSpec,
)
from node_runtime.model.gemeente import Gemeente, GemeenteSpec, Subscription
from node_runtime.model.knooppunt import Knooppunt, KnooppuntSpec
from node_runtime.model.meta import API_VERSION, GROUP, VERSION, ObjectMeta, Resource

KINDS: dict[str, type[Resource]] = {
    "Knooppunt": Knooppunt,
    "SectorConnector": SectorConnector,
    "Gemeente": Gemeente,
}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "BundleSource",
    "Conversion",
    "Gemeente",
    "GemeenteSpec",
    "Knooppunt",
    "KnooppuntSpec",
    "Mapping",
    "MessageType",
    "ObjectMeta",
    "Participant",
    "Purpose",
    "Resource",
    "Rule",
    "SectorConnector",
    "SectorConnectorSpec",
    "Subscription",
]
