"""The local demo: a knooppunt on the embedded default, real iWmo messages, end to end.

Starts a node over mutual TLS on a loopback port (SQLite, development PKI), then acts as the
care providers and gemeenten: sends every example message, a set of hostile ones, lets each
gemeente pull its mailbox and shows what was accepted, rejected (with retourcodes), delivered
(only the fields its purpose allows) and logged.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from node_runtime.api.server import start_in_thread
from node_runtime.messages.doelbinding import paths_of
from node_runtime.model.loading import ResourceSet, load_paths
from node_runtime.node.config import Settings
from node_runtime.observability.logs import configure
from node_runtime.security.pki.development import ensure_for_resources, node_client_name
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context, server_context
from node_runtime.security.tls.uvicorn_protocol import run_in_thread, tls_config

DEMO_NODE_OIN = "00000001999000000111"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Party:
    name: str
    display: str
    client: httpx.Client


def _client(pki: DevPki, name: str, base_url: str) -> httpx.Client:
    paths = pki.clients[name]
    ctx = client_context(paths.chain, paths.key, pki.ca_bundle)
    return httpx.Client(base_url=base_url, verify=ctx, timeout=30)


def _header(xml: bytes) -> tuple[str, str, str]:
    root = etree.fromstring(xml)
    text = {etree.QName(e).localname: (e.text or "") for e in root.iter() if isinstance(e.tag, str)}
    return etree.QName(root).namespace or "", text.get("Afzender", ""), text.get("Ontvanger", "")


def _hostile(valid: bytes) -> list[tuple[str, bytes, str]]:
    """Hostile variants of a valid WMO305: (label, body, content type)."""
    original = valid.decode()
    text = re.sub(r"(<(\w+:)?Identificatie>)[^<]*(</)", r"\g<1>HOSTILE-ID\g<3>", original, count=1)
    bad_bsn = re.sub(
        r"<(\w+:)?Bsn>\d{9}</", lambda m: f"<{m.group(1) or ''}Bsn>123456789</", text, count=1
    )
    unknown_gemeente = re.sub(
        r"<(\w+:)?Ontvanger>\d{4}</",
        lambda m: f"<{m.group(1) or ''}Ontvanger>9999</",
        text,
        count=1,
    )
    same_id_other_content = re.sub(r"(<(\w+:)?Begindatum>)(\d{4})", r"\g<1>2099", original, count=1)
    xsd_invalid = re.sub(
        r"<(\w+:)?Geslacht>\d</", lambda m: f"<{m.group(1) or ''}Geslacht>7</", text, count=1
    )
    xxe = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;</l>'
    )
    return [
        ("BSN failing the 11-proof", bad_bsn.encode(), "application/xml"),
        ("unknown recipient gemeente 9999", unknown_gemeente.encode(), "application/xml"),
        ("XSD-invalid (Geslacht 7)", xsd_invalid.encode(), "application/xml"),
        ("truncated XML", valid[: len(valid) // 2], "application/xml"),
        ("XXE (external entity)", xxe.encode(), "application/xml"),
        ("billion laughs", laughs.encode(), "application/xml"),
        ("wrong content type", valid, "application/json"),
        ("unknown message type", b"<Bericht xmlns='urn:other'/>", "application/xml"),
        (
            "over the size limit (6 MiB)",
            b"<a>" + b"x" * (6 * 1024 * 1024) + b"</a>",
            "application/xml",
        ),
        ("same id, other content", same_id_other_content.encode(), "application/xml"),
    ]


def _summarise_answer(resp: httpx.Response) -> str:
    outcome = resp.headers.get("knooppunt-outcome", "?")
    if resp.headers.get("content-type", "").startswith("application/problem+json"):
        body = resp.json()
        first = body.get("errors", [{}])[0] if body.get("errors") else {}
        where = f" (line {first['line']})" if first.get("line") else ""
        return f"{resp.status_code} {outcome}: {body['type'].rsplit('/', 1)[-1]}{where}"
    codes = resp.headers.get("knooppunt-retourcodes")
    if resp.headers.get("content-type", "").startswith("application/xml"):
        root = etree.fromstring(resp.content)
        found = sorted(
            {
                (e.text or "")
                for e in root.iter()
                if isinstance(e.tag, str) and etree.QName(e).localname == "RetourCode"
            }
        )
        kind = etree.QName(root).namespace.rsplit("/", 3)[-3].upper() if root is not None else ""
        return (
            f"{resp.status_code} {outcome}: retour {kind} with retourcodes "
            f"{', '.join(found)}" + (f" (rejected for {codes})" if codes else "")
        )
    return f"{resp.status_code} {outcome}"


class _Endpoint:
    """A gemeente's own push endpoint (mTLS), applying each delivery once per idempotency key."""

    def __init__(self) -> None:
        self.applied: dict[str, dict[str, Any]] = {}
        self.received = 0

    async def __call__(self, request: Request) -> Response:
        self.received += 1
        document = json.loads(await request.body())
        if request.headers.get("content-type", "").startswith("application/cloudevents+json"):
            document = document["data"]  # a CloudEvent (NL GOV profile): the JSON is its data
        self.applied.setdefault(request.headers["idempotency-key"], document)
        return Response(status_code=204)


