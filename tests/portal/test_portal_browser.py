"""The gemeente portal in a real browser: Debian's Chromium driven by Playwright.

Each gemeente signs in with its own client certificate (Playwright presents it in the TLS
handshake, as a browser with the certificate installed does). Checked: each sees only its own
data; message detail and acknowledgement; a citizen search of the processing log (BSN in the
POST body only) with CSV and JSON export; the charts' numbers; the virtual register; an
axe-core scan of every page with no serious or critical violation. Screenshots of each page go
to docs/portal/ when KNOOPPUNT_PORTAL_SCREENSHOTS=docs (how docs/portal.md's were made).

The tests share one world and one browser (starting them is the slow part) and run in file
order: the mailbox is looked at before a message in it is acknowledged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.facade.conftest import NODE_A, NODE_B, World
from tests.portal.conftest import IN_CI, REPO, assets_dir

pytestmark = pytest.mark.browser

INSTALL = REPO / "tests" / "portal" / "install-chromium.sh"
DOCS = REPO / "docs" / "portal"
AMSTERDAM_BSN = "999990019"  # a client in Zorggroep De Linde's WMO305 to Amsterdam
ROTTERDAM_BSN = "999990044"


def _chromium() -> str:
    result = subprocess.run(
        ["bash", str(INSTALL), "--path"], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        message = f"Chromium missing: run {INSTALL.relative_to(REPO)}"
        if IN_CI:
            pytest.fail(message + " (CI is set: required here)", pytrace=False)
        pytest.skip(message)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=_chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield b
        finally:
            b.close()


class Portal:
    """One gemeente's browser session (its own context, its own certificate)."""

    def __init__(
        self, browser: Any, world: World, cert: str, tmp: Path, *, bypass_csp: bool = False
    ) -> None:
        self.base = f"https://localhost:{world.facade.port}"
        paths = world.pki.clients[cert]
        self.context = browser.new_context(
            client_certificates=[
                {"origin": self.base, "certPath": str(paths.chain), "keyPath": str(paths.key)}
            ],
            ignore_https_errors=True,
            accept_downloads=True,
            locale="nl-NL",
            viewport={"width": 1280, "height": 900},
            bypass_csp=bypass_csp,
        )
        self.page = self.context.new_page()
        self.tmp = tmp

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        target = DOCS if os.environ.get("KNOOPPUNT_PORTAL_SCREENSHOTS") == "docs" else self.tmp
        target.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(target / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def portals(browser: Any, portal_world: World, shots: Path) -> Iterator[dict[str, Portal]]:
    made = {
        name: Portal(browser, portal_world, cert, shots)
        for name, cert in (
            ("amsterdam", "gemeente-amsterdam"),
            ("rotterdam", "gemeente-rotterdam"),
            ("provider", "zorggroep-de-linde"),
        )
    }
    try:
        yield made
    finally:
        for p in made.values():
            p.close()


def _rows(page: Any, testid: str) -> list[list[str]]:
    return [
        [c.strip() for c in row]
        for row in page.eval_on_selector_all(
            f'[data-testid="{testid}"] tbody tr',
            "rows => rows.map(r => Array.from(r.children).map(c => c.textContent))",
        )
    ]


def _log(world: World, cert: str, code: str, **params: str) -> list[dict[str, Any]]:
    got = world.at_facade(cert).get(
        f"/api/v1/gemeenten/{code}/processing-log", params={"limit": "1000", **params}
    )
    assert got.status_code == 200, got.text
    records: list[dict[str, Any]] = got.json()["records"]
    return records


def test_start_page(portals: dict[str, Portal]) -> None:
    ams = portals["amsterdam"]
    assert ams.go("/portaal/").status == 200
    # WMO305, WMO315 for two purposes (uitvoering and toewijzing), VS01
    assert ams.page.get_by_test_id("waiting").inner_text() == "4"
    ams.shot("overzicht")


def test_each_gemeente_sees_only_its_own_mailbox(portals: dict[str, Portal]) -> None:
    ams, rdam = portals["amsterdam"], portals["rotterdam"]
    assert ams.go("/portaal/postbus").status == 200
    assert ams.page.get_by_test_id("gemeente").inner_text() == "Gemeente Amsterdam"
    ams_rows = _rows(ams.page, "mailbox")
    assert sorted((r[1], r[2]) for r in ams_rows) == [
        ("VS01", "schuldhulp-vroegsignalering"),
        ("WMO305", "wmo-uitvoering"),
        ("WMO315", "wmo-toewijzing"),
        ("WMO315", "wmo-uitvoering"),
    ]
    ams.shot("postbus")
    # per node and connector: the counts, and the list narrowed to one of them
    assert _rows(ams.page, "mailbox-per") == [
        [NODE_B, "vroegsignalering-1-0", "1"],
        [NODE_A, "iwmo-2-1", "3"],
    ]
    ams.page.get_by_label("Connector").select_option("vroegsignalering-1-0")
    ams.page.get_by_role("button", name="Tonen").click()
    assert [(r[1], r[3], r[4]) for r in _rows(ams.page, "mailbox")] == [
        ("VS01", "vroegsignalering-1-0", NODE_B)
    ]
    link = ams.page.locator('[data-testid="mailbox"] a').first.get_attribute("href")
    assert rdam.go("/portaal/postbus").status == 200
    assert rdam.page.get_by_test_id("gemeente").inner_text() == "Gemeente Rotterdam"
    assert [r[1] for r in _rows(rdam.page, "mailbox")] == ["WMO305"]
    # Rotterdam following a link to one of Amsterdam's messages gets nothing
    refused = rdam.go(link)
    assert refused.status == 404
    assert AMSTERDAM_BSN not in rdam.page.content()
    # a sector party's valid certificate is not a gemeente: no portal
    provider = portals["provider"]
    assert provider.go("/portaal/").status == 403
    assert provider.page.get_by_test_id("refusal").is_visible()


def test_a_form_from_elsewhere_is_refused(portal_world: World) -> None:
    """The browser presents the certificate on any request: a cross-site POST is refused."""
    client = portal_world.at_facade("gemeente-amsterdam")
    form = {"bsn": AMSTERDAM_BSN, "reden": "inzageverzoek"}
    forged = client.post(
        "/portaal/verwerkingen/zoeken",
        data=form,
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://elders.example"},
    )
    assert forged.status_code == 403
    assert "Formulier niet aanvaard" in forged.text
    assert forged.headers["content-security-policy"].startswith("default-src 'none'")
    assert _log(portal_world, "gemeente-amsterdam", "0363", activity="consult") == []


def test_message_detail_shows_the_purposes_fields_and_is_acknowledged(
    portals: dict[str, Portal], portal_world: World
) -> None:
    ams = portals["amsterdam"]
    ams.go("/portaal/postbus")
    ams.page.locator('[data-testid="mailbox"] tr', has_text="WMO305").locator("a").click()
    assert ams.page.locator("h1").inner_text() == "Bericht WMO305"
    fields = dict(
        (r[0], r[1])
        for r in ams.page.eval_on_selector_all(
            '[data-testid="fields"] tbody tr',
            "rows => rows.map(r => [r.children[0].textContent, r.children[1].textContent])",
        )
    )
    assert fields["clienten 1.bsn"] == AMSTERDAM_BSN
    assert any(k.startswith("clienten 1.producten 1.") for k in fields)
    ams.shot("bericht")
    ams.page.get_by_role("button", name="Ontvangst bevestigen").click()
    assert "bevestigd=true" in ams.page.url
    assert ams.page.get_by_role("status").inner_text().startswith("Het bericht is bevestigd")
    assert "WMO305" not in [r[1] for r in _rows(ams.page, "mailbox")]
    # the view and the acknowledgement are processing-log records with the delivery's purpose
    log = _log(portal_world, "gemeente-amsterdam", "0363")
    read = [r for r in log if r["activity"] == "read" and r["messageType"] == "WMO305"]
    assert read and {r["purpose"] for r in read} == {"wmo-uitvoering"}
    assert any(r["activity"] == "acknowledge" for r in log)


def test_search_a_citizen_and_export(portals: dict[str, Portal], portal_world: World) -> None:
    ams = portals["amsterdam"]
    ams.go("/portaal/verwerkingen")
    ams.shot("verwerkingenlog")
    form = ams.page.get_by_test_id("search-form")
    form.get_by_label("Burgerservicenummer").fill(AMSTERDAM_BSN)
    form.get_by_label("Reden van deze raadpleging").select_option("inzageverzoek")
    form.get_by_role("button", name="Zoeken").click()
    assert AMSTERDAM_BSN not in ams.page.url  # the BSN went in the body only
    rows = _rows(ams.page, "records")
    activities = [r[1] for r in rows]
    assert "ontvangen" in activities and "gerouteerd" in activities
    assert all(r[6] in (NODE_A, NODE_B) for r in rows)
    ams.shot("verwerkingenlog-burger")

    def without_consults(records: list[dict[str, Any]], key: str) -> int:
        return len([r for r in records if r[key] != "consult"])

    # the export finds what the page showed (plus the records of the searches since)
    form = ams.page.get_by_test_id("search-form")
    with ams.page.expect_download() as got:
        form.get_by_role("button", name="Exporteren als CSV").click()
    exported = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert without_consults(exported, "activiteit") == len(rows)
    assert {r["activiteit"] for r in exported} >= {"receive", "route", "consult"}
    # one citizen: one pseudonym per node (each node has its own pseudonymisation key)
    refs = {r["knooppunt"]: r["betrokkene"] for r in exported}
    assert len({(r["knooppunt"], r["betrokkene"]) for r in exported}) == len(refs)

    with ams.page.expect_download() as got:
        form.get_by_role("button", name="Exporteren als JSON").click()
    body = json.loads(Path(got.value.path()).read_text())
    assert body["gemeentecode"] == "0363" and body["reden"] == "inzageverzoek"
    assert without_consults(body["records"], "activity") == len(rows)

    # each search and export is itself logged, with the chosen reason as purpose, by every
    # node the BSN was sent to (both serve Amsterdam)
    consults = _log(portal_world, "gemeente-amsterdam", "0363", purpose="inzageverzoek")
    assert len(consults) == 3 * 2
    assert {r["activity"] for r in consults} == {"consult"}
    assert {r["legalBasis"] for r in consults} == {"AVG art. 15 (recht van inzage)"}
    assert {r["detail"] for r in consults} == {
        "verwerkingenlog doorzocht in het portaal",
        "verwerkingenlog geëxporteerd als CSV",
        "verwerkingenlog geëxporteerd als JSON",
    }
    assert {r["subjectRef"] for r in consults} == set(refs.values())
    # Rotterdam's log knows nothing of Amsterdam's searches
    assert _log(portal_world, "gemeente-rotterdam", "0599", activity="consult") == []


def _bars(page: Any, title: str) -> dict[str, float]:
    return {
        b["label"]: float(b["value"])
        for b in page.eval_on_selector_all(
            f'svg[data-chart="{title}"] g.kp-chart__bar',
            "bars => bars.map(b => ({label: b.dataset.label, value: b.dataset.value}))",
        )
    }


def test_charts_render_with_the_right_numbers(
    portals: dict[str, Portal], portal_world: World
) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    ams, rdam = portals["amsterdam"], portals["rotterdam"]
    # the WMO315's two products opened two conversations; their term (shortened in this
    # world) passes while nobody answers
    node = portal_world.at_node(NODE_A, "gemeente-amsterdam")

    def overdue() -> int:
        got = node.get("/api/v1/gemeenten/0363/conversations", params={"state": "overdue"})
        return len(got.json()["items"])

    portal_world.wait_for(lambda: overdue() == 2)
    ams.go("/portaal/managementinformatie")
    assert _bars(ams.page, "Berichten per maand") == {month: 3}
    assert _bars(ams.page, "Berichten per berichttype") == {"VS01": 1, "WMO305": 1, "WMO315": 1}
    # senders: De Linde and Het Anker by AGB code, Ons Huis by its identifier
    senders = {"98000011": 1, "98000023": 1, "90000011": 1}
    assert _bars(ams.page, "Berichten per afzender") == senders
    assert dict(_rows(ams.page, "volume-senders")) == {k: str(v) for k, v in senders.items()}
    assert sorted(_rows(ams.page, "volumes")) == [
        [month, "VS01", "90000011", "1"],
        [month, "WMO305", "98000011", "1"],
        [month, "WMO315", "98000023", "1"],
    ]
    assert _rows(ams.page, "rejections-senders") == [
        [month, "0435", "participant:zorggroep-de-linde", "1"]
    ]
    assert _bars(ams.page, "Afwijzingen per retourcode") == {"0435": 1}
    # the numbers beside the chart say the same, and the chart is drawn (bars have width)
    assert _rows(ams.page, "volume-types") == [["VS01", "1"], ["WMO305", "1"], ["WMO315", "1"]]
    widths = ams.page.eval_on_selector_all(
        'svg[data-chart="Berichten per berichttype"] rect',
        "rects => rects.map(r => r.getBoundingClientRect().width)",
    )
    assert len(widths) == 3 and all(w > 50 for w in widths)
    # latency: of Amsterdam's four deliveries, the acknowledged ones are done (the WMO305,
    # when the detail test ran first)
    mailbox = portal_world.at_facade("gemeente-amsterdam").get(
        "/api/v1/gemeenten/0363/mailbox", params={"includeAcknowledged": "true"}
    )
    done = sum(1 for i in mailbox.json()["items"] if i.get("acknowledgedAt"))
    [latency] = _rows(ams.page, "latency")
    assert latency[:3] == [month, str(done), str(4 - done)]
    assert _rows(ams.page, "dead-letters") == [["Geen gegevens"]]
    # conversations: both items of the WMO315 are over their term, per conversation and sender
    assert _bars(ams.page, "Gesprekken per status") == {
        "binnen de termijn": 0,
        "over de termijn": 2,
        "op tijd beantwoord": 0,
        "te laat beantwoord": 0,
    }
    [[conversation, sender, count]] = _rows(ams.page, "overdue")
    assert (conversation, count) == ("verzoek-om-toewijzing", "2")
    ams.shot("managementinformatie")
    rdam.go("/portaal/managementinformatie")
    assert _bars(rdam.page, "Berichten per berichttype") == {"WMO305": 1}
    assert _bars(rdam.page, "Afwijzingen per retourcode") == {}
    assert _bars(rdam.page, "Gesprekken per status")["over de termijn"] == 0
    # the monthly report
    report = portal_world.at_facade("gemeente-amsterdam").get(
        "/portaal/managementinformatie/maandrapport.csv", params={"maand": month}
    )
    assert report.status_code == 200
    assert report.headers["content-disposition"].endswith(f'-0363-{month}.csv"')
    rows = list(csv.DictReader(io.StringIO(report.text)))
    what = "berichttype, retourcode of gesprek"
    volume = {r[what]: int(r["aantal"]) for r in rows if r["onderdeel"] == "volume"}
    assert volume == {"VS01": 1, "WMO305": 1, "WMO315": 1}
    assert [(r[what], r["aantal"]) for r in rows if r["onderdeel"] == "afwijzing"] == [
        ("0435", "1")
    ]
    assert [
        (r[what], r["afzender"], r["aantal"])
        for r in rows
        if r["onderdeel"] == "over de termijn (nu)"
    ] == [("verzoek-om-toewijzing", sender, "2")]


def test_virtual_register_per_citizen(portals: dict[str, Portal], portal_world: World) -> None:
    ams = portals["amsterdam"]
    ams.go("/portaal/register")
    form = ams.page.get_by_test_id("register-form")
    form.get_by_label("Burgerservicenummer").fill(AMSTERDAM_BSN)
    form.get_by_label("Doel van de raadpleging").select_option("wmo-uitvoering")
    form.get_by_role("button", name="Raadplegen").click()
    assert AMSTERDAM_BSN not in ams.page.url
    rows = _rows(ams.page, "register")
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("Actief", "01A02 (categorie 01)", "98000011", "2016-09-01"),
        ("Actief", "03A01 (categorie 03)", "98000011", "2016-09-05"),
    ]
    ams.shot("register")
    # each row points to the message it came from
    ams.page.locator('[data-testid="register"] a').first.click()
    assert ams.page.locator("h1").inner_text() == "Bericht WMO305"
    [consult] = _log(
        portal_world, "gemeente-amsterdam", "0363", purpose="wmo-uitvoering", activity="consult"
    )
    assert consult["legalBasis"] == "Wmo 2015 art. 5.1.1 jo. art. 2.3.5"
    assert consult["detail"].startswith("virtueel register: 2 toewijzing(en)")
    # Rotterdam cannot see Amsterdam's citizen: the nodes answer for Rotterdam only
    rdam = portals["rotterdam"]
    rdam.go("/portaal/register")
    form = rdam.page.get_by_test_id("register-form")
    form.get_by_label("Burgerservicenummer").fill(AMSTERDAM_BSN)
    form.get_by_role("button", name="Raadplegen").click()
    assert _rows(rdam.page, "register") == [["Geen zorg gevonden voor deze burger."]]
    form = rdam.page.get_by_test_id("register-form")
    form.get_by_label("Burgerservicenummer").fill(ROTTERDAM_BSN)
    form.get_by_role("button", name="Raadplegen").click()
    assert [r[0] for r in _rows(rdam.page, "register")] == ["Actief"]


