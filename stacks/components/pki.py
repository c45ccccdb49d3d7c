"""The federation's PKI: its CA (or an external bundle), issued leaves and the trust bundle.

Development: a CA (ECDSA P-384) made by the stack's own dynamic provider
(:mod:`stacks.components.dev_certificates`; pulumi-tls cannot be built here), modelled on
PKIoverheid: the
organisation's OIN goes into the subject ``serialNumber`` of every leaf, as on Digikoppeling.
It issues the façade's certificate (server and client use: it serves gemeenten and calls
nodes), for each node listed a server certificate whose Secret a Knooppunt names in
``spec.security.tlsSecret``, and for each test gemeente listed a client certificate (in the
façade's namespace, for trying the platform out; real gemeenten bring PKIoverheid ones).

Production: no private key exists in the stack. The trust bundle is the external PKIoverheid
CA bundle (a reference: a PEM file the platform team verified), optionally pinned by SHA-256
fingerprints; the certificates are issued by a PKIoverheid TSP and installed as Secrets
outside this stack.

Either way the bundle is distributed as a ConfigMap (``ca.crt``) into every platform
namespace. Private keys only ever travel as secret outputs into ``kubernetes.io/tls``
Secrets; nothing here exports one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from stacks.components import labels
from stacks.components.dev_certificates import DevCertificate, DevCertificateAuthority

TRUST_BUNDLE_KEY = "ca.crt"
CRL_KEY = "crl.pem"
CRL_CONFIG_MAP = "knooppunt-crl"
DEV_CA_CURVE = "P384"
LEAF_CURVE = "P256"
USES = ("server", "client", "both")


@dataclass(frozen=True)
class LeafSpec:
    """A certificate the development CA issues, delivered as a ``kubernetes.io/tls`` Secret."""

    name: str  # resource and Secret name stem
    namespace: str
    common_name: str
    dns_names: tuple[str, ...]
    oin: str | None = None  # subject serialNumber (Digikoppeling identity)
    usage: str = "server"  # server | client | both
    secret_name: str | None = None

    def __post_init__(self) -> None:
        if self.usage not in USES:
            raise ValueError(f"certificate usage must be one of {USES}: {self.usage!r}")
        if self.oin is not None and not isinstance(self.oin, str):
            raise ValueError(
                f"an OIN is text of 20 digits, not the number {self.oin!r}: quote it in the "
                "stack config (a number loses its leading zeros)"
            )
        if self.oin is not None and not (len(self.oin) == 20 and self.oin.isdigit()):
            raise ValueError(f"an OIN has 20 digits: {self.oin!r}")

    @property
    def secret(self) -> str:
        return self.secret_name or f"{self.name}-tls"

    @classmethod
    def facade(cls, service: str, namespace: str, host: str | None, oin: str) -> LeafSpec:
        """The façade: serves gemeenten, and calls nodes as itself (both usages)."""
        return cls(
            name="facade",
            namespace=namespace,
            secret_name=f"{service}-tls",
            common_name=host or service,
            oin=oin,
            usage="both",
            dns_names=tuple(filter(None, [host, *service_dns_names(service, namespace)])),
        )

    @classmethod
    def node(cls, name: str, namespace: str, oin: str | None) -> LeafSpec:
        """A node's server certificate (``Knooppunt.spec.security.tlsSecret``)."""
        return cls(
            name=name,
            namespace=namespace,
            secret_name=f"{name}-federation-tls",
            common_name=name,
            dns_names=service_dns_names(name, namespace),
            oin=oin,
        )

    @classmethod
    def gemeente(cls, name: str, namespace: str, oin: str) -> LeafSpec:
        """A test gemeente's client certificate."""
        return cls(
            name=name,
            namespace=namespace,
            secret_name=f"{name}-client-tls",
            common_name=name,
            dns_names=(),
            oin=oin,
            usage="client",
        )


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


@dataclass(frozen=True)
class PlatformPkiArgs:
    environment: str
    # namespace name → its Input (the Namespace's output, so that Secrets wait for it)
    namespaces: Mapping[str, pulumi.Input[str]]
    mode: str = "development"  # development | external
    organisation: str = "Knooppunt federatie"
    ca_validity_hours: int = 5 * 365 * 24
    leaf_validity_hours: int = 90 * 24
    early_renewal_hours: int = 30 * 24
    leaves: tuple[LeafSpec, ...] = ()
    external_bundle_pem: str | None = None
    external_fingerprints: tuple[str, ...] = ()
    trust_bundle_name: str = "knooppunt-trust-bundle"
    extra_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("development", "external"):
            raise ValueError(f"pki mode must be development or external, not {self.mode!r}")
        if self.mode == "external":
            if not self.external_bundle_pem:
                raise ValueError("pki mode external needs the CA bundle (caBundleFile)")
            if self.leaves:
                raise ValueError(
                    "pki mode external issues no certificates: install the PKIoverheid "
                    "certificates as Secrets and reference them"
                )
            check_bundle(self.external_bundle_pem, self.external_fingerprints)
        unknown = [leaf.namespace for leaf in self.leaves if leaf.namespace not in self.namespaces]
        if unknown:
            raise ValueError(f"certificates for namespaces the platform does not make: {unknown}")


