"""Kubernetes manifests from what a Pulumi program declared (captured by the mocks)."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import rpc

from tests.iac.harness import Registered

SECRET_SIG = rpc._special_secret_sig
SIG_KEY = rpc._special_sig_key


def api_version(token: str) -> tuple[str, str]:
    """``kubernetes:core/v1:Namespace`` → ("v1", "Namespace");
    ``kubernetes:networking.k8s.io/v1:NetworkPolicy`` → ("networking.k8s.io/v1", ...)."""
    provider, module, kind = token.split(":")
    if provider != "kubernetes":
        raise ValueError(f"not a Kubernetes type token: {token}")
    group, version = module.rsplit("/", 1)
    return (version if group == "core" else f"{group}/{version}"), kind


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def plain(value: Any) -> Any:
    """Inputs as the API server sees them: secrets unwrapped, whole floats as integers
    (Pulumi carries every number as a float; the provider does the same conversion)."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifest(resource: Registered) -> dict[str, Any]:
    version, kind = api_version(resource.type)
    body = plain(resource.inputs)
    body["apiVersion"], body["kind"] = version, kind
    return body


def secret_paths(value: Any, path: str = "") -> list[str]:
    """Where in the inputs values are marked secret."""
    if is_secret(value):
        return [path or "."]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in secret_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in secret_paths(v, f"{path}[{i}]")]
    return []
