"""Continuous iWmo load through a node's Service while its pods come and go, and the
exactly-once check afterwards.

Each sender thread posts distinct WMO305 messages (own BerichtIdentificatie) for one gemeente
until stopped. A refused or reset connection, a timeout or a 502/503/504 is retried with the
*same* message until it is answered: the node deduplicates on the sender's identification,
so a message whose first answer was lost comes back as the same message id
(``Knooppunt-Duplicate: true``). Anything else (a 4xx, a 500) is an error that fails the test.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select

from node_runtime.model.loading import load_paths
from node_runtime.security.pki.store import DevPki
from node_runtime.store import schema
from tests.realpods import helpers
from tests.reliability.test_crash_safety import valid_bsns
from tests.runtime.helpers import bsns, header, replace_first, with_new_id
from tests.runtime.test_intake_e2e import sender_of

GEMEENTE = "0363"  # Amsterdam pulls its mailbox (no push endpoint to reach)
URL = f"/api/v1/connectors/{helpers.CONNECTOR}/messages"
RETRY_WITHIN = 180.0  # a message not accepted within this long is an error


class Load:
    """``senders`` threads posting through ``address:port`` until stopped; see the module."""

    def __init__(self, pki: DevPki, address: str, port: int, *, senders: int = 3) -> None:
        resources = load_paths([helpers.EXAMPLES])
        self.base = next(
            body
            for body in (p.read_bytes() for p in sorted(helpers.MESSAGES.glob("wmo305*.xml")))
            if header(body)["Ontvanger"] == GEMEENTE
        )
        self.sender = sender_of(resources, header(self.base)["Afzender"])
        self.parties = helpers.Parties(pki, address, port)
        # Distinct from every other client in the message: a BSN twice in one message is
        # rightly refused (retourcode 8376, client niet uniek in bestand).
        self.bsns = [b for b in valid_bsns(40) if b not in bsns(self.base)][:20]
        self.run = uuid.uuid4().hex[:6].upper()
        self.lock = threading.Lock()
        self.accepted: dict[str, str] = {}  # sender's identification -> node's message id
        self.duplicates = 0  # retried messages the node recognised
        self.outcomes: collections.Counter[str] = collections.Counter()  # per attempt
        self.last_failure = ""
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(senders)
        ]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=RETRY_WITHIN + 30)
        self.parties.close()

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def describe(self) -> str:
        with self.lock:
            return (
                f"{len(self.accepted)} accepted ({self.duplicates} recognised as duplicates), "
                f"attempts {dict(self.outcomes)}, last failure: {self.last_failure or '-'}"
            )

    async def wait(self, n: int, what: str, *, timeout: float = 240) -> None:
        """Until ``n`` messages are accepted; fails at once on a sender's error."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            assert not self.errors, f"{what}: {self.errors[:3]}; {self.describe()}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: fewer than {n} within {timeout:.0f} s; {self.describe()}"
                )
            await asyncio.sleep(0.2)

    def _attempt(self, outcome: str, failure: str = "") -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if failure:
                self.last_failure = failure

    def _run(self, worker: int) -> None:
        client = self.parties(self.sender)
        n = 0
        while not self.stop.is_set():
            n += 1
            ident = f"{self.run}{worker}{n:05d}"
            body = replace_first(
                with_new_id(self.base, ident), "Bsn", self.bsns[n % len(self.bsns)]
            )
            deadline = time.monotonic() + RETRY_WITHIN
            while True:
                try:
                    resp = client.post(
                        URL, content=body, headers={"content-type": "application/xml"}
                    )
                except httpx.TransportError as exc:
                    self._attempt(type(exc).__name__, repr(exc))
                else:
                    self._attempt(str(resp.status_code))
                    if resp.status_code == 202:
                        message_id = resp.headers["knooppunt-message-id"]
                        with self.lock:
                            earlier = self.accepted.setdefault(ident, message_id)
                            if resp.headers.get("knooppunt-duplicate") == "true":
                                self.duplicates += 1
                        if earlier != message_id:
                            self.errors.append(f"{ident}: two message ids {earlier}, {message_id}")
                        break
                    if resp.status_code not in (502, 503, 504):
                        self.errors.append(f"{ident}: {resp.status_code} {resp.text[:300]}")
                        return
                    self._attempt("retry", f"{resp.status_code} {resp.text[:200]}")
                if time.monotonic() > deadline:
                    self.errors.append(f"{ident}: not accepted within {RETRY_WITHIN:.0f} s")
                    return
                time.sleep(0.2)


def subscriptions_for_wmo305() -> int:
    resources = load_paths([helpers.EXAMPLES])
    connector = resources.connectors[helpers.CONNECTOR]
    purposes = {p.name: p for p in connector.spec.purposes}
    g = next(g for g in resources.gemeenten.values() if g.spec.gemeentecode == GEMEENTE)
    return len(
        [
            s
            for s in g.spec.subscriptions
            if "WMO305" in purposes[s.purpose].messages
            and (not s.messages or "WMO305" in s.messages)
        ]
    )


def assert_each_accepted_once(
    load: Load, database_url: str, mailbox: Callable[[], list[dict[str, Any]]]
) -> None:
    """Every accepted message stored once and delivered once per subscription; the gemeente
    pulls exactly those deliveries, each once."""
    assert not load.errors, load.errors
    accepted = set(load.accepted.values())
    assert len(accepted) == len(load.accepted), "two accepted messages share a message id"
    per_message = subscriptions_for_wmo305()
    assert per_message >= 1
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            m, d = schema.messages, schema.deliveries
            stored = {r.id for r in conn.execute(select(m.c.id))}
            rows = conn.execute(
                select(d.c.message_id, d.c.purpose, func.count())
                .where(d.c.mailbox_id == GEMEENTE)
                .group_by(d.c.message_id, d.c.purpose)
            ).all()
    finally:
        engine.dispose()
    assert accepted <= stored, f"accepted but not stored: {sorted(accepted - stored)[:5]}"
    assert stored == accepted, f"stored but never acknowledged: {len(stored - accepted)}"
    assert all(n == 1 for _, _, n in rows), "a message delivered twice for one purpose"
    delivered = collections.Counter(message_id for message_id, _, _ in rows)
    assert set(delivered) == accepted and set(delivered.values()) == {per_message}

    items = mailbox()
    assert len(items) == len(accepted) * per_message
    assert len({i["id"] for i in items}) == len(items), "a delivery listed twice"


def pull_mailbox(
    parties: helpers.Parties, name: str = "gemeente-amsterdam"
) -> list[dict[str, Any]]:
    """Every unacknowledged item of the gemeente's mailbox, page by page."""
    client = parties(name)
    items: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if after is not None:
            params["after"] = after
        r = client.get(f"/api/v1/gemeenten/{GEMEENTE}/mailbox", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        after = page.get("nextAfter")
        if after is None:
            return items
