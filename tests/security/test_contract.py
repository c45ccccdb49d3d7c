"""The API contract holds (issue 19): schemathesis generates requests from the node's and the
façade's own OpenAPI documents and sends them over real mutual TLS, with a gemeente's and a
provider's certificate. Every answer must be documented: no server error, no undocumented
status code, no undocumented content type, no body that does not match its schema."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from node_runtime.api.server import RunningNode
from node_runtime.security.pki.store import DevPki
from tests.facade.conftest import World

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 25


def _session(pki: DevPki, name: str) -> requests.Session:
    paths = pki.store.paths(name)
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the dev PKI bundle
    session.cert = (str(paths.chain), str(paths.key))
    session.verify = str(pki.ca_bundle)
    return session


def _violations(
    spec: dict[str, Any], base_url: str, session: requests.Session, seen: Counter[int]
) -> list[str]:
    schema = schemathesis.openapi.from_dict(spec)
    found: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(
                base_url=base_url,
                session=session,
                timeout=30,
                verify=session.verify,
                cert=session.cert,
            )
            seen[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # one report for every failing operation
            found.append(f"{operation.label}: {exc}")
    return found


def _spec(base_url: str, session: requests.Session) -> dict[str, Any]:
    spec = session.get(f"{base_url}/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["mutualTLS"]["type"] == "mutualTLS"
    return spec


@pytest.mark.parametrize("certificate", ["gemeente-amsterdam", "zorggroep-de-linde"])
def test_node_answers_only_what_its_contract_documents(
    running_node: RunningNode, dev_pki: DevPki, certificate: str
) -> None:
    base_url = f"https://localhost:{running_node.port}"
    seen: Counter[int] = Counter()
    with _session(dev_pki, certificate) as session:
        violations = _violations(_spec(base_url, session), base_url, session, seen)
    assert violations == []
    assert sum(seen.values()) > 200 and any(s < 300 for s in seen), seen


@pytest.mark.parametrize("certificate", ["gemeente-amsterdam", "zorggroep-de-linde"])
def test_facade_answers_only_what_its_contract_documents(world: World, certificate: str) -> None:
    base_url = world.facade.url
    seen: Counter[int] = Counter()
    with _session(world.pki, certificate) as session:
        violations = _violations(_spec(base_url, session), base_url, session, seen)
    assert violations == []
    assert sum(seen.values()) > 100, seen


def test_every_operation_documents_problem_details(
    running_node: RunningNode, dev_pki: DevPki
) -> None:
    base_url = f"https://localhost:{running_node.port}"
    with _session(dev_pki, "gemeente-amsterdam") as session:
        spec = _spec(base_url, session)
    problem = spec["components"]["schemas"]["ProblemDetails"]
    assert "knooppunt" in problem["properties"]["type"]["pattern"]
    submit = spec["paths"]["/api/v1/connectors/{connector}/messages"]["post"]
    assert set(submit["requestBody"]["content"]) == {"application/xml", "text/xml"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "401" in codes, (method, path)
            assert (
                "422" not in codes
                or "application/problem+json" in operation["responses"]["422"]["content"]
            ), (method, path)
            for code, response in operation["responses"].items():
                if int(code) >= 400 and code != "503":
                    assert "application/problem+json" in response["content"], (method, path, code)
