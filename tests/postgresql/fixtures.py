"""pytest plugin: a private PostgreSQL server for `@pytest.mark.postgresql` tests.

Register it once (tests/conftest.py):  ``pytest_plugins = [..., "tests.postgresql.fixtures"]``
(test modules that need it may also name it in their own ``pytest_plugins``; registering
twice is harmless).

Fixtures:
    postgresql_server   session-scoped `PostgresServer` (initdb + postgres in a temp dir,
                        127.0.0.1 on a free port, fsync on, runs as `postgres` under root)
    postgresql_url      a FRESH database per test, owned by the application role; its
                        SQLAlchemy URL (``postgresql+psycopg://knooppunt:…@127.0.0.1:…/t_…``).
                        Dropped afterwards (WITH (FORCE): leftover connections are cut).
    postgresql_tls      session-scoped `TlsPostgres`: a second server with ``ssl=on``, its
                        certificate (for ``localhost`` only) issued at run time by a fresh
                        test CA; TCP logins without TLS are refused; a client CA for
                        certificate logins, and the PEM files a client needs (CA, another
                        CA, a client certificate) in a temp dir. Nothing is committed.

The binaries are never installed here: they are found via ``$KNOOPPUNT_POSTGRESQL_BIN``,
``pg_config --bindir`` or ``/usr/lib/postgresql/*/bin``. If missing, the test fails when
``$CI`` is set and is skipped otherwise, with the install command.

Tests that use either fixture get the `postgresql` marker automatically, so
``-m "not postgresql"`` deselects them; mark them explicitly anyway for readability.
When such a test fails, the tail of the server log is attached to its report.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Generator, Iterator
from typing import NoReturn

import pytest

from tests.postgresql.server import INSTALL_HINT, PostgresServer, find_bin_dir
from tests.postgresql.tls import TlsPostgres, start_tls_postgres

FIXTURES = ("postgresql_server", "postgresql_url", "postgresql_tls")
_SERVER_KEY = pytest.StashKey[PostgresServer]()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message} (CI is set: PostgreSQL is required here)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgresql_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """One running server for the whole session."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(f"PostgreSQL server binaries not found; run: {INSTALL_HINT}")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        request.config.stash[_SERVER_KEY] = server
        yield server
    finally:
        server.stop()
        if _SERVER_KEY in request.config.stash:
            del request.config.stash[_SERVER_KEY]


@pytest.fixture(scope="session")
def postgresql_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPostgres]:
    """A PostgreSQL server with ssl=on, certificate from a test CA (tests/postgresql/tls.py)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(f"PostgreSQL server binaries not found; run: {INSTALL_HINT}")
    tls = start_tls_postgres(bin_dir, tmp_path_factory.mktemp("pg-tls"))
    try:
        yield tls
    finally:
        tls.server.stop()


@pytest.fixture
def postgresql_url(
    postgresql_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    base = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{base}_{uuid.uuid4().hex[:8]}"
    url = postgresql_server.create_database(name)
    try:
        yield url
    finally:
        postgresql_server.drop_database(name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in FIXTURES):
            item.add_marker(pytest.mark.postgresql)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    server = item.config.stash.get(_SERVER_KEY, None)
    if (
        report.failed
        and server is not None
        and any(f in getattr(item, "fixturenames", ()) for f in FIXTURES)
    ):
        report.sections.append(("postgresql server log (tail)", server.log_tail()))
    return report
