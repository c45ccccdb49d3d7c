"""The development CA and its certificates as Pulumi resources, without pulumi-tls.

The pulumi-tls provider cannot be built here (its provider module is not served by the Go
module proxy), so these are Pulumi *dynamic* resources: the Python provider below runs in
the engine's ``pulumi-python`` provider process and makes the keys and certificates with
``cryptography``, the library the runtime's and the operator's PKI use. As with pulumi-tls, the
key material lives only in the stack's state (encrypted: the key outputs are secrets), a
certificate is replaced (never edited) when an input changes or when it enters its early
renewal window, and nothing exists outside the state (delete and refresh are no-ops).

The provider class is made inside :func:`_provider_class` on purpose: Pulumi pickles the
provider (with dill) into the resource's state, and dill pickles a class defined in a function
by value. The provider process (``python -m pulumi.dynamic``) then needs only
``cryptography``, not this repository on its import path. For the same reason every helper
the provider uses is a static method, and imports happen inside the methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi.dynamic import Resource, ResourceProvider

CA_CURVE = "P384"
LEAF_CURVE = "P256"
USAGES = ("server", "client", "both")
CA_INPUTS = (
    "kind",
    "common_name",
    "organisation",
    "curve",
    "validity_hours",
    "early_renewal_hours",
)
LEAF_INPUTS = (*CA_INPUTS, "serial_number", "dns_names", "usage", "ca_cert_pem", "ca_key_pem")


def _provider_class() -> type[ResourceProvider]:
    from pulumi.dynamic import CreateResult, DiffResult

    class DevCertificateProvider(ResourceProvider):
        """Create: a fresh key and certificate. Diff: replace on any input change or when
        the early renewal window has begun. Read and delete: the state is the object."""

        @staticmethod
        def _now() -> Any:
            import datetime as dt

            return dt.datetime.now(dt.UTC)

        @staticmethod
        def _key(curve: str) -> Any:
            from cryptography.hazmat.primitives.asymmetric import ec

            curves = {"P256": ec.SECP256R1(), "P384": ec.SECP384R1()}
            if curve not in curves:
                raise ValueError(f"unsupported curve {curve!r}: choose P256 or P384")
            return ec.generate_private_key(curves[curve])

        @staticmethod
        def _name(props: dict[str, Any]) -> Any:
            from cryptography import x509
            from cryptography.x509.oid import NameOID

            attributes = [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, props["organisation"]),
                x509.NameAttribute(NameOID.COMMON_NAME, props["common_name"][:64]),
            ]
            if props.get("serial_number"):  # the OIN, as on PKIoverheid certificates
                attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, props["serial_number"]))
            return x509.Name(attributes)

        @staticmethod
        def _pem(key: Any, cert: Any) -> tuple[str, str]:
            from cryptography.hazmat.primitives import serialization

            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem

        def create(self, props: dict[str, Any]) -> CreateResult:
            import datetime as dt

            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.x509.oid import ExtendedKeyUsageOID

            now = self._now()
            key = self._key(props["curve"])
            start = now - dt.timedelta(minutes=5)  # tolerate clock skew
            end = now + dt.timedelta(hours=int(props["validity_hours"]))
            builder = (
                x509.CertificateBuilder()
                .subject_name(self._name(props))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
            )
            if props["kind"] == "ca":
                signer = key
                builder = (
                    builder.issuer_name(self._name(props))
                    .not_valid_after(end)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(
                        x509.KeyUsage(
                            digital_signature=True,
                            content_commitment=False,
                            key_encipherment=False,
                            data_encipherment=False,
                            key_agreement=False,
                            key_cert_sign=True,
                            crl_sign=True,
                            encipher_only=False,
                            decipher_only=False,
                        ),
                        critical=True,
                    )
                )
            else:
                ca_cert = x509.load_pem_x509_certificate(props["ca_cert_pem"].encode())
                signer = serialization.load_pem_private_key(
                    props["ca_key_pem"].encode(), password=None
                )
                usages = {
                    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
                    "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
                    "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                }[props["usage"]]
                builder = (
                    builder.issuer_name(ca_cert.subject)
                    .not_valid_after(min(end, ca_cert.not_valid_after_utc))
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(
                        x509.KeyUsage(
                            digital_signature=True,
                            content_commitment=False,
                            key_encipherment=False,
                            data_encipherment=False,
                            key_agreement=False,
                            key_cert_sign=False,
                            crl_sign=False,
                            encipher_only=False,
                            decipher_only=False,
                        ),
                        critical=True,
                    )
                    .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                    .add_extension(
                        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                        critical=False,
                    )  # type: ignore[arg-type]
                )
                if props.get("dns_names"):
                    builder = builder.add_extension(
                        x509.SubjectAlternativeName([x509.DNSName(n) for n in props["dns_names"]]),
                        critical=False,
                    )
            cert = builder.sign(
                signer, hashes.SHA384() if props["kind"] == "ca" else hashes.SHA256()
            )
            cert_pem, key_pem = self._pem(key, cert)
            outs = {
                **props,
                "cert_pem": cert_pem,
                "key_pem": key_pem,
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
            return CreateResult(id_=format(cert.serial_number, "x"), outs=outs)

        def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
            import datetime as dt

            keys = LEAF_INPUTS if news.get("kind") == "leaf" else CA_INPUTS
            changed = [k for k in keys if olds.get(k) != news.get(k)]
            if not changed and olds.get("not_after"):
                renew_from = dt.datetime.fromisoformat(olds["not_after"]) - dt.timedelta(
                    hours=int(news["early_renewal_hours"])
                )
                if self._now() >= renew_from:
                    changed = ["early_renewal_hours"]
            return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    return DevCertificateProvider


# One provider instance (not a module attribute named like its class: see the module doc).
_PROVIDER = _provider_class()()


class DevCertificateAuthority(Resource):
    """A self-signed development CA (ECDSA, ``pathLenConstraint`` 0: it issues only leaves)."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    not_after: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        common_name: str,
        organisation: str,
        validity_hours: int,
        early_renewal_hours: int,
        curve: str = CA_CURVE,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "kind": "ca",
            "common_name": common_name,
            "organisation": organisation,
            "curve": curve,
            "validity_hours": validity_hours,
            "early_renewal_hours": early_renewal_hours,
            "cert_pem": None,
            "key_pem": None,
            "not_after": None,
        }
        super().__init__(_PROVIDER, name, props, _secret_key(opts))


class DevCertificate(Resource):
    """A leaf certificate the development CA issues (OIN in the subject ``serialNumber``)."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    not_after: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        ca: DevCertificateAuthority,
        common_name: str,
        organisation: str,
        usage: str,
        dns_names: Sequence[str] = (),
        serial_number: str | None = None,
        validity_hours: int,
        early_renewal_hours: int,
        curve: str = LEAF_CURVE,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if usage not in USAGES:
            raise ValueError(f"certificate usage must be one of {USAGES}: {usage!r}")
        props = {
            "kind": "leaf",
            "common_name": common_name,
            "organisation": organisation,
            "curve": curve,
            "validity_hours": validity_hours,
            "early_renewal_hours": early_renewal_hours,
            "serial_number": serial_number,
            "dns_names": list(dns_names),
            "usage": usage,
            "ca_cert_pem": ca.cert_pem,
            "ca_key_pem": pulumi.Output.secret(ca.key_pem),
            "cert_pem": None,
            "key_pem": None,
            "not_after": None,
        }
        super().__init__(_PROVIDER, name, props, _secret_key(opts))


def _secret_key(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(additional_secret_outputs=["key_pem", "ca_key_pem"])
    )
