"""DatabaseSecretReady: the DSN Secret of a PostgreSQL node exists and holds its key."""

from __future__ import annotations

from typing import Any

from knooppunt_operator import status
from knooppunt_operator.builders.secrets import b64
from knooppunt_operator.handlers import knooppunt

from node_runtime.model.knooppunt import Knooppunt
from tests.operator import scenarios

DSN = b"postgresql://knooppunt:s3cr3t-pw@db.example:5432/knooppunt"


def postgresql_node(key: str = "url") -> Knooppunt:
    body = scenarios.knooppunt_resource(
        storage={"backend": "postgresql", "postgresqlDsnSecret": {"name": "pg-dsn", "key": key}}
    )
    body["metadata"]["namespace"] = "zorg"
    return Knooppunt.model_validate(body)


def secret(**data: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pg-dsn", "namespace": "zorg"},
        "data": {k: b64(v) for k, v in data.items()},
    }


def test_a_missing_secret_is_named_with_its_key() -> None:
    cond = knooppunt.database_secret_condition(postgresql_node(), None)
    assert cond is not None
    assert (cond.type, cond.status, cond.reason) == (
        "DatabaseSecretReady",
        "False",
        "SecretNotFound",
    )
    assert "Secret 'pg-dsn' not found in namespace zorg" in cond.message
    assert "'url'" in cond.message


def test_a_secret_without_the_key_is_key_not_found_and_never_shows_a_value() -> None:
    cond = knooppunt.database_secret_condition(postgresql_node(), secret(dsn=DSN))
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", "KeyNotFound")
    assert "has no key 'url'" in cond.message
    assert "s3cr3t" not in cond.message and b64(DSN) not in cond.message


def test_the_right_secret_is_ready() -> None:
    cond = knooppunt.database_secret_condition(postgresql_node(), secret(url=DSN, other=b"x"))
    assert cond is not None
    assert (cond.status, cond.reason) == ("True", "SecretFound")
    assert "s3cr3t" not in cond.message and b64(DSN) not in cond.message


def test_a_sqlite_node_has_no_database_secret_condition() -> None:
    body = scenarios.knooppunt_resource()
    assert knooppunt.database_secret_condition(Knooppunt.model_validate(body), None) is None


def rolled_out() -> status.RolloutState:
    deployment = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }
    return status.rollout_state(deployment)


def conditions(database: status.Observed | None) -> dict[str, status.Observed]:
    observed = knooppunt._conditions(
        rolled_out(),
        problems=[],
        failed=None,
        stalled=False,
        deadline=600,
        rolling_back=False,
        database=database,
    )
    return {o.type: o for o in observed}


def test_a_missing_secret_makes_ready_false_with_its_reason() -> None:
    missing = knooppunt.database_secret_condition(postgresql_node(), None)
    by_type = conditions(missing)
    assert by_type["DatabaseSecretReady"] == missing
    assert missing is not None
    assert (by_type["Ready"].status, by_type["Ready"].reason) == ("False", "SecretNotFound")
    assert by_type["Ready"].message == missing.message
    assert (by_type["Degraded"].status, by_type["Degraded"].reason) == (
        "True",
        "ConfigurationProblem",
    )


def test_a_ready_secret_leaves_ready_to_the_deployment() -> None:
    found = knooppunt.database_secret_condition(postgresql_node(), secret(url=DSN))
    by_type = conditions(found)
    assert (by_type["Ready"].status, by_type["Ready"].reason) == ("True", "Available")
    assert by_type["DatabaseSecretReady"].status == "True"
    assert by_type["Degraded"].status == "False"
    assert "DatabaseSecretReady" not in conditions(None)
