"""The resource model and the connector compiler refuse what cannot work, and say why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from node_runtime.messages.compiled import ConnectorCache, ConnectorCompileError
from node_runtime.model.loading import ResourceError, load_paths
from node_runtime.state.node_state import StateError, build_state
from tests.conftest import EXAMPLES, NODE


def _connector_doc() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((EXAMPLES / "connector.yaml").read_text())


def _compile(tmp_path: Path, doc: dict) -> None:  # type: ignore[type-arg]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc))
    res = load_paths([f])
    c = res.connectors[doc["metadata"]["name"]]
    ConnectorCache(config_map_root=tmp_path).get(c, res.origin_of("SectorConnector", c.name))


def test_examples_load_and_compile() -> None:
    res = load_paths([EXAMPLES])
    state = build_state(res, node=NODE, cache=ConnectorCache(config_map_root=Path("/nonexistent")))
    assert set(state.connectors) == {"iwmo-2-1"}
    assert len(state.gemeenten_by_code) == 4


def test_compilation_happens_once_per_revision() -> None:
    res = load_paths([EXAMPLES])
    cache = ConnectorCache(config_map_root=Path("/nonexistent"))
    build_state(res, node=NODE, cache=cache)
    build_state(res, node=NODE, cache=cache)
    assert cache.compilations == 1


def test_invalid_gemeente_names_file_and_field(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text(
        "apiVersion: knooppunt.nl/v1alpha1\nkind: Gemeente\nmetadata: {name: g}\n"
        "spec: {gemeentecode: '363', oin: '1', displayName: G}\n"
    )
    with pytest.raises(ResourceError) as info:
        load_paths([f])
    text = str(info.value)
    assert "g.yaml" in text and "gemeentecode" in text and "oin" in text


def test_purpose_field_must_exist_in_conversion(tmp_path: Path) -> None:
    doc = _connector_doc()
    doc["spec"]["purposes"][0]["fields"].append("clienten[].schoenmaat")
    with pytest.raises(ConnectorCompileError, match="schoenmaat"):
        _compile(tmp_path, doc)


def test_bad_xpath_and_missing_schema_are_named(tmp_path: Path) -> None:
    doc = _connector_doc()
    doc["spec"]["messages"][1]["rules"][0]["context"] = "/wmo305:Bericht[["
    with pytest.raises(ConnectorCompileError, match="WMO305"):
        _compile(tmp_path, doc)
    doc = _connector_doc()
    doc["spec"]["messages"][1]["schema"] = "nope.xsd"
    with pytest.raises(ConnectorCompileError, match=r"nope\.xsd"):
        _compile(tmp_path, doc)


def test_bundle_files_cannot_escape_the_bundle(tmp_path: Path) -> None:
    doc = _connector_doc()
    doc["spec"]["messages"][1]["schema"] = "../../../../etc/passwd"
    with pytest.raises(ConnectorCompileError, match="outside"):
        _compile(tmp_path, doc)


def test_pinned_revision_mismatch_is_refused() -> None:
    res = load_paths([EXAMPLES])
    kp = res.knooppunten[NODE]
    pinned = kp.model_copy(
        update={
            "spec": kp.spec.model_copy(
                update={"connectors": [kp.spec.connectors[0].model_copy(update={"revision": 7})]}
            )
        }
    )
    res.knooppunten[NODE] = pinned
    with pytest.raises(StateError, match="pinned to revision 7"):
        build_state(res, node=NODE, cache=ConnectorCache(config_map_root=Path("/x")))


def test_subscription_to_undeclared_purpose_is_refused(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "gemeenten.yaml").read_text()))
    docs[0]["spec"]["subscriptions"][0]["purpose"] = "alles-weten"
    (tmp_path / "gemeenten.yaml").write_text(yaml.safe_dump_all(docs))
    for name in ("knooppunt.yaml", "connector.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    res = load_paths([tmp_path])
    with pytest.raises(StateError, match="alles-weten"):
        build_state(res, node=NODE, cache=ConnectorCache(config_map_root=tmp_path))


def test_mounted_configmap_layout_is_read_once(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as `..<timestamp>/file` plus visible links to it."""
    hidden = tmp_path / "..2026_11_29_12_00_00.123"
    hidden.mkdir()
    for name in ("knooppunt.yaml", "connector.yaml", "gemeenten.yaml"):
        (hidden / name).write_text((EXAMPLES / name).read_text())
        (tmp_path / name).symlink_to(Path("..data") / name)
    (tmp_path / "..data").symlink_to(hidden.name)
    res = load_paths([tmp_path])
    assert set(res.knooppunten) == {NODE} and len(res.gemeenten) == 4
