"""The Gemeente resource: a tenant municipality and its subscriptions."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from node_runtime.model.meta import DNS_LABEL, GEMEENTECODE_PATTERN, OIN_PATTERN, Model, Resource


class Delivery(Model):
    mode: Literal["pull", "push"] = Field(
        default="pull",
        description="pull: the gemeente fetches from its mailbox; push: the node "
        "delivers to endpoint.",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https://",
        description="HTTPS callback for push delivery (server certificate verified).",
    )
    envelope: Literal["cloudevents", "plain"] = Field(
        default="cloudevents",
        description="Push body: cloudevents (a CloudEvent 1.0, structured mode, NL GOV "
        "profile; the default) or plain (the municipal JSON alone, as before).",
    )

    @model_validator(mode="after")
    def _endpoint(self) -> Delivery:
        if self.mode == "push" and not self.endpoint:
            raise ValueError("push delivery needs an endpoint")
        return self


class Subscription(Model):
    """A gemeente's use of a connector for one legal purpose."""

    connector: str = Field(pattern=DNS_LABEL, max_length=63, description="SectorConnector name.")
    purpose: str = Field(
        pattern=DNS_LABEL, max_length=63, description="Purpose declared by the connector."
    )
    legal_basis: str = Field(
        alias="legalBasis", min_length=1, description="Legal basis, e.g. 'Wmo 2015 art. 2.3.5'."
    )
    messages: list[str] = Field(
        default_factory=list,
        description="Restrict to these message types; empty means all the purpose covers.",
    )
    delivery: Delivery = Field(default_factory=Delivery)


class CertificateSpec(Model):
    """Where the gemeente's client certificate comes from."""

    issue: bool = Field(
        default=True, description="Issue a client certificate from the node's CA into a Secret."
    )
    secret: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        description="Use this Secret (tls.crt) instead, e.g. a PKIoverheid certificate.",
    )


class GemeenteSpec(Model):
    gemeentecode: str = Field(pattern=GEMEENTECODE_PATTERN, description="CBS gemeentecode.")
    oin: str = Field(pattern=OIN_PATTERN, description="Organisatie-identificatienummer.")
    display_name: str = Field(alias="displayName", min_length=1, max_length=200)
    subscriptions: list[Subscription] = Field(default_factory=list, max_length=64)
    certificate: CertificateSpec = Field(default_factory=CertificateSpec)
    payload_retention_days: int | None = Field(
        default=None,
        alias="payloadRetentionDays",
        ge=1,
        description="Overrides the connector's payload retention for this gemeente.",
    )

    @model_validator(mode="after")
    def _unique(self) -> GemeenteSpec:
        keys = [(s.connector, s.purpose) for s in self.subscriptions]
        if len(set(keys)) != len(keys):
            raise ValueError("a (connector, purpose) subscription may appear once")
        return self


class Gemeente(Resource):
    KIND: ClassVar[str] = "Gemeente"
    PLURAL: ClassVar[str] = "gemeenten"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("gem",)

    kind: Literal["Gemeente"] = "Gemeente"
    spec: GemeenteSpec
