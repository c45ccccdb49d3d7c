"""CRDs are generated from the typed model; any drift between crds/ and the model fails here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from knooppunt_operator import crdgen

from node_runtime.model import connector, gemeente, knooppunt

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


def load(plural: str) -> dict[str, Any]:
    return dict(yaml.safe_load((CRDS / f"knooppunt.nl_{plural}.yaml").read_text()))


def schema(plural: str) -> dict[str, Any]:
    return dict(load(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "type" in node or "x-kubernetes-preserve-unknown-fields" in node:
            yield path, node
        for key, value in node.items():
            if key in ("properties",):
                for name, sub in value.items():
                    yield from walk(sub, f"{path}.{name}")
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                yield from walk(value, f"{path}[]")


def test_crds_match_the_model(tmp_path: Path) -> None:
    """Regenerate into a temporary directory and compare with the committed files."""
    crdgen.main(["--out", str(tmp_path)])
    for name in crdgen.render_all():
        assert (tmp_path / name).read_text() == (CRDS / name).read_text(), (
            f"crds/{name} drifted from the model: run python -m knooppunt_operator.crdgen "
            "--out crds/"
        )
    assert crdgen.main(["--check", "--out", str(CRDS)]) == 0
    assert sorted(p.name for p in CRDS.glob("knooppunt.nl_*.yaml")) == sorted(crdgen.render_all())


def test_check_reports_drift(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    (tmp_path / "knooppunt.nl_gemeenten.yaml").write_text("# edited by hand\n")
    assert crdgen.drift(tmp_path) == ["knooppunt.nl_gemeenten.yaml"]
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("plural", ["knooppunten", "sectorconnectors", "gemeenten"])
def test_schemas_are_structural(plural: str) -> None:
    root = schema(plural)
    text = yaml.safe_dump(root)
    for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "title:", "const:", "$defs"):
        assert forbidden not in text, forbidden
    for path, node in walk(root["properties"]["spec"], ".spec"):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if node.get("type") == "object":
            assert node.get("additionalProperties") is not False, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path
    assert root["properties"]["spec"]["description"]


def test_names_short_names_category_status_and_columns() -> None:
    for plural, kind, short in [
        ("knooppunten", "Knooppunt", ["kp"]),
        ("sectorconnectors", "SectorConnector", ["sc", "connector"]),
        ("gemeenten", "Gemeente", ["gem"]),
    ]:
        crd = load(plural)
        assert crd["metadata"]["name"] == f"{plural}.knooppunt.nl"
        names = crd["spec"]["names"]
        assert names["kind"] == kind and names["plural"] == plural
        assert names["shortNames"] == short
        assert names["categories"] == ["knooppunt-nl"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert crd["spec"]["scope"] == "Namespaced"
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        assert columns[0] == "Ready" and columns[-1] == "Age"
    columns = {
        c["name"]: c for c in load("knooppunten")["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert set(columns) == {"Ready", "Version", "Gemeenten", "Connectors", "Age"}
    assert columns["Gemeenten"]["type"] == "integer"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_identifier_patterns_enums_and_defaults() -> None:
    g = schema("gemeenten")["properties"]["spec"]["properties"]
    assert g["oin"]["pattern"] == "^[0-9]{20}$"
    assert g["gemeentecode"]["pattern"] == "^[0-9]{4}$"
    assert g["subscriptions"]["items"]["properties"]["delivery"]["properties"]["mode"] == {
        "type": "string",
        "description": g["subscriptions"]["items"]["properties"]["delivery"]["properties"]["mode"][
            "description"
        ],
        "default": "pull",
        "enum": ["pull", "push"],
    }
    assert g["certificate"]["default"] == {}
    k = schema("knooppunten")["properties"]["spec"]["properties"]
    assert k["storage"]["properties"]["backend"]["enum"] == ["sqlite", "postgresql"]
    assert k["storage"]["default"] == {}
    assert k["replicas"]["minimum"] == 1 and k["replicas"]["maximum"] == 50
    assert k["security"]["properties"]["administrators"]["items"]["pattern"] == "^[0-9]{20}$"
    c = schema("sectorconnectors")["properties"]["spec"]
    rules = [v["rule"] for v in c["x-kubernetes-validations"]]
    assert any("^[0-9]{8}$" in r for r in rules), "AGB-codes are 8 digits"
    rule_kind = c["properties"]["messages"]["items"]["properties"]["rules"]["items"]
    assert rule_kind["properties"]["kind"]["enum"] == ["elfproef", "tenant", "participant", "xpath"]
    assert rule_kind["properties"]["retourcode"]["pattern"] == "^[0-9A-Z]{4}$"


def test_conditions_are_a_map_list_and_status_is_structured() -> None:
    for plural in ("knooppunten", "sectorconnectors", "gemeenten"):
        status = schema(plural)["properties"]["status"]
        conditions = status["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert set(conditions["items"]["required"]) == {
            "type",
            "status",
            "reason",
            "lastTransitionTime",
        }
        assert "observedGeneration" in status["properties"]


def _validated_models() -> list[type[Any]]:
    found = []
    for module in (connector, gemeente, knooppunt):
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                decorators = getattr(value, "__pydantic_decorators__", None)
                if decorators is not None and decorators.model_validators:
                    found.append(value)
    return found


def test_every_cross_field_validator_has_a_cel_rule_or_is_left_to_the_webhook() -> None:
    models = _validated_models()
    assert connector.BundleSource in models
    for model in models:
        assert model in crdgen.VALIDATIONS or model in crdgen.WEBHOOK_ONLY, (
            f"{model.__name__} validates across fields: add a CEL rule to crdgen.VALIDATIONS or "
            "explain in crdgen.WEBHOOK_ONLY why the admission webhook covers it"
        )


def test_cel_rules_land_on_their_models() -> None:
    c = schema("sectorconnectors")["properties"]["spec"]["properties"]
    bundle = c["bundle"]["x-kubernetes-validations"]
    assert bundle == [dict(r) for r in crdgen.VALIDATIONS[connector.BundleSource]]
    message = c["messages"]["items"]
    assert message["properties"]["conversion"]["x-kubernetes-validations"][0]["rule"] == (
        "has(self.mapping) != has(self.xslt)"
    )
    assert message["properties"]["rules"]["items"]["x-kubernetes-validations"][0]["rule"] == (
        "self.kind == 'xpath' ? has(self.test) : has(self.value)"
    )
    delivery = schema("gemeenten")["properties"]["spec"]["properties"]["subscriptions"]["items"][
        "properties"
    ]["delivery"]
    assert delivery["x-kubernetes-validations"][0]["rule"] == (
        "!has(self.mode) || self.mode != 'push' || has(self.endpoint)"
    )
    assert schema("knooppunten")["x-kubernetes-validations"][0]["rule"].startswith(
        "self.metadata.name.size() <= 50"
    )


def test_lists_under_cel_rules_are_bounded_and_the_examples_fit() -> None:
    c = schema("sectorconnectors")["properties"]["spec"]["properties"]
    assert c["messages"]["maxItems"] == 64
    assert c["messages"]["items"]["properties"]["rules"]["maxItems"] == 256
    assert c["participants"]["items"]["properties"]["identifiers"]["items"]["maxLength"] == 64
    example = next(yaml.safe_load_all((REPO / "examples/iwmo/connector.yaml").read_text()))
    assert len(example["spec"]["messages"]) <= 64
    assert all(len(m.get("rules", [])) <= 256 for m in example["spec"]["messages"])
    assert len(example["spec"]["participants"]) <= 5000


def test_the_model_refuses_what_the_crd_bounds_refuse() -> None:
    """The bounds come from the model: a resource read from a file is held to the same limits
    as one the API server admits (and their numbers are the CRD's)."""
    from pydantic import ValidationError

    spec = schema("gemeenten")["properties"]["spec"]["properties"]
    limit = spec["subscriptions"]["maxItems"]
    sub = {"connector": "iwmo-2-1", "purpose": "toewijzing", "legalBasis": "Wmo 2015"}
    base = {"gemeentecode": "0363", "oin": "0" * 20, "displayName": "Amsterdam"}
    subs = [{**sub, "connector": f"c{i}"} for i in range(limit + 1)]
    gemeente.GemeenteSpec.model_validate({**base, "subscriptions": subs[:limit]})
    with pytest.raises(ValidationError, match="at most 64 items"):
        gemeente.GemeenteSpec.model_validate({**base, "subscriptions": subs})
    with pytest.raises(ValidationError, match="at most 63 characters"):
        gemeente.Subscription.model_validate({**sub, "connector": "c" * 64})

    nodes = schema("knooppunten")["properties"]["spec"]["properties"]
    pins = [{"name": f"c{i}"} for i in range(nodes["connectors"]["maxItems"] + 1)]
    with pytest.raises(ValidationError, match="at most 32 items"):
        knooppunt.KnooppuntSpec.model_validate({"displayName": "Zorg", "connectors": pins})

    participant = {"name": "p", "displayName": "P", "certificate": {"subject": {"o": "P"}}}
    with pytest.raises(ValidationError, match="at most 8 items"):
        connector.Participant.model_validate({**participant, "identifiers": ["12345678"] * 9})
    with pytest.raises(ValidationError, match="should match pattern"):
        connector.Participant.model_validate({**participant, "identifiers": ["not an id!"]})