def _local_resources(
    resources: list[Path], workdir: Path, endpoint_url: str, node: str
) -> list[Path]:
    """A copy of the resources in which push subscriptions point at the local endpoint and
    the node has an OIN (so it gets a client certificate for pushing)."""
    target = workdir / "resources"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for source in resources:
        files = [source] if source.is_file() else sorted(source.glob("*.y*ml"))
        for f in files:
            docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
            for d in docs:
                if d.get("kind") == "Knooppunt" and d["metadata"]["name"] == node:
                    d["spec"].setdefault("oin", DEMO_NODE_OIN)
                for sub in (d.get("spec") or {}).get("subscriptions", []) or []:
                    if (sub.get("delivery") or {}).get("mode") == "push":
                        sub["delivery"]["endpoint"] = endpoint_url
            (target / f.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return [target]


def run_demo(*, resources: list[Path], workdir: Path, node: str | None = None) -> int:
    configure("WARNING")
    node = node or sorted(load_paths(resources).knooppunten)[0]
    if workdir.exists():
        shutil.rmtree(workdir / "data", ignore_errors=True)
    endpoint = _Endpoint()
    first_pki = ensure_for_resources(workdir / "pki", load_paths(resources), node)

    async def receive(request: Request) -> Response:
        return await endpoint(request)

    endpoint_app = Starlette(routes=[Route("/notificaties", receive, methods=["POST"])])
    endpoint_ctx = server_context(first_pki.server.chain, first_pki.server.key, first_pki.ca_bundle)
    endpoint_server = run_in_thread(
        tls_config(
            endpoint_app, ssl_context=endpoint_ctx, host="127.0.0.1", port=0, log_config=None
        )
    )
    running_endpoint = endpoint_server.__enter__()
    endpoint_url = f"https://localhost:{running_endpoint.port}/notificaties"
    local = _local_resources(resources, workdir, endpoint_url, node)
    res: ResourceSet = load_paths(local)
    pki = ensure_for_resources(workdir / "pki", res, node)
    own = pki.clients[node_client_name(node)]
    settings = Settings(
        node=node,
        resources=local,
        data_dir=workdir / "data",
        port=free_port(),
        tls_cert=pki.server.chain,
        tls_key=pki.server.key,
        tls_trust=pki.ca_bundle,
        tls_crl=pki.crl,
        delivery_cert=own.chain,
        delivery_key=own.key,
        # the demo's node lives in a thread of this script: its worker too (one process to
        # watch; `knooppunt up` and `serve` deliver from a process of their own)
        delivery_worker="inline",
    )
    running = start_in_thread(settings)
    base = f"https://localhost:{running.port}"
    print(f"== Knooppunt {node} serving on {base} (mutual TLS, SQLite in {workdir / 'data'})")
    print(f"   push subscriptions deliver to a local gemeente endpoint: {endpoint_url}")
    connector = sorted(running.node.holder.current.connectors)[0]
    by_identifier: dict[str, str] = {}
    for c in res.connectors.values():
        for p in c.spec.participants:
            for ident in p.identifiers:
                by_identifier[ident] = p.name
    for g in res.gemeenten.values():
        by_identifier[g.spec.gemeentecode] = g.name
    clients: dict[str, httpx.Client] = {}

    def client(name: str) -> httpx.Client:
        if name not in clients:
            clients[name] = _client(pki, name, base)
        return clients[name]

    stats = {"accepted": 0, "rejected": 0, "refused": 0, "delivered": 0, "logged": 0}
    try:
        messages = sorted(
            p for r in resources if r.is_dir() for p in (r / "messages").glob("*.xml")
        )
        print(f"\n== Sending {len(messages)} valid iWmo messages as their senders")
        wmo305: bytes | None = None
        for path in messages:
            body = path.read_bytes()
            _ns, sender, recipient = _header(body)
            party = by_identifier.get(sender)
            if party is None:
                print(f"  {path.name}: no certificate for sender {sender}; skipped")
                continue
            resp = client(party).post(
                f"/api/v1/connectors/{connector}/messages",
                content=body,
                headers={"content-type": "application/xml"},
            )
            stats[resp.headers.get("knooppunt-outcome", "refused")] = (
                stats.get(resp.headers.get("knooppunt-outcome", "refused"), 0) + 1
            )
            print(f"  {path.name:34} {sender} -> {recipient}: {_summarise_answer(resp)}")
            if "wmo305" in path.name and wmo305 is None:
                wmo305 = body
        if wmo305 is not None:
            _ns, sender, _r = _header(wmo305)
            sender_party = by_identifier[sender]
            again = client(sender_party).post(
                f"/api/v1/connectors/{connector}/messages",
                content=wmo305,
                headers={"content-type": "application/xml"},
            )
            print(
                f"  resent first WMO305 unchanged (idempotent): {_summarise_answer(again)}, "
                f"duplicate={again.headers.get('knooppunt-duplicate')}"
            )
            print("\n== Hostile and invalid messages (nothing of these is stored or delivered)")
            for label, body, ctype in _hostile(wmo305):
                resp = client(sender_party).post(
                    f"/api/v1/connectors/{connector}/messages",
                    content=body,
                    headers={"content-type": ctype},
                )
                outcome = resp.headers.get("knooppunt-outcome", "refused")
                stats[outcome] = stats.get(outcome, 0) + 1
                print(f"  {label:34} {_summarise_answer(resp)}")
            other = [
                p
                for p in by_identifier.values()
                if p != sender_party
                and p in {pp.name for c in res.connectors.values() for pp in c.spec.participants}
            ]
            if other:
                resp = client(other[0]).post(
                    f"/api/v1/connectors/{connector}/messages",
                    content=wmo305,
                    headers={"content-type": "application/xml"},
                )
                stats["refused"] += 1
                print(f"  {'spoofed Afzender (as ' + other[0] + ')':34} {_summarise_answer(resp)}")

        deadline = time.monotonic() + 10
        pushes = [
            d
            for g in res.gemeenten.values()
            for d in g.spec.subscriptions
            if d.delivery.mode == "push"
        ]
        while pushes and not endpoint.applied and time.monotonic() < deadline:
            time.sleep(0.1)
        print("\n== Push delivery (transactional outbox, mTLS, idempotency key, CloudEvents)")
        for key, env in endpoint.applied.items():
            k = env["kenmerken"]
            print(
                f"  {k['ontvanger']} endpoint applied {k['berichttype']}"
                f" for purpose {k['doel']} (Idempotency-Key {key[:8]}…)"
            )
        stats["delivered"] += len(endpoint.applied)

        print("\n== Each gemeente pulls its mailbox (only its purposes' fields are released)")
        for g in sorted(res.gemeenten.values(), key=lambda g: g.spec.gemeentecode):
            code = g.spec.gemeentecode
            gc = client(g.name)
            listing = gc.get(f"/api/v1/gemeenten/{code}/mailbox").json()
            print(f"  {g.spec.display_name} ({code}): {len(listing['items'])} message(s)")
            for item in listing["items"]:
                item_url = f"/api/v1/gemeenten/{code}/mailbox/{item['id']}"
                doc: dict[str, Any] = gc.get(item_url).json()
                fields = sorted(paths_of(doc["inhoud"]))
                leaves = [f for f in fields if not any(o.startswith(f + ".") for o in fields)]
                print(
                    f"    {item['messageType']} for purpose {item['purpose']}: "
                    f"{len(leaves)} field(s): {', '.join(leaves)}"
                )
                gc.post(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}/ack")
                stats["delivered"] += 1
            foreign = gc.get("/api/v1/gemeenten/0000/mailbox")
            print(
                f"    another gemeente's mailbox: {foreign.status_code} "
                f"{foreign.json().get('title', '')}"
            )
        for c_res in res.connectors.values():
            for p in c_res.spec.participants:
                if p.name not in pki.clients:
                    continue
                listing = client(p.name).get(f"/api/v1/participants/{p.name}/mailbox").json()
                if listing["items"]:
                    print(
                        f"  {p.display_name}: {len(listing['items'])} WMO301 toewijzing(en) "
                        "in its mailbox"
                    )

        print("\n== Processing log (verwerkingenlog), per gemeente")
        for g in sorted(res.gemeenten.values(), key=lambda g: g.spec.gemeentecode):
            code = g.spec.gemeentecode
            records = (
                client(g.name)
                .get(f"/api/v1/gemeenten/{code}/processing-log", params={"limit": 1000})
                .json()["records"]
            )
            stats["logged"] += len(records)
            per: dict[str, int] = {}
            for r in records:
                per[r["activity"]] = per.get(r["activity"], 0) + 1
            print(
                f"  {g.spec.display_name}: {len(records)} record(s) "
                + json.dumps(per, sort_keys=True)
            )
            if records:
                r = records[-1]
                print(
                    f"    e.g. {r['activity']} {r['messageType']} purpose={r['purpose']} "
                    f"subject={(r['subjectRef'] or '-')[:16]}… trace={r['traceId'][:8]}…"
                )
        print(
            f"\n== Summary: accepted {stats['accepted']}, rejected with retourcodes "
            f"{stats['rejected']}, refused with problem details {stats['refused']}, "
            f"delivered {stats['delivered']} (pushed {len(endpoint.applied)}, pulled and "
            f"acknowledged {stats['delivered'] - len(endpoint.applied)}), "
            f"log records {stats['logged']}"
        )
    finally:
        for open_client in clients.values():
            open_client.close()
        running.stop()
        endpoint_server.__exit__(None, None, None)
    return 0
