"""The portal's calls to the nodes, acting for the signed-in gemeente (as the façade's API does).

Every call goes through the façade's node client: mutual TLS to the node plus a signed
acting-for assertion for exactly this gemeente, so a node answers with that gemeente's data
only, whatever the portal asks. What a node could not answer is reported, never hidden.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from node_runtime.facade.assembly import Facade
from node_runtime.facade.client import NodeOutcome
from node_runtime.facade.state import NodeEntry
from node_runtime.model.gemeente import Gemeente

JSON = {"content-type": "application/json"}


@dataclass
class Gathered:
    """Per node: its answer or why there is none."""

    answers: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def note(self, outcome: NodeOutcome) -> Any | None:
        if outcome.ok:
            try:
                body = outcome.json()
            except ValueError:
                self.missing[outcome.node] = "onleesbaar antwoord"
                return None
            self.answers[outcome.node] = body
            return body
        code = outcome.response.status_code if outcome.response is not None else None
        self.missing[outcome.node] = {
            "timeout": "gaf niet op tijd antwoord",
            "unavailable": "niet bereikbaar",
        }.get(outcome.status, f"antwoordde met een fout (HTTP {code})" if code else "gaf een fout")
        return None


class Nodes:
    def __init__(self, facade: Facade, gemeente: Gemeente) -> None:
        self.facade = facade
        self.gemeente = gemeente
        self.code = gemeente.spec.gemeentecode

    def serving(self) -> list[NodeEntry]:
        return self.facade.holder.current.nodes_for(self.gemeente)

    def entry(self, name: str) -> NodeEntry | None:
        return next((n for n in self.serving() if n.name == name), None)

    async def _each(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Gathered:
        gathered = Gathered()
        content = json.dumps(body).encode() if body is not None else None

        async def call(node: NodeEntry) -> NodeOutcome:
            return await self.facade.nodes.attempt(
                node,
                self.gemeente,
                method,
                path,
                params=params,
                content=content,
                headers={**(JSON if body is not None else {}), **(headers or {})},
            )

        for outcome in (await self.facade.nodes.fan_out(self.serving(), call)).values():
            gathered.note(outcome)
        return gathered

    # -- mailbox ---------------------------------------------------------------------------

    async def mailbox(
        self, *, include_acknowledged: bool, headers: dict[str, str]
    ) -> tuple[list[dict[str, Any]], Gathered]:
        got = await self._each(
            "GET",
            f"/api/v1/gemeenten/{self.code}/mailbox",
            params={
                "limit": "500",
                "includeAcknowledged": "true" if include_acknowledged else "false",
            },
            headers=headers,
        )
        items = [
            {**item, "node": name}
            for name, body in got.answers.items()
            for item in body.get("items", [])
        ]
        items.sort(key=lambda i: (i.get("createdAt") or "", i["node"]), reverse=True)
        return items, got

    async def message(self, node: NodeEntry, delivery: str, headers: dict[str, str]) -> NodeOutcome:
        return await self.facade.nodes.attempt(
            node,
            self.gemeente,
            "GET",
            f"/api/v1/gemeenten/{self.code}/mailbox/{delivery}",
            headers=headers,
            accept=lambda r: r.status_code == 200,
        )

    async def acknowledge(
        self, node: NodeEntry, delivery: str, headers: dict[str, str]
    ) -> NodeOutcome:
        return await self.facade.nodes.attempt(
            node,
            self.gemeente,
            "POST",
            f"/api/v1/gemeenten/{self.code}/mailbox/{delivery}/ack",
            headers=headers,
            accept=lambda r: r.status_code == 204,
        )

    # -- processing log --------------------------------------------------------------------

    async def log(
        self, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[list[dict[str, Any]], Gathered]:
        got = await self._each(
            "GET",
            f"/api/v1/gemeenten/{self.code}/processing-log",
            params={**params, "limit": "1000"},
            headers=headers,
        )
        return _records(got), got

    async def search(
        self,
        bsn: str,
        *,
        purpose: str | None,
        consultation: dict[str, str],
        headers: dict[str, str],
    ) -> tuple[list[dict[str, Any]], Gathered]:
        body: dict[str, Any] = {"bsn": bsn, "limit": 1000, "consultation": consultation}
        if purpose:
            body["purpose"] = purpose
        got = await self._each(
            "POST",
            f"/api/v1/gemeenten/{self.code}/processing-log/search",
            body=body,
            headers=headers,
        )
        return _records(got), got

    # -- management information and register -----------------------------------------------

    async def statistics(self, since: date, until: date, headers: dict[str, str]) -> Gathered:
        return await self._each(
            "GET",
            f"/api/v1/gemeenten/{self.code}/statistics",
            params={"since": since.isoformat(), "until": until.isoformat()},
            headers=headers,
        )

    async def register(
        self, bsn: str, purpose: str, headers: dict[str, str]
    ) -> tuple[list[dict[str, Any]], Gathered]:
        serving = {s.connector for s in self.gemeente.spec.subscriptions if s.purpose == purpose}
        gathered = Gathered()
        content = json.dumps({"bsn": bsn, "purpose": purpose}).encode()

        async def call(node: NodeEntry) -> NodeOutcome:
            return await self.facade.nodes.attempt(
                node,
                self.gemeente,
                "POST",
                f"/api/v1/gemeenten/{self.code}/register/search",
                content=content,
                headers={**JSON, **headers},
            )

        nodes = [n for n in self.serving() if serving & set(n.connectors)]
        for outcome in (await self.facade.nodes.fan_out(nodes, call)).values():
            gathered.note(outcome)
        rows = [
            {**row, "node": name}
            for name, body in gathered.answers.items()
            for row in body.get("assignments", [])
        ]
        return rows, gathered


def _records(got: Gathered) -> list[dict[str, Any]]:
    records = [
        {**r, "node": name} for name, body in got.answers.items() for r in body.get("records", [])
    ]
    records.sort(key=lambda r: r.get("timestamp") or "", reverse=True)
    return records


@dataclass
class Figures:
    """Management information merged over the nodes."""

    volumes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rejections: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)
    # (conversation, sender of the opener, state) → conversations in that state now
    conversations: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def per_month(self, counter: Counter[tuple[str, str, str]]) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (m, _, _), n in counter.items():
            out[m] += n
        return dict(sorted(out.items()))


def merge_statistics(got: Gathered) -> Figures:
    figures = Figures()
    for body in got.answers.values():
        for v in body.get("volumes", []):
            figures.volumes[(v["month"], v["messageType"], v["sender"])] += int(v["count"])
        for r in body.get("rejections", []):
            figures.rejections[(r["month"], r["retourcode"], r["sender"])] += int(r["count"])
        for d in body.get("deadLetters", []):
            figures.dead_letters[d["month"]] += int(d["count"])
        for c in body.get("conversations", []):
            figures.conversations[(c["conversation"], c["sender"], c["state"])] += int(c["count"])
        for lat in body.get("latency", []):
            month = figures.latency.setdefault(
                lat["month"],
                {"delivered": 0, "undelivered": 0, "p50Seconds": None, "p95Seconds": None},
            )
            month["delivered"] += int(lat["delivered"])
            month["undelivered"] += int(lat["undelivered"])
            # percentiles of different nodes do not add up: show the slowest node's
            for key in ("p50Seconds", "p95Seconds"):
                if lat.get(key) is not None:
                    month[key] = max(month[key] or 0.0, float(lat[key]))
    return figures
