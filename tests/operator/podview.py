"""A node pod's view of the cluster, for a control plane whose pods do not run (kwok).

:func:`materialise` reads the Deployment the operator made and writes what its pod would see
into a directory: every ConfigMap and Secret volume (``items`` honoured, so a bundle key
``retour__wmo306.xsl`` lands at ``retour/wmo306.xsl``), empty directories for the rest, and
the container's ``KNOOPPUNT_*`` environment with mount paths turned into those directories.
``knooppunt serve`` started with that environment and the node's own service-account token
runs as the pod would: the operator's objects are the only input, and the node's Role is the
only permission it has.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knooppunt_operator import kube

from tests.operator.harness import Cluster


@dataclass
class PodView:
    env: dict[str, str]
    mounts: dict[str, Path]  # mountPath → local directory
    volumes: dict[str, dict[str, Any]]  # volume name → its source, as in the template

    def path(self, mount_path: str) -> Path:
        return self.mounts[mount_path]


def _write(target: Path, relative: str, content: bytes) -> None:
    path = (target / relative).resolve()
    assert target.resolve() in path.parents, f"{relative} leaves the volume"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


async def _config_map(cluster: Cluster, source: Mapping[str, Any], target: Path) -> None:
    cm = await cluster.must_get(kube.CONFIG_MAP, source["name"])
    files = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    files.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    items = source.get("items")
    for key, path in ((i["key"], i["path"]) for i in items) if items else ((k, k) for k in files):
        _write(target, path, files[key])


async def _secret(cluster: Cluster, source: Mapping[str, Any], target: Path) -> None:
    secret = await cluster.must_get(kube.SECRET, source["secretName"])
    for key, value in (secret.get("data") or {}).items():
        _write(target, key, base64.b64decode(value))


async def materialise(cluster: Cluster, deployment: str, root: Path) -> PodView:
    body = await cluster.must_get(kube.DEPLOYMENT, deployment)
    pod = body["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")  # the pod's file tree, under root
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            await _config_map(cluster, volume["configMap"], target)
        elif "secret" in volume:
            await _secret(cluster, volume["secret"], target)
        mounts[mount["mountPath"]] = target
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = _local(item["value"], mounts, root)
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = cluster.namespace
        else:
            raise AssertionError(f"no local stand-in for {item}")
    return PodView(env, mounts, volumes)


def _local(value: str, mounts: Mapping[str, Path], root: Path) -> str:
    """A value naming paths inside the pod (a mount, a file in one, or a directory holding
    mounts such as the bundle roots), with those paths on this machine."""
    if value.startswith("["):
        return json.dumps([_local(v, mounts, root) for v in json.loads(value)])
    for mount_path in mounts:
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(root / value.lstrip("/"))
        if mount_path.startswith(value + "/"):
            (root / value.lstrip("/")).mkdir(parents=True, exist_ok=True)
            return str(root / value.lstrip("/"))
    return value
