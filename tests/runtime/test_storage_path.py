"""spec.storage.sqlitePath of the Knooppunt decides the node's SQLite file (it was ignored: the
database was always <data-dir>/knooppunt.db)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from node_runtime.node.assembly import build_node
from node_runtime.node.config import Settings
from node_runtime.security.pki.store import DevPki
from tests.conftest import SQLITE_FILE, node_settings


def _set_sqlite_path(resource_dir: Path, value: str) -> None:
    path = resource_dir / "knooppunt.yaml"
    knooppunt = yaml.safe_load(path.read_text())
    knooppunt["spec"].setdefault("storage", {})["sqlitePath"] = value
    path.write_text(yaml.safe_dump(knooppunt))


def test_the_examples_sqlite_path_is_the_database(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki
) -> None:
    data = tmp_path / "data"
    node = build_node(node_settings(resource_dir, data, dev_pki), identity=lambda _r: None)
    try:
        assert node.store.ping()
    finally:
        node.store.close()
    assert (data / SQLITE_FILE).is_file()
    assert not (data / "knooppunt.db").exists()


def test_a_nested_sqlite_path_stays_in_the_data_dir(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki
) -> None:
    _set_sqlite_path(resource_dir, "db/node.sqlite")
    data = tmp_path / "data"
    node = build_node(node_settings(resource_dir, data, dev_pki), identity=lambda _r: None)
    node.store.close()
    assert (data / "db" / "node.sqlite").is_file()


@pytest.mark.parametrize("value", ["../outside.db", "/tmp/elsewhere.db", "a/../../b.db"])
def test_a_sqlite_path_outside_the_data_dir_is_refused(tmp_path: Path, value: str) -> None:
    settings = Settings(node="n", resources=[tmp_path], data_dir=tmp_path / "data")
    with pytest.raises(ValueError, match="relative to the data directory"):
        settings.sqlite_path(value)
