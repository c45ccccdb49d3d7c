"""The command line: the README's demo, `validate`, and `serve` configured by environment."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import EXAMPLES, NODE, REPO, free_port

KNOOPPUNT = [sys.executable, "-m", "node_runtime.cli"]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run(
        [*KNOOPPUNT, "demo", "--dir", str(tmp_path / "demo"), "-f", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=True,
    ).stdout
    summary = re.search(
        r"Summary: accepted (\d+), rejected with retourcodes (\d+), refused with "
        r"problem details (\d+), delivered (\d+) \(pushed (\d+)",
        out,
    )
    assert summary, out
    accepted, rejected, refused, delivered, pushed = map(int, summary.groups())
    examples = len(list((EXAMPLES / "messages").glob("*.xml")))
    assert accepted == examples
    assert rejected >= 2 and refused >= 8
    assert pushed >= 1 and delivered >= accepted
    assert "0435" in out and "0018" in out and "dtd-forbidden" in out
    # no BSN of the example messages in what the demo prints
    bsns = set(
        re.findall(
            rb"Bsn>(\d{9})<",
            b"".join(p.read_bytes() for p in (EXAMPLES / "messages").glob("*.xml")),
        )
    )
    assert not any(b.decode() in out for b in bsns)


def test_validate_reports_broken_resources(tmp_path: Path) -> None:
    ok = subprocess.run(
        [*KNOOPPUNT, "validate", "-f", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0 and "iwmo-2-1" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "connector.yaml").read_text().replace("wmo305.xsd", "missing.xsd"))
    failed = subprocess.run(
        [*KNOOPPUNT, "validate", "-f", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 1 and "missing.xsd" in failed.stderr
    # a shadow release is compiled too, as the shadow worker will compile it
    doc = yaml.safe_load((EXAMPLES / "connector.yaml").read_text())
    messages = copy.deepcopy(doc["spec"]["messages"])
    doc["spec"]["shadow"] = {
        "standardVersion": "2.2",
        "bundle": {"builtin": "iwmo-2.1"},
        "messages": messages,
    }
    shadowed = tmp_path / "shadowed.yaml"
    shadowed.write_text(yaml.safe_dump(doc))
    ok = subprocess.run(
        [*KNOOPPUNT, "validate", "-f", str(shadowed)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0 and "shadow 2.2: WMO301" in ok.stdout, ok.stderr
    messages[1]["schema"] = "next-missing.xsd"
    shadowed.write_text(yaml.safe_dump(doc))
    failed = subprocess.run(
        [*KNOOPPUNT, "validate", "-f", str(shadowed)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 1 and "shadow: " in failed.stderr
    assert "next-missing.xsd" in failed.stderr


def test_serve_takes_its_settings_from_the_environment(tmp_path: Path, dev_pki: DevPki) -> None:
    port, health = free_port(), free_port()
    env = dict(
        os.environ,
        KNOOPPUNT_NODE=NODE,
        KNOOPPUNT_RESOURCES=f'["{EXAMPLES}"]',
        KNOOPPUNT_DATA_DIR=str(tmp_path),
        KNOOPPUNT_PORT=str(port),
        KNOOPPUNT_HEALTH_PORT=str(health),
        KNOOPPUNT_TLS_CERT=str(dev_pki.server.chain),
        KNOOPPUNT_TLS_KEY=str(dev_pki.server.key),
        KNOOPPUNT_TLS_TRUST=str(dev_pki.ca_bundle),
        KNOOPPUNT_TLS_CRL=str(dev_pki.crl),
    )
    proc = subprocess.Popen([*KNOOPPUNT, "serve", "--log-level", "WARNING"], env=env)
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready is not None and ready.json()["node"] == NODE
        # the plain port serves only health and metrics
        assert httpx.get(f"http://127.0.0.1:{health}/api/v1/catalogue").status_code == 404
        paths = dev_pki.clients["gemeente-utrecht"]
        with httpx.Client(verify=client_context(paths.chain, paths.key, dev_pki.ca_bundle)) as c:
            resp = c.get(f"https://localhost:{port}/api/v1/catalogue")
        assert resp.json()["principal"] == {"kind": "gemeente", "id": "0344"}
    finally:
        proc.terminate()
        proc.wait(20)
