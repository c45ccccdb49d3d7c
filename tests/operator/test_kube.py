"""Credentials for the API server: explicit URL, kubeconfig, in-cluster service account."""

from __future__ import annotations

import base64
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
    connection = kube.kopf_connection(creds)
    assert connection.server == "https://api.example:6443"
    assert connection.token == "secret-token" and connection.scheme == "Bearer"


def test_in_cluster_token_is_read_per_request(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("one\n")
    (tmp_path / "ca.crt").write_bytes(b"CA")
    (tmp_path / "namespace").write_text("knooppunt-system")
    creds = kube.Credentials.in_cluster("10.0.0.1", "443", tmp_path)
    assert creds.server == "https://10.0.0.1:443"
    assert creds.default_namespace == "knooppunt-system"
    assert creds.current_token() == "one"
    (tmp_path / "token").write_text("two\n")
    assert creds.current_token() == "two", "rotated by the kubelet"


def test_paths() -> None:
    assert kube.DEPLOYMENT.path("zorg", "kp", "status") == (
        "/apis/apps/v1/namespaces/zorg/deployments/kp/status"
    )
    assert kube.SECRET.path("zorg") == "/api/v1/namespaces/zorg/secrets"
    assert kube.kind_of({"apiVersion": "v1", "kind": "Secret"}) is kube.SECRET
