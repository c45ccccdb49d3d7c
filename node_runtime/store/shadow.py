"""Shadow validation counts and examples in the database, so every replica of a node adds to
one result and any replica reports all of it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from node_runtime.store import schema
from node_runtime.store.sql import SqlStore

EVALUATED = ""


def record(
    store: SqlStore,
    connector: str,
    shadow_key: str,
    message_type: str,
    kind: str | None,
    example: dict[str, Any] | None,
    *,
    max_examples: int,
) -> None:
    """One evaluated message, with its difference (kind, example) if any, in one transaction."""
    insert = pg_insert if store.dialect == "postgresql" else sqlite_insert
    c, e = schema.shadow_counts, schema.shadow_examples
    with store.transaction() as conn:
        for k in [EVALUATED] + ([kind] if kind else []):
            stmt = insert(c).values(
                connector=connector,
                shadow_key=shadow_key,
                message_type=message_type,
                kind=k,
                count=1,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["connector", "shadow_key", "message_type", "kind"],
                    set_={"count": c.c.count + 1},
                )
            )
        if example is None:
            return
        text = json.dumps(example, sort_keys=True, separators=(",", ":"))
        have = conn.execute(
            select(func.count())
            .select_from(e)
            .where(e.c.connector == connector, e.c.shadow_key == shadow_key)
        ).scalar_one()
        if int(have) >= max_examples:
            return
        conn.execute(
            insert(e)
            .values(
                connector=connector,
                shadow_key=shadow_key,
                digest=hashlib.sha256(text.encode()).hexdigest(),
                example=text,
                recorded_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )


def report(store: SqlStore, connector: str, shadow_key: str) -> dict[str, Any]:
    c, e = schema.shadow_counts, schema.shadow_examples
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(c.c.message_type, c.c.kind, c.c.count).where(
                c.c.connector == connector, c.c.shadow_key == shadow_key
            )
        ).all()
        examples = (
            conn.execute(
                select(e.c.example)
                .where(e.c.connector == connector, e.c.shadow_key == shadow_key)
                .order_by(e.c.recorded_at, e.c.digest)
            )
            .scalars()
            .all()
        )
    messages = 0
    differences: dict[str, dict[str, int]] = {}
    for message_type, kind, count in rows:
        if kind == EVALUATED:
            messages += int(count)
        else:
            differences.setdefault(message_type, {})[kind] = int(count)
    return {
        "messages": messages,
        "differences": differences,
        "examples": [json.loads(x) for x in examples],
    }
