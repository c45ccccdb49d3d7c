"""A gemeente can never see or act on another gemeente's data through the façade, and a node
believes a façade only with a valid, fresh, unreplayed assertion for exactly that request, signed
with the key of the certificate the façade presented in the TLS handshake."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from node_runtime.security.acting_for import HEADER, AssertionSigner
from node_runtime.security.pki.store import DevPki
from tests.facade.conftest import (
    BY_CODE,
    IWMO,
    IWMO_MESSAGES,
    NODE_A,
    NODE_B,
    VS,
    VS_MESSAGES,
    XML,
    World,
    build_world,
)

MAILBOX = "/api/v1/gemeenten/0363/mailbox"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, facade_pki: DevPki) -> Iterator[World]:
    """One world for the read-only checks of this module."""
    w = build_world(tmp_path_factory.mktemp("isolation"), facade_pki)
    w.send(NODE_A, "zorggroep-de-linde", IWMO_MESSAGES / "wmo305-linde-amsterdam.xml", IWMO)
    w.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo305-anker-rotterdam.xml", IWMO)
    w.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo315-anker-amsterdam.xml", IWMO)
    w.send(NODE_B, "woningcorporatie-ons-huis", VS_MESSAGES / "vs01-onshuis-amsterdam.xml", VS)
    w.send(NODE_B, "energie-noord", VS_MESSAGES / "vs01-energienoord-rotterdam.xml", VS)
    try:
        yield w
    finally:
        w.close()
        w.facade.stop()
        for running in list(w.nodes.values()):
            running.stop()


def signer(pki: DevPki, name: str) -> AssertionSigner:
    paths = pki.clients[name]
    key = load_pem_private_key(paths.key.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificates(paths.chain.read_bytes())[0]
    return AssertionSigner(key, cert)  # type: ignore[arg-type]


def assertion(
    pki: DevPki,
    *,
    by: str = "facade",
    code: str = "0363",
    audience: str = NODE_A,
    method: str = "GET",
    path: str = MAILBOX,
    **kwargs: Any,
) -> str:
    g = BY_CODE[code]
    return signer(pki, by).sign(
        gemeente_oin=kwargs.pop("oin", g.oin),
        gemeentecode=kwargs.pop("gemeentecode", code),
        audience=audience,
        method=method,
        path=path,
        **kwargs,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    h, p, s = token.split(".")
    pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(h))),
        json.loads(base64.urlsafe_b64decode(pad(p))),
        s,
    )


def _problem(resp: httpx.Response) -> str:
    return str(resp.json()["type"]).rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- through the façade


def _items(world: World, cert: str, code: str) -> list[dict[str, Any]]:
    resp = world.at_facade(cert).get(f"/api/v1/gemeenten/{code}/mailbox")
    assert resp.status_code == 200
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def test_gemeente_sees_only_its_own_mailbox(shared: World) -> None:
    ams = _items(shared, "gemeente-amsterdam", "0363")
    rtd = _items(shared, "gemeente-rotterdam", "0599")
    assert ams and rtd
    assert not {i["id"] for i in ams} & {i["id"] for i in rtd}
    amsterdam = shared.at_facade("gemeente-amsterdam")
    rotterdam_item = rtd[0]["id"]
    # another gemeente's mailbox, message, acknowledgement, log and search: refused by the façade
    for method, path in (
        ("GET", "/api/v1/gemeenten/0599/mailbox"),
        ("GET", f"/api/v1/gemeenten/0599/mailbox/{rotterdam_item}"),
        ("POST", f"/api/v1/gemeenten/0599/mailbox/{rotterdam_item}/ack"),
        ("GET", "/api/v1/gemeenten/0599/processing-log"),
    ):
        resp = amsterdam.request(method, path)
        assert resp.status_code == 403, (method, path, resp.text)
    search = amsterdam.post(
        "/api/v1/gemeenten/0599/processing-log/search", json={"bsn": "999990044"}
    )
    assert search.status_code == 403
    # Rotterdam's item id under Amsterdam's own code: the node holds no such message for 0363
    for method, path in (
        ("GET", f"/api/v1/gemeenten/0363/mailbox/{rotterdam_item}"),
        ("POST", f"/api/v1/gemeenten/0363/mailbox/{rotterdam_item}/ack"),
    ):
        resp = amsterdam.request(method, path)
        assert resp.status_code == 404, resp.text
    # a node Amsterdam has no subscription on, or does not exist: no such message either
    utrecht = shared.at_facade("gemeente-utrecht")
    ams_vs = next(i["id"] for i in ams if i["node"] == NODE_B)
    assert utrecht.get(f"/api/v1/gemeenten/0344/mailbox/{ams_vs}").status_code == 404
    assert amsterdam.get("/api/v1/gemeenten/0363/mailbox/nowhere~abc").status_code == 404
    assert amsterdam.get("/api/v1/gemeenten/0363/mailbox/..~..").status_code == 404
    # nothing was acknowledged for Rotterdam along the way
    assert {i["id"] for i in _items(shared, "gemeente-rotterdam", "0599")} == {i["id"] for i in rtd}


def test_processing_log_only_own_records(shared: World) -> None:
    for cert, code in (("gemeente-amsterdam", "0363"), ("gemeente-rotterdam", "0599")):
        records = (
            shared.at_facade(cert)
            .get(f"/api/v1/gemeenten/{code}/processing-log", params={"limit": 1000})
            .json()["records"]
        )
        assert records and {r["controller"] for r in records} == {code}


def test_client_supplied_assertion_header_is_ignored(shared: World) -> None:
    """A gemeente cannot smuggle an acting-for header through the façade."""
    forged = assertion(shared.pki, code="0599", path="/api/v1/gemeenten/0599/mailbox")
    amsterdam = shared.at_facade("gemeente-amsterdam")
    resp = amsterdam.get("/api/v1/gemeenten/0599/mailbox", headers={HEADER: forged})
    assert resp.status_code == 403
    own = amsterdam.get(MAILBOX, headers={HEADER: forged})
    assert own.status_code == 200
    assert {i["id"] for i in own.json()["items"]} == {
        i["id"] for i in _items(shared, "gemeente-amsterdam", "0363")
    }


def test_outbound_sender_spoofing_is_refused(shared: World) -> None:
    """Amsterdam cannot send a WMO301 as Rotterdam through the façade."""
    body = (IWMO_MESSAGES / "wmo301-rotterdam-linde.xml").read_bytes()
    resp = shared.at_facade("gemeente-amsterdam").post(
        f"/api/v1/connectors/{IWMO}/messages", content=body, headers=XML
    )
    assert resp.status_code == 403 and _problem(resp) == "sender-mismatch"


def test_only_gemeenten_use_the_facade(shared: World) -> None:
    for cert in ("zorggroep-de-linde", "facade", "facade-unlisted"):
        resp = shared.at_facade(cert).get("/api/v1/catalogue")
        assert resp.status_code == 403 and _problem(resp) == "not-a-gemeente", cert


# --------------------------------------------------------------------------- at the node


def _node(world: World, cert: str = "facade") -> httpx.Client:
    return world.at_node(NODE_A, cert)


def test_node_accepts_a_valid_assertion(shared: World) -> None:
    resp = _node(shared).get(MAILBOX, headers={HEADER: assertion(shared.pki)})
    assert resp.status_code == 200
    direct = _node(shared, "gemeente-amsterdam").get(MAILBOX)
    assert {i["id"] for i in resp.json()["items"]} == {i["id"] for i in direct.json()["items"]}


def test_facade_certificate_without_assertion_is_refused(shared: World) -> None:
    resp = _node(shared).get(MAILBOX)
    assert resp.status_code == 403 and _problem(resp) == "assertion-required"


def _forged(pki: DevPki) -> dict[str, tuple[str, int, str]]:
    """name → (header value, expected status, expected problem)."""
    now = time.time()
    valid = assertion(pki)
    header, claims, signature = _parts(valid)
    tampered_claims = dict(claims, sub=BY_CODE["0599"].oin, gemeentecode="0599")
    tampered = ".".join(
        [valid.split(".")[0], _b64(json.dumps(tampered_claims).encode()), signature]
    )
    alg_none = ".".join(
        [_b64(json.dumps(dict(header, alg="none")).encode()), valid.split(".")[1], ""]
    )
    hs256 = ".".join(
        [_b64(json.dumps(dict(header, alg="HS256")).encode()), valid.split(".")[1], signature]
    )
    return {
        "tampered-payload": (tampered, 401, "assertion-invalid"),
        "alg-none": (alg_none, 401, "assertion-invalid"),
        "alg-hs256": (hs256, 401, "assertion-invalid"),
        "garbage": ("not.a.jws", 401, "assertion-invalid"),
        "expired": (assertion(pki, now=now - 120, lifetime=60), 401, "assertion-invalid"),
        "issued-in-future": (assertion(pki, now=now + 300), 401, "assertion-invalid"),
        "too-long-lived": (assertion(pki, lifetime=3600), 401, "assertion-invalid"),
        "wrong-audience": (assertion(pki, audience=NODE_B), 401, "assertion-invalid"),
        "other-endpoint": (
            assertion(pki, path="/api/v1/gemeenten/0363/processing-log"),
            401,
            "assertion-invalid",
        ),
        "other-method": (assertion(pki, method="POST"), 401, "assertion-invalid"),
        # minted by another (listed) façade: not the certificate of this connection
        "other-facade-key": (assertion(pki, by="facade-2"), 401, "assertion-invalid"),
        # signed by a gemeente's own key
        "gemeente-key": (assertion(pki, by="gemeente-amsterdam"), 401, "assertion-invalid"),
        "code-oin-mismatch": (assertion(pki, gemeentecode="0599"), 403, "unknown-organisation"),
        # 's-Gravenhage is not served by the iWmo node
        "gemeente-not-on-node": (
            assertion(pki, code="0518", path="/api/v1/gemeenten/0518/mailbox"),
            403,
            "unknown-organisation",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "tampered-payload",
        "alg-none",
        "alg-hs256",
        "garbage",
        "expired",
        "issued-in-future",
        "too-long-lived",
        "wrong-audience",
        "other-endpoint",
        "other-method",
        "other-facade-key",
        "gemeente-key",
        "code-oin-mismatch",
        "gemeente-not-on-node",
    ],
)
def test_node_refuses_bad_assertions(shared: World, case: str) -> None:
    value, status, problem = _forged(shared.pki)[case]
    path = "/api/v1/gemeenten/0518/mailbox" if case == "gemeente-not-on-node" else MAILBOX
    resp = _node(shared).get(path, headers={HEADER: value})
    assert resp.status_code == status, resp.text
    assert _problem(resp) == problem


def test_node_refuses_a_replayed_assertion(shared: World) -> None:
    value = assertion(shared.pki)
    client = _node(shared)
    assert client.get(MAILBOX, headers={HEADER: value}).status_code == 200
    again = client.get(MAILBOX, headers={HEADER: value})
    assert again.status_code == 401 and _problem(again) == "assertion-replayed"
    # also over a fresh connection
    fresh = shared.at_node(NODE_A, "facade").get(MAILBOX, headers={HEADER: value})
    assert fresh.status_code == 401 and _problem(fresh) == "assertion-replayed"


@pytest.mark.parametrize("cert", ["gemeente-amsterdam", "zorggroep-de-linde", "facade-unlisted"])
def test_assertion_from_a_non_facade_certificate_is_refused(shared: World, cert: str) -> None:
    """Even a perfectly signed assertion is refused from a certificate that is no façade."""
    value = assertion(shared.pki, by=cert if cert != "zorggroep-de-linde" else "facade")
    resp = _node(shared, cert).get(MAILBOX, headers={HEADER: value})
    assert resp.status_code == 403 and _problem(resp) == "not-a-facade"


def test_refusals_are_in_the_nodes_processing_log_without_gemeente_data(shared: World) -> None:
    resp = _node(shared).get(MAILBOX, headers={HEADER: "x.y.z"})
    assert resp.status_code == 401
    # the gemeente's own log is unaffected: a refused façade call produced no gemeente records
    records = (
        _node(shared, "gemeente-amsterdam")
        .get("/api/v1/gemeenten/0363/processing-log", params={"activity": "refuse"})
        .json()["records"]
    )
    assert records == []


def test_assertion_path_binding_uses_the_node_path(shared: World) -> None:
    """An assertion for one delivery cannot be used to acknowledge another."""
    items = _node(shared, "gemeente-amsterdam").get(MAILBOX).json()["items"]
    assert len(items) >= 2
    a, b = items[0]["id"], items[1]["id"]
    value = assertion(shared.pki, method="POST", path=f"{MAILBOX}/{a}/ack")
    resp = _node(shared).post(f"{MAILBOX}/{b}/ack", headers={HEADER: value})
    assert resp.status_code == 401
    still = _node(shared, "gemeente-amsterdam").get(MAILBOX).json()["items"]
    assert {i["id"] for i in still} == {i["id"] for i in items}


def test_trusted_proxy_mode_verifies_against_the_forwarded_certificate(world: World) -> None:
    """Behind a TLS-terminating proxy the assertion must match the forwarded (and verified)
    façade certificate, not the proxy's own connection."""
    from urllib.parse import quote

    world.write_knooppunt(
        NODE_A,
        security={
            "facadeOins": ["00000001999000000777"],
            "trustedProxies": [{"address": "127.0.0.1"}],
        },
    )
    proxy = world.at_node(NODE_A, "facade-unlisted")  # the proxy's own certificate
    forwarded = quote(
        world.pki.clients["facade"].chain.read_text().split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n"
    )

    def call(value: str) -> httpx.Response:
        return proxy.get(MAILBOX, headers={"x-ssl-client-cert": forwarded, HEADER: value})

    world.wait_for(lambda: call(assertion(world.pki)).status_code == 200)
    wrong_key = call(assertion(world.pki, by="facade-unlisted"))
    assert wrong_key.status_code == 401 and wrong_key.json()["reason"] == "certificate"
    without = proxy.get(MAILBOX, headers={"x-ssl-client-cert": forwarded})
    assert without.status_code == 403 and _problem(without) == "assertion-required"
