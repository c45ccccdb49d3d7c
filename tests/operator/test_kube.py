"""Credentials for the API server: explicit URL, kubeconfig, in-cluster service account."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import yaml
from knooppunt_operator import kube


def test_explicit_url() -> None:
    creds = kube.Credentials.from_env(
        {
            "KNOOPPUNT_OPERATOR_KUBE_URL": "http://127.0.0.1:8001/",
            "KNOOPPUNT_OPERATOR_KUBE_TOKEN": "t",
        }
    )
    assert creds.server == "http://127.0.0.1:8001" and creds.current_token() == "t"
    assert creds.ssl_context() is False


def test_kubeconfig(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ops",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://api.example:6443",
                    "certificate-authority-data": base64.b64encode(b"CA").decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [
            {"name": "ops", "context": {"cluster": "c", "user": "u", "namespace": "zorg"}}
        ],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    creds = kube.Credentials.from_env({"KUBECONFIG": str(path)})
    assert creds.server == "https://api.example:6443"
    assert creds.ca_data == b"CA" and creds.token == "secret-token"
    assert creds.default_namespace == "zorg"
    connection = asyncio.run(kube.kopf_connection(creds))
    assert connection.server == "https://api.example:6443"
    assert connection.token == "secret-token" and connection.scheme == "Bearer"
    assert connection.ca_path and Path(connection.ca_path).read_bytes() == b"CA"


def test_several_kubeconfig_paths_are_merged(tmp_path: Path) -> None:
    """KUBECONFIG=a:b as kubectl reads it: the first file's current context, users and
    clusters from either file."""
    first = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ops",
        "contexts": [{"name": "ops", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://api.example:6443", "insecure-skip-tls-verify": True},
            }
        ],
    }
    second = {
        "apiVersion": "v1",
        "kind": "Config",
        "users": [{"name": "u", "user": {"token": "from-the-second-file"}}],
    }
    (tmp_path / "a").write_text(yaml.safe_dump(first))
    (tmp_path / "b").write_text(yaml.safe_dump(second))
    creds = kube.Credentials.from_env(
        {
            "KUBECONFIG": f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'missing'}{os.pathsep}"
            f"{tmp_path / 'b'}"
        }
    )
    assert creds.server == "https://api.example:6443"
    assert creds.token == "from-the-second-file" and creds.insecure


def test_in_cluster_token_is_read_again(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("one\n")
    (tmp_path / "ca.crt").write_bytes(b"CA")
    (tmp_path / "namespace").write_text("knooppunt-system")
    creds = kube.Credentials.in_cluster("10.0.0.1", "443", tmp_path)
    assert creds.server == "https://10.0.0.1:443"
    assert creds.default_namespace == "knooppunt-system"
    assert creds.current_token() == "one"
    (tmp_path / "token").write_text("two\n")
    assert creds.current_token() == "two", "rotated by the kubelet"

    async def token_of_configuration() -> str:
        configuration = await creds.configuration()
        assert configuration.host == "https://10.0.0.1:443"
        assert configuration.refresh_api_key_hook is not None, "the library re-reads the file"
        return str(await configuration.get_api_key_with_prefix("BearerToken"))

    assert asyncio.run(token_of_configuration()).split() == ["Bearer", "two"]


def test_paths() -> None:
    assert kube.DEPLOYMENT.path("zorg", "kp", "status") == (
        "/apis/apps/v1/namespaces/zorg/deployments/kp/status"
    )
    assert kube.SECRET.path("zorg") == "/api/v1/namespaces/zorg/secrets"
    assert kube.kind_of({"apiVersion": "v1", "kind": "Secret"}) is kube.SECRET
