"""The node's connection to PostgreSQL over TLS: verified server, refused impostors.

A real server with ``ssl=on`` (tests/postgresql/tls.py) whose certificate a fresh test CA
issued for ``localhost`` only; the runtime's settings go through the same path as
``knooppunt serve`` (Settings → DatabaseTls → SqlStore).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text

from node_runtime.node.config import Settings
from node_runtime.store.database_tls import DatabaseTls, DatabaseTlsError
from node_runtime.store.sql import SqlStore
from tests.postgresql.server import CERT_ROLE
from tests.postgresql.tls import TlsPostgres

pytestmark = pytest.mark.postgresql


def _settings(url: str, **tls: object) -> Settings:
    return Settings(node="zorg", resources=[], database_url=url, **tls)  # type: ignore[arg-type]


def _store(settings: Settings) -> SqlStore:
    assert settings.database_url is not None
    args = settings.database_tls().connect_args(settings.database_url)
    return SqlStore(settings.database_url, connect_args=args)


def _own_ssl(store: SqlStore) -> tuple[bool, str, str]:
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT s.ssl, s.version, current_user FROM pg_stat_ssl s "
                "WHERE s.pid = pg_backend_pid()"
            )
        ).one()
    return bool(row[0]), str(row[1]), str(row[2])


def test_runtime_connects_verify_full_with_the_ca(postgresql_tls: TlsPostgres) -> None:
    settings = _settings(postgresql_tls.url(), database_ca=postgresql_tls.ca)
    store = _store(settings)
    try:
        assert store.migrate() >= 1  # the node's real start-up work, over TLS
        encrypted, version, user = _own_ssl(store)
    finally:
        store.engine.dispose()
    assert encrypted
    assert version.startswith("TLSv1.")
    assert user == "knooppunt"
    assert settings.database_tls().connect_args()["sslmode"] == "verify-full"


def test_refuses_a_server_whose_certificate_another_ca_signed(
    postgresql_tls: TlsPostgres,
) -> None:
    store = _store(_settings(postgresql_tls.url(), database_ca=postgresql_tls.other_ca))
    with pytest.raises(sqlalchemy.exc.OperationalError, match="certificate verify failed"):
        store.migrate()
    store.engine.dispose()


def test_refuses_a_server_whose_certificate_names_another_host(
    postgresql_tls: TlsPostgres,
) -> None:
    # the certificate is for "localhost"; the node was told 127.0.0.1
    store = _store(_settings(postgresql_tls.url(host="127.0.0.1"), database_ca=postgresql_tls.ca))
    with pytest.raises(sqlalchemy.exc.OperationalError, match="does not match host name"):
        store.migrate()
    store.engine.dispose()


def test_the_test_server_refuses_logins_without_tls(postgresql_tls: TlsPostgres) -> None:
    """The fixture really demands TLS: a plain connection is turned away by pg_hba."""
    store = SqlStore(postgresql_tls.url() + "?sslmode=disable")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="no encryption"):
        store.migrate()
    store.engine.dispose()


def test_client_certificate_logs_in_without_a_password(postgresql_tls: TlsPostgres) -> None:
    settings = _settings(
        postgresql_tls.cert_url(),
        database_ca=postgresql_tls.ca,
        database_client_cert=postgresql_tls.client_cert,
        database_client_key=postgresql_tls.client_key,
    )
    store = _store(settings)
    try:
        encrypted, _version, user = _own_ssl(store)
    finally:
        store.engine.dispose()
    assert encrypted
    assert user == CERT_ROLE


def test_without_the_client_certificate_the_cert_role_is_refused(
    postgresql_tls: TlsPostgres,
) -> None:
    store = _store(_settings(postgresql_tls.cert_url(), database_ca=postgresql_tls.ca))
    with pytest.raises(sqlalchemy.exc.OperationalError, match="certificate"):
        _own_ssl(store)
    store.engine.dispose()


# ------------------------------------------------------------------ policy (no server needed)


def test_a_weaker_sslmode_next_to_a_ca_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-")
    for mode in ("disable", "allow", "prefer", "require", "verify-ca"):
        with pytest.raises(DatabaseTlsError, match="weaker than verify-full"):
            DatabaseTls(ca=ca, sslmode=mode).connect_args()  # type: ignore[arg-type]
    assert DatabaseTls(ca=ca).connect_args() == {"sslmode": "verify-full", "sslrootcert": str(ca)}


def test_a_url_asking_for_less_than_the_settings_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-")
    with pytest.raises(DatabaseTlsError, match="sslmode=disable, weaker"):
        DatabaseTls(ca=ca).connect_args("postgresql://u@db/x?sslmode=disable")
    assert DatabaseTls(ca=ca).connect_args("postgresql://u@db/x?sslmode=verify-full")


def test_inconsistent_tls_settings_say_what_is_wrong(tmp_path: Path) -> None:
    ca, cert = tmp_path / "ca.crt", tmp_path / "c.crt"
    ca.write_text("-")
    cert.write_text("-")
    with pytest.raises(DatabaseTlsError, match="needs the CA"):
        DatabaseTls(sslmode="verify-full").connect_args()
    with pytest.raises(DatabaseTlsError, match="needs both"):
        DatabaseTls(ca=ca, client_cert=cert).connect_args()
    with pytest.raises(DatabaseTlsError, match="not readable"):
        DatabaseTls(ca=tmp_path / "missing.crt").connect_args()
    # without any TLS settings nothing is added (libpq's defaults and the URL apply)
    assert DatabaseTls().connect_args("postgresql://u@db/x") == {}


def test_log_verify_reaches_the_database_over_verified_tls(
    postgresql_tls: TlsPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    """`knooppunt log verify --database-url … --database-ca …` follows the node's policy."""
    from node_runtime.cli import main

    url = postgresql_tls.url()
    store = _store(_settings(url, database_ca=postgresql_tls.ca))
    store.migrate()
    store.engine.dispose()
    args = ["log", "verify", "--database-url", url, "--json"]
    assert main([*args, "--database-ca", str(postgresql_tls.ca)]) == 0
    assert '"ok": true' in capsys.readouterr().out
    with pytest.raises(sqlalchemy.exc.OperationalError, match="certificate verify failed"):
        main([*args, "--database-ca", str(postgresql_tls.other_ca)])
    assert main([*args[:3], url + "?sslmode=disable", "--database-ca", str(postgresql_tls.ca)]) == 2
    assert "weaker than the configured verify-full" in capsys.readouterr().err
