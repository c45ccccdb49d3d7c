"""Admission checks: a broken SectorConnector never reaches a node, and a Knooppunt never
names PostgreSQL TLS material that is not there (:func:`validate_knooppunt`).

The admission webhook and the connector controller both call :func:`validate_connector`:
the resource must satisfy the typed model, its schemas and stylesheets must compile, its
conversion must compile and every purpose's fields must exist in the conversion output
(``node_runtime.messages.compiled.compile_connector`` does exactly what the runtime will
do), and a change of content must come with a new ``spec.revision`` (revisions are
immutable; nodes pin them). A shadow release (``spec.shadow``) is compiled the same way, as
the runtime will compile it, so a shadow that could only report a compile error never
reaches a node. Each problem is reported as one precise sentence.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from pydantic import ValidationError

from knooppunt_operator.builders.revisions import bundle_key_problem, bundle_path
from node_runtime.messages.compiled import ConnectorCompileError, compile_connector
from node_runtime.model.connector import BundleSource, SectorConnector
from node_runtime.model.knooppunt import Knooppunt
from node_runtime.shadow.release import shadow_resource


def model_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return problems


def bundle_files(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    """Bundle-relative path → content, from a bundle ConfigMap (``a__b.xsl`` → ``a/b.xsl``)."""
    files = {bundle_path(k): str(v).encode() for k, v in (config_map.get("data") or {}).items()}
    for key, value in (config_map.get("binaryData") or {}).items():
        files[bundle_path(key)] = base64.b64decode(value)
    return files


def _compile(connector: SectorConnector, files: Mapping[str, bytes] | None) -> str | None:
    with tempfile.TemporaryDirectory(prefix="knooppunt-bundle-") as tmp:
        root = Path(tmp)
        if files is not None:
            bundle = root / connector.name
            bundle.mkdir()
            for relative, content in files.items():
                target = bundle / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        try:
            compile_connector(connector, origin=None, config_map_root=root)
        except ConnectorCompileError as exc:
            return str(exc)
    return None


def _bundle_problems(
    where: str, bundle: BundleSource, config_map: Mapping[str, Any] | None, connector: str
) -> tuple[list[str], dict[str, bytes] | None]:
    """Problems with a bundle source on a cluster, and its files when from a ConfigMap."""
    if bundle.path:
        return [
            f"{where}.path: a bundle path is for local mode only; on a cluster use builtin "
            "or configMap"
        ], None
    if not bundle.config_map:
        return [], None
    if config_map is None:
        return [
            f"{where}.configMap: ConfigMap {bundle.config_map!r} not found in the "
            f"namespace of connector {connector}"
        ], None
    bad = [p for key in _keys(config_map) if (p := bundle_key_problem(key))]
    if bad:
        return [f"{where}.configMap: {p}" for p in bad], None
    return [], bundle_files(config_map)


def validate_connector(
    body: Mapping[str, Any],
    *,
    old: Mapping[str, Any] | None = None,
    config_map: Mapping[str, Any] | None = None,
    shadow_config_map: Mapping[str, Any] | None = None,
) -> list[str]:
    """Problems that make the connector unusable on a cluster; empty when it is fine.

    ``config_map`` is the bundle ConfigMap named by ``spec.bundle.configMap`` (``None`` when
    it does not exist), ``shadow_config_map`` the one named by
    ``spec.shadow.bundle.configMap``; ``old`` is the stored object on an update.
    """
    try:
        connector = SectorConnector.model_validate(body)
    except ValidationError as exc:
        return model_problems(exc)
    name = connector.name
    problems, files = _bundle_problems("spec.bundle", connector.spec.bundle, config_map, name)
    if problems:
        return problems
    if old is not None:
        problems += revision_problems(old, body)
    compiled = _compile(connector, files)
    if compiled is not None:
        problems.append(compiled)
    shadow = shadow_resource(connector)
    if shadow is not None:
        shadow_problems, shadow_files = _bundle_problems(
            "spec.shadow.bundle", shadow.spec.bundle, shadow_config_map, name
        )
        if not shadow_problems:
            shadow_compiled = _compile(shadow, shadow_files)
            if shadow_compiled is not None:
                shadow_problems.append(f"spec.shadow: {shadow_compiled}")
        problems += shadow_problems
    return problems


def revision_problems(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    old_rev, new_rev = int(old_spec.get("revision", 1)), int(new_spec.get("revision", 1))
    if old_spec != new_spec and old_rev == new_rev:
        return [
            f"spec.revision: the connector's content changed but spec.revision is still "
            f"{new_rev}; raise spec.revision for every change (nodes pin revisions)"
        ]
    return []


def _keys(config_map: Mapping[str, Any]) -> list[str]:
    return [*(config_map.get("data") or {}), *(config_map.get("binaryData") or {})]


# ------------------------------------------------------------------------------ Knooppunt

KIND_SECRET = "Secret"  # noqa: S105 - a kind, not a password
KIND_CONFIG_MAP = "ConfigMap"
ObjectRef = tuple[str, str]  # (kind, name) in the Knooppunt's namespace


def postgresql_tls_refs(body: Mapping[str, Any]) -> list[ObjectRef]:
    """The Secrets and ConfigMaps ``spec.storage.postgresqlTls`` names (read leniently: the
    model check reports a malformed spec)."""
    tls = ((body.get("spec") or {}).get("storage") or {}).get("postgresqlTls") or {}
    refs: list[ObjectRef] = []
    ca = tls.get("ca") or {}
    if isinstance(ca.get("secret"), str):
        refs.append((KIND_SECRET, ca["secret"]))
    if isinstance(ca.get("configMap"), str):
        refs.append((KIND_CONFIG_MAP, ca["configMap"]))
    client = tls.get("clientCertificate") or {}
    if isinstance(client.get("secret"), str):
        refs.append((KIND_SECRET, client["secret"]))
    return refs


def object_value(obj: Mapping[str, Any], key: str) -> bytes | None:
    """A key's content in a Secret (base64 ``data``) or ConfigMap (``data``/``binaryData``)."""
    if obj.get("kind") == KIND_SECRET or "type" in obj:
        raw = (obj.get("data") or {}).get(key)
        if raw is None:
            value = (obj.get("stringData") or {}).get(key)
            return None if value is None else str(value).encode()
        return base64.b64decode(raw)
    if key in (obj.get("data") or {}):
        return str(obj["data"][key]).encode()
    raw = (obj.get("binaryData") or {}).get(key)
    return None if raw is None else base64.b64decode(raw)