PAGES = [
    "/portaal/",
    "/portaal/postbus?alles=true",
    "/portaal/verwerkingen",
    "/portaal/managementinformatie",
    "/portaal/register",
]
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def test_no_serious_accessibility_violations(
    browser: Any, portal_world: World, shots: Path
) -> None:
    axe = (assets_dir() / "axe" / "axe.min.js").read_text()
    # axe is injected as a script: this context lets it past the portal's CSP (only here)
    scan = Portal(browser, portal_world, "gemeente-amsterdam", shots, bypass_csp=True)
    try:
        found: dict[str, list[str]] = {}
        item = None

        def check(path: str) -> None:
            scan.page.add_script_tag(content=axe)
            result = scan.page.evaluate(
                "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG
            )
            assert result["passes"], path
            serious = [
                f"{v['id']} ({v['impact']}): {v['help']}"
                for v in result["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            if serious:
                found[path] = serious

        for path in PAGES:
            scan.go(path)
            if path.startswith("/portaal/postbus"):
                item = scan.page.locator('[data-testid="mailbox"] a').first.get_attribute("href")
            check(path)
        # the pages after a search: the citizen's log and the register's rows
        scan.go("/portaal/verwerkingen")
        form = scan.page.get_by_test_id("search-form")
        form.get_by_label("Burgerservicenummer").fill(AMSTERDAM_BSN)
        form.get_by_label("Reden van deze raadpleging").select_option("interne-controle")
        form.get_by_role("button", name="Zoeken").click()
        check("verwerkingenlog van een burger")
        scan.go("/portaal/register")
        form = scan.page.get_by_test_id("register-form")
        form.get_by_label("Burgerservicenummer").fill(AMSTERDAM_BSN)
        form.get_by_role("button", name="Raadplegen").click()
        check("register van een burger")
        assert item is not None
        scan.go(item)
        check(item)
        assert not found, found
        # the pages are in Dutch and keyboard-reachable: the skip link comes first
        assert scan.page.evaluate("document.documentElement.lang") == "nl"
        scan.page.keyboard.press("Tab")
        assert scan.page.evaluate("document.activeElement.textContent") == "Direct naar de inhoud"
    finally:
        scan.close()


def test_a_node_that_does_not_answer_is_named_not_hidden(portal_world: World) -> None:
    """Last in the module: it stops a node."""
    portal_world.stop_node(NODE_B)
    page = portal_world.at_facade("gemeente-amsterdam").get("/portaal/postbus")
    assert page.status_code == 200
    assert f"Niet volledig: {NODE_B} niet bereikbaar." in page.text
    assert "WMO315" in page.text  # what the other node holds is still shown
