"""The tamper-evident processing log: signed checkpoints and Merkle proofs.

A gemeente fetches the latest checkpoint (and keeps it), an inclusion proof for any record of
its own, and a consistency proof between two checkpoints it saw. Proofs carry hashes only: no
record of another gemeente is ever returned. Administrators verify the whole log.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from node_runtime.api.deps import NodeDep, PrincipalDep
from node_runtime.api.routes.admin import require_admin
from node_runtime.api.routes.processing_log import check_own_log
from node_runtime.ledger import merkle
from node_runtime.ledger.checkpoints import Checkpoint
from node_runtime.ledger.service import LedgerUnavailable
from node_runtime.ledger.tree import TreeError
from node_runtime.ledger.verification import verify
from node_runtime.node.assembly import Node
from node_runtime.store import log_tree
from node_runtime.web import contract
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["processing log"])
admin_router = APIRouter(
    prefix="/api/v1/admin", tags=["management"], dependencies=[Depends(require_admin)]
)

MAX_SIZE = 2**62  # far beyond any log; keeps numbers inside the database's integers


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _sign(node: Node) -> Checkpoint:
    try:
        return node.ledger.checkpoint()
    except LedgerUnavailable as exc:
        raise Problem(503, "no-checkpoint-signer", "Checkpoints unavailable", str(exc)) from exc
    except TreeError as exc:
        raise Problem(
            500,
            "log-tree-inconsistent",
            "Processing log fails verification",
            "The node refused to sign a checkpoint because its stored tree no "
            "longer matches an earlier checkpoint. The node's operator has been "
            "alerted.",
        ) from exc


async def _latest(node: Node) -> Checkpoint:
    latest = await asyncio.to_thread(node.ledger.tree.latest)
    return latest if latest is not None else await asyncio.to_thread(_sign, node)


@router.get(
    "/gemeenten/{gemeentecode}/processing-log/checkpoint",
    summary="The latest signed checkpoint (tree head) of the node's processing log",
    responses=contract.problem_responses(503),
)
async def latest_checkpoint(
    gemeentecode: str, node: NodeDep, principal: PrincipalDep
) -> dict[str, Any]:
    check_own_log(principal, gemeentecode)
    return (await _latest(node)).to_json()


@router.post(
    "/gemeenten/{gemeentecode}/processing-log/checkpoint",
    summary="Sign a checkpoint now (when the tree grew since the latest one)",
    responses=contract.problem_responses(503),
)
async def new_checkpoint(
    gemeentecode: str, node: NodeDep, principal: PrincipalDep
) -> dict[str, Any]:
    check_own_log(principal, gemeentecode)
    return (await asyncio.to_thread(_sign, node)).to_json()


@router.get(
    "/gemeenten/{gemeentecode}/processing-log/checkpoints/{tree_size}",
    summary="An earlier signed checkpoint, by tree size",
)
async def checkpoint_at(
    gemeentecode: str,
    tree_size: Annotated[int, Path(ge=0, le=MAX_SIZE)],
    node: NodeDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    check_own_log(principal, gemeentecode)
    cp = await asyncio.to_thread(node.ledger.tree.at, tree_size)
    if cp is None:
        raise Problem(
            404,
            "no-such-checkpoint",
            "No such checkpoint",
            f"The node signed no checkpoint of tree size {tree_size}.",
        )
    return cp.to_json()


@router.get(
    "/gemeenten/{gemeentecode}/processing-log/records/{record_id}/inclusion-proof",
    summary="Proof that one of the gemeente's records is in the signed tree",
    responses=contract.problem_responses(409, 503),
)
async def inclusion_proof(
    gemeentecode: str,
    record_id: str,
    node: NodeDep,
    principal: PrincipalDep,
    tree_size: Annotated[
        int | None,
        Query(
            alias="treeSize",
            ge=1,
            le=MAX_SIZE,
            description=("Size of a signed checkpoint; default the latest"),
        ),
    ] = None,
) -> dict[str, Any]:
    check_own_log(principal, gemeentecode)
    controller = await asyncio.to_thread(log_tree.controller_of, node.store.engine, record_id)
    if controller != gemeentecode:  # someone else's record looks exactly like a missing one
        raise Problem(
            404,
            "no-such-record",
            "No such record",
            f"The processing log of {gemeentecode} holds no record {record_id}.",
        )
    cp = (
        await _latest(node)
        if tree_size is None
        else await asyncio.to_thread(node.ledger.tree.at, tree_size)
    )
    if cp is None:
        raise Problem(
            404,
            "no-such-checkpoint",
            "No such checkpoint",
            f"The node signed no checkpoint of tree size {tree_size}.",
        )
    proof = await asyncio.to_thread(node.ledger.tree.inclusion, record_id, cp.tree_size)
    if proof is None:
        raise Problem(
            409,
            "not-yet-checkpointed",
            "Record not yet in a checkpoint",
            f"Record {record_id} came after the checkpoint of size {cp.tree_size}; "
            "request a new checkpoint (POST …/processing-log/checkpoint).",
        )
    return {
        "recordId": record_id,
        "leafIndex": proof.leaf_index,
        "treeSize": proof.tree_size,
        "leafHash": b64(proof.leaf_hash),
        "auditPath": [b64(h) for h in proof.path],
        "checkpoint": cp.to_json(),
    }


@router.get(
    "/gemeenten/{gemeentecode}/processing-log/consistency-proof",
    summary="Proof that a later checkpoint extends an earlier one (nothing rewritten)",
)
async def consistency_proof(
    gemeentecode: str,
    node: NodeDep,
    principal: PrincipalDep,
    first: Annotated[int, Query(alias="from", ge=0, le=MAX_SIZE, description="Earlier tree size")],
    second: Annotated[int, Query(alias="to", ge=0, le=MAX_SIZE, description="Later tree size")],
) -> dict[str, Any]:
    check_own_log(principal, gemeentecode)
    if first > second:
        raise Problem(
            400, "invalid-tree-sizes", "Invalid tree sizes", "`from` must not be larger than `to`."
        )
    later = await asyncio.to_thread(node.ledger.tree.at, second)
    if later is None:
        raise Problem(
            404,
            "no-such-checkpoint",
            "No such checkpoint",
            f"The node signed no checkpoint of tree size {second}.",
        )
    try:
        path = await asyncio.to_thread(node.ledger.tree.consistency, first, second)
    except merkle.ProofError as exc:
        raise Problem(400, "invalid-tree-sizes", "Invalid tree sizes", str(exc)) from exc
    return {
        "from": first,
        "to": second,
        "proof": [b64(h) for h in path],
        "checkpoint": later.to_json(),
    }


@admin_router.post(
    "/processing-log/verify", summary="Recompute the processing log's tree and check every record"
)
async def verify_log(node: NodeDep) -> dict[str, Any]:
    report = await asyncio.to_thread(verify, node.store.engine)
    return report.to_json()


@admin_router.post(
    "/processing-log/checkpoint",
    summary="Sign a checkpoint now",
    responses=contract.problem_responses(503),
)
async def admin_checkpoint(node: NodeDep) -> dict[str, Any]:
    return (await asyncio.to_thread(_sign, node)).to_json()
