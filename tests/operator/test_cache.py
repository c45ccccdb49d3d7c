"""The reconcilers' cache: kopf's index (the watch) and the operator's own writes since."""

from __future__ import annotations

from typing import Any

from knooppunt_operator import cache, kube


def secret(name: str, version: int, uid: str = "u1", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "zorg",
            "uid": uid,
            "resourceVersion": str(version),
            "labels": labels,
        },
        "data": {"v": str(version)},
    }


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[cache.Cache, dict[Any, list[dict[str, Any]]], Clock]:
    index: dict[Any, list[dict[str, Any]]] = {}
    clock = Clock()
    c = cache.Cache(clock=clock)
    c.attach(kube.SECRET, index)
    return c, index, clock


def watch(index: dict[Any, list[dict[str, Any]]], obj: dict[str, Any]) -> None:
    index.update({key: [value] for key, value in cache.index_body(obj).items()})


def test_reads_what_the_watch_delivered_as_copies() -> None:
    c, index, _ = make()
    watch(index, secret("a", 1))
    got = c.get(kube.SECRET, "zorg", "a")
    assert got is not None and got["data"] == {"v": "1"}
    got["data"]["v"] = "changed"
    assert c.get(kube.SECRET, "zorg", "a")["data"] == {"v": "1"}  # type: ignore[index]
    assert c.get(kube.SECRET, "zorg", "b") is None
    assert c.get(kube.SECRET, "elders", "a") is None
    assert not c.holds(kube.CONFIG_MAP)


def test_own_write_is_read_until_the_watch_catches_up() -> None:
    c, index, _ = make()
    watch(index, secret("a", 1))
    c.wrote(secret("a", 5))
    assert c.get(kube.SECRET, "zorg", "a")["data"] == {"v": "5"}  # type: ignore[index]
    assert c.pending == 1
    watch(index, secret("a", 5))
    assert c.get(kube.SECRET, "zorg", "a")["data"] == {"v": "5"}  # type: ignore[index]
    assert c.pending == 0
    watch(index, secret("a", 7))  # someone else changed it since
    assert c.get(kube.SECRET, "zorg", "a")["data"] == {"v": "7"}  # type: ignore[index]


def test_created_object_is_listed_before_the_watch_delivers_it() -> None:
    c, index, _ = make()
    watch(index, secret("a", 1, component="ca"))
    c.wrote(secret("b", 2, uid="u2", component="tls"))
    assert [s["metadata"]["name"] for s in c.list(kube.SECRET, "zorg")] == ["a", "b"]
    assert [
        s["metadata"]["name"] for s in c.list(kube.SECRET, "zorg", labels={"component": "tls"})
    ] == ["b"]


def test_deleted_object_is_gone_at_once_and_a_new_one_shows() -> None:
    c, index, _ = make()
    watch(index, secret("a", 1))
    c.deleted(kube.SECRET, "zorg", "a")
    assert c.get(kube.SECRET, "zorg", "a") is None
    assert c.list(kube.SECRET, "zorg") == []
    watch(index, secret("a", 9, uid="u-new"))  # created again by someone
    assert c.get(kube.SECRET, "zorg", "a")["metadata"]["uid"] == "u-new"  # type: ignore[index]


def test_a_written_copy_never_hides_a_deletion_for_long() -> None:
    c, index, clock = make()
    watch(index, secret("a", 1))
    c.wrote(secret("a", 5))
    index.clear()  # deleted by someone, the watch said so before the write's event came
    assert c.get(kube.SECRET, "zorg", "a") is not None
    clock.now += cache.WRITTEN_TTL + 1
    assert c.get(kube.SECRET, "zorg", "a") is None
    c.wrote(secret("a", 6))
    c.forget(kube.SECRET, "zorg", "a")  # the operator saw the DELETED event
    assert c.get(kube.SECRET, "zorg", "a") is None


def test_writes_of_kinds_it_does_not_hold_are_ignored() -> None:
    c, _, _ = make()
    c.wrote({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "z"}})
    c.wrote(None)
    assert c.pending == 0