def _pem_problem(content: bytes, *, private_key: bool) -> str | None:
    if private_key:
        return None if b"PRIVATE KEY-----" in content else "holds no PEM private key"
    try:
        x509.load_pem_x509_certificates(content)
    except ValueError:
        return "holds no PEM certificate"
    return None


def postgresql_tls_problems(
    kp: Knooppunt, referenced: Mapping[ObjectRef, Mapping[str, Any] | None]
) -> list[str]:
    """Each named object must exist and hold its keys with PEM content. ``referenced``: the
    objects of :func:`postgresql_tls_refs`, ``None`` where missing."""
    tls = kp.spec.storage.postgresql_tls
    if tls is None:
        return []
    where = "spec.storage.postgresqlTls"
    wanted: list[tuple[str, ObjectRef, str, bool]] = []
    if tls.ca is not None:
        if tls.ca.secret is not None:
            wanted.append((f"{where}.ca.secret", (KIND_SECRET, tls.ca.secret), tls.ca.key, False))
        elif tls.ca.config_map is not None:
            wanted.append(
                (f"{where}.ca.configMap", (KIND_CONFIG_MAP, tls.ca.config_map), tls.ca.key, False)
            )
    client = tls.client_certificate
    if client is not None:
        ref = (KIND_SECRET, client.secret)
        wanted.append((f"{where}.clientCertificate.secret", ref, client.cert_key, False))
        wanted.append((f"{where}.clientCertificate.secret", ref, client.key_key, True))
    problems: list[str] = []
    for field, (kind, name), key, private in wanted:
        obj = referenced.get((kind, name))
        if obj is None:
            problem = f"{field}: {kind} {name!r} not found in the namespace of Knooppunt {kp.name}"
            if problem not in problems:
                problems.append(problem)
            continue
        content = object_value(obj, key)
        if content is None:
            problems.append(f"{field}: {kind} {name!r} has no key {key!r}")
            continue
        bad = _pem_problem(content, private_key=private)
        if bad is not None:
            problems.append(f"{field}: key {key!r} of {kind} {name!r} {bad}")
    return problems


def validate_knooppunt(
    body: Mapping[str, Any], *, referenced: Mapping[ObjectRef, Mapping[str, Any] | None]
) -> list[str]:
    """Problems that would keep the node from running; empty when it is fine."""
    try:
        kp = Knooppunt.model_validate(body)
    except ValidationError as exc:
        return model_problems(exc)
    return postgresql_tls_problems(kp, referenced)