def certificates(pem: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise ValueError(f"the CA bundle is not a PEM certificate bundle: {exc}") from exc
    if not certs:
        raise ValueError("the CA bundle holds no certificate")
    return certs


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def check_bundle(pem: str, pinned: Sequence[str]) -> list[str]:
    """Every certificate is a CA; with pins, the bundle holds exactly the pinned ones."""
    certs = certificates(pem)
    for cert in certs:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise ValueError(f"not a CA certificate in the bundle: {cert.subject.rfc4514_string()}")
    prints = [fingerprint(c) for c in certs]
    if pinned:
        wanted = {p.replace(":", "").lower() for p in pinned}
        if set(prints) != wanted:
            raise ValueError(
                f"CA bundle fingerprints {sorted(prints)} differ from the pinned {sorted(wanted)}"
            )
    return prints


def development_crl(ca_key_pem: str, ca_cert_pem: str) -> str:
    """An empty CRL of the development CA, valid for the CA's whole lifetime."""
    key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(ca.not_valid_before_utc)
        .next_update(ca.not_valid_after_utc)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    crl = builder.sign(key, hashes.SHA384())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def read_bundle(path: Path) -> str:
    if not path.is_file():
        raise ValueError(
            f"CA bundle file {path} is missing: place the verified PKIoverheid CA bundle there "
            "(see docs/deploy.md, 'Production trust')"
        )
    return path.read_text()


class PlatformPki(pulumi.ComponentResource):
    """CA or external bundle → trust-bundle ConfigMaps; development CA → leaf Secrets."""

    ca_cert_pem: pulumi.Output[str]
    trust_bundle_name: str
    secrets: dict[str, str]  # leaf name → Secret name

    def __init__(
        self, name: str, args: PlatformPkiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("knooppunt:platform:Pki", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        meta_labels = labels.merged(labels.common(args.environment, "pki"), args.extra_labels)
        self.trust_bundle_name = args.trust_bundle_name
        self.secrets = {}

        if args.mode == "development":
            ca = DevCertificateAuthority(
                f"{name}-ca",
                common_name=f"{args.organisation} CA ({args.environment})",
                organisation=args.organisation,
                curve=DEV_CA_CURVE,
                validity_hours=args.ca_validity_hours,
                early_renewal_hours=args.early_renewal_hours,
                opts=child,
            )
            self.ca_cert_pem = ca.cert_pem
            # The development CA revokes nothing: one empty CRL for the CA's lifetime, so the
            # façade and nodes check revocation (fail-closed) in development as in production,
            # where the platform publishes the TSP's current CRLs in the same ConfigMap.
            dev_crl = pulumi.Output.all(ca.key_pem, ca.cert_pem).apply(
                lambda pems: development_crl(pems[0], pems[1])
            )
            for ns, ns_input in args.namespaces.items():
                k8s.core.v1.ConfigMap(
                    f"{name}-crl-{ns}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=CRL_CONFIG_MAP, namespace=ns_input, labels=meta_labels
                    ),
                    data={CRL_KEY: dev_crl},
                    # ECDSA signatures differ per run: keep the first one, it is valid as long
                    # as the CA.
                    opts=pulumi.ResourceOptions(parent=self, ignore_changes=["data"]),
                )
            for leaf in args.leaves:
                self.secrets[leaf.name] = self._issue(name, leaf, ca, args, meta_labels, child)
        else:
            assert args.external_bundle_pem is not None
            self.ca_cert_pem = pulumi.Output.from_input(args.external_bundle_pem)

        for ns, ns_input in args.namespaces.items():
            k8s.core.v1.ConfigMap(
                f"{name}-trust-{ns}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=args.trust_bundle_name, namespace=ns_input, labels=meta_labels
                ),
                data={TRUST_BUNDLE_KEY: self.ca_cert_pem},
                opts=child,
            )
        self.ca_fingerprints = self.ca_cert_pem.apply(
            lambda pem: [fingerprint(c) for c in certificates(pem)]
        )
        self.register_outputs(
            {
                "caCertPem": self.ca_cert_pem,
                "caFingerprints": self.ca_fingerprints,
                "trustBundle": args.trust_bundle_name,
                "secrets": self.secrets,
            }
        )

    def _issue(
        self,
        name: str,
        leaf: LeafSpec,
        ca: DevCertificateAuthority,
        args: PlatformPkiArgs,
        meta_labels: dict[str, str],
        child: pulumi.ResourceOptions,
    ) -> str:
        cert = DevCertificate(
            f"{name}-{leaf.name}-cert",
            ca=ca,
            common_name=leaf.common_name,
            organisation=args.organisation,
            serial_number=leaf.oin,
            dns_names=leaf.dns_names,
            usage=leaf.usage,
            curve=LEAF_CURVE,
            validity_hours=args.leaf_validity_hours,
            early_renewal_hours=args.early_renewal_hours,
            opts=child,
        )
        k8s.core.v1.Secret(
            f"{name}-{leaf.name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=leaf.secret, namespace=args.namespaces[leaf.namespace], labels=meta_labels
            ),
            type="kubernetes.io/tls",
            string_data={
                "tls.crt": pulumi.Output.concat(cert.cert_pem, ca.cert_pem),
                "tls.key": pulumi.Output.secret(cast(Any, cert.key_pem)),
                TRUST_BUNDLE_KEY: ca.cert_pem,
            },
            opts=child,
        )
        return leaf.secret
