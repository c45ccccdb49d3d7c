"""How outcomes differ (paths and codes only), and one result for all replicas of a node."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from node_runtime.shadow.differences import compare
from node_runtime.shadow.evaluation import Outcome, flatten
from node_runtime.shadow.runner import example
from node_runtime.store import shadow as shadow_store
from node_runtime.store.sql import SqlStore, sqlite_url


def test_flatten_folds_nothing_and_keeps_every_leaf() -> None:
    assert flatten({"a": {"b": [{"c": 1}, {"c": 2, "d": None}]}, "e": "x"}) == {
        "a.b[0].c": 1,
        "a.b[1].c": 2,
        "a.b[1].d": None,
        "e": "x",
    }


def test_kinds() -> None:
    ok = Outcome("WMO305", True, (), {"x[0].code": "01A01", "x[1].code": "02", "n": 1})
    assert compare(ok, ok) is None
    rejected = Outcome("WMO305", False, (("0435", "/a[1]"),))
    assert compare(ok, rejected).kind == "would-be-rejected"  # type: ignore[union-attr]
    assert compare(rejected, ok).kind == "would-be-accepted"  # type: ignore[union-attr]
    assert compare(rejected, rejected) is None
    other = Outcome("WMO305", False, (("0435", "/a[1]"), ("8190", "/a[2]")))
    assert compare(rejected, other).kind == "other-retourcodes"  # type: ignore[union-attr]
    renamed = Outcome(
        "WMO305", True, (), {"x[0].productcode": "01A01", "x[1].productcode": "02", "n": 2}
    )
    diff = compare(ok, renamed)
    assert diff is not None and example(diff) == {
        "messageType": "WMO305",
        "kind": "different-fields",
        "missingFields": ["x[].code"],
        "addedFields": ["x[].productcode"],
        "changedFields": ["n"],
    }
    assert "01A01" not in repr(example(diff))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replicas_add_to_one_result(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        sqlite_url(tmp_path / "k.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgresql_url")
    )
    replicas = [SqlStore(url), SqlStore(url)]
    for r in replicas:
        r.migrate()
    ex = {
        "messageType": "WMO305",
        "kind": "would-be-rejected",
        "retourcodes": [{"code": "8190", "path": "/a"}],
    }

    def work(store: SqlStore) -> None:
        for i in range(20):
            kind = "would-be-rejected" if i % 4 == 0 else None
            shadow_store.record(
                store, "c", "k", "WMO305", kind, ex if kind else None, max_examples=10
            )

    threads = [threading.Thread(target=work, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert shadow_store.report(replicas[1], "c", "k") == {
            "messages": 40,
            "differences": {"WMO305": {"would-be-rejected": 10}},
            "examples": [ex],
        }
        assert shadow_store.report(replicas[0], "c", "other")["messages"] == 0
    finally:
        for r in replicas:
            r.close()
