"""The apply primitive: created / patched / unchanged / deleted, against the API emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
import pytest_asyncio
from knooppunt_operator import apply, kube

from tests.operator.emulator import ApiEmulator


@pytest_asyncio.fixture()
async def client() -> AsyncIterator[kube.KubeClient]:
    async with ApiEmulator() as emu, kmock.Server(emu):
        async with kube.KubeClient(kube.Credentials(server=str(emu.url).rstrip("/"))) as c:
            yield c


def config_map(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "zorg", "labels": {"app": "x"}},
        "data": dict(data),
    }


@pytest.mark.asyncio
async def test_create_patch_unchanged_delete(client: kube.KubeClient) -> None:
    created = await apply.apply(client, config_map(a="1"))
    assert created.result is apply.ApplyResult.CREATED
    assert str(created) == "created ConfigMap/settings"
    stored = await client.get(kube.CONFIG_MAP, "zorg", "settings")
    assert stored is not None
    assert stored["data"] == {"a": "1"}
    assert stored["metadata"]["annotations"][apply.APPLIED_HASH] == apply.desired_hash(
        config_map(a="1")
    )

    again = await apply.apply(client, config_map(a="1"))
    assert again.result is apply.ApplyResult.UNCHANGED and not again.result.changed

    changed = await apply.apply(client, config_map(b="2"))
    assert changed.result is apply.ApplyResult.PATCHED
    stored = await client.get(kube.CONFIG_MAP, "zorg", "settings")
    assert stored is not None and stored["data"] == {"b": "2"}, "a field no longer declared goes"

    ref = apply.ObjectRef(kube.CONFIG_MAP, "zorg", "settings")
    gone = await apply.apply(client, None, ref=ref)
    assert gone.result is apply.ApplyResult.DELETED
    assert await client.get(kube.CONFIG_MAP, "zorg", "settings") is None
    absent = await apply.apply(client, None, ref=ref)
    assert absent.result is apply.ApplyResult.UNCHANGED


@pytest.mark.asyncio
async def test_drift_made_by_someone_else_is_put_right(client: kube.KubeClient) -> None:
    await apply.apply(client, config_map(a="1"))
    await client.merge_patch(kube.CONFIG_MAP, "zorg", "settings", {"data": {"a": "edited"}})
    fixed = await apply.apply(client, config_map(a="1"))
    assert fixed.result is apply.ApplyResult.PATCHED
    stored = await client.get(kube.CONFIG_MAP, "zorg", "settings")
    assert stored is not None and stored["data"] == {"a": "1"}


@pytest.mark.asyncio
async def test_fields_added_by_the_server_are_not_drift(client: kube.KubeClient) -> None:
    await apply.apply(client, config_map(a="1"))
    await client.merge_patch(
        kube.CONFIG_MAP, "zorg", "settings", {"metadata": {"labels": {"added-by": "someone"}}}
    )
    assert (await apply.apply(client, config_map(a="1"))).result is apply.ApplyResult.UNCHANGED


def test_contains_compares_lists_item_by_item() -> None:
    assert apply.contains({"a": [{"x": 1, "y": 2}], "b": 3}, {"a": [{"x": 1}]})
    assert not apply.contains({"a": [{"x": 1}, {"x": 2}]}, {"a": [{"x": 1}]})
    assert not apply.contains({"a": {"x": 1}}, {"a": {"x": 2}})
    assert not apply.contains({}, {"a": None})


def test_hash_ignores_its_own_annotation() -> None:
    body = config_map(a="1")
    assert apply.desired_hash(apply.stamped(body)) == apply.desired_hash(body)


@pytest.mark.asyncio
async def test_apply_none_needs_a_ref() -> None:
    with pytest.raises(ValueError, match="ref="):
        await apply.apply(None, None)  # type: ignore[arg-type]
