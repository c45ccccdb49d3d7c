"""TLS of the connection to PostgreSQL: which server to trust and how strictly.

libpq (through psycopg 3) does the handshake; this module turns the node's settings into its
connection parameters (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``), which take
precedence over the same parameters in the connection URL. The policy a security officer
expects: whenever a CA is configured the server is verified against it *and* its host name
(``verify-full``); a weaker mode next to a CA is a configuration error, not a silent
downgrade, and so is a URL that asks for a weaker mode than the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import parse_qs, urlsplit

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SSL_MODES: tuple[str, ...] = get_args(SslMode)
VERIFIED = "verify-full"


class DatabaseTlsError(ValueError):
    """The PostgreSQL TLS settings contradict each other or name unreadable files."""


@dataclass(frozen=True)
class DatabaseTls:
    """``ca``: PEM bundle of the CAs that may sign the server certificate; ``sslmode``:
    libpq's mode (default ``verify-full`` with a CA, libpq's own default without);
    ``client_cert``/``client_key``: a client certificate for certificate authentication."""

    ca: Path | None = None
    sslmode: SslMode | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def mode(self) -> SslMode | None:
        if self.sslmode is not None:
            return self.sslmode
        return "verify-full" if self.ca is not None else None

    def verified(self) -> bool:
        return self.mode == VERIFIED

    def connect_args(self, url: str = "") -> dict[str, str]:
        """libpq parameters for this policy; raises :class:`DatabaseTlsError` when the
        settings (or the URL's own ``sslmode``) are inconsistent or a file is unreadable."""
        mode = self.mode
        if self.ca is not None and mode != VERIFIED:
            raise DatabaseTlsError(
                f"database sslmode {mode} is weaker than verify-full while a CA is configured "
                f"({self.ca}): with a CA the server is verified against it and its host name "
                "(leave sslmode unset or set it to verify-full)"
            )
        if mode == "verify-ca":
            raise DatabaseTlsError(
                "database sslmode verify-ca checks no host name; use verify-full with a CA"
            )
        if mode == VERIFIED and self.ca is None:
            raise DatabaseTlsError(
                "database sslmode verify-full needs the CA of the PostgreSQL server "
                "(KNOOPPUNT_DATABASE_CA)"
            )
        if (self.client_cert is None) != (self.client_key is None):
            raise DatabaseTlsError(
                "a database client certificate needs both KNOOPPUNT_DATABASE_CLIENT_CERT "
                "and KNOOPPUNT_DATABASE_CLIENT_KEY"
            )
        if self.client_cert is not None and mode in (None, "disable", "allow", "prefer"):
            raise DatabaseTlsError(
                "a database client certificate is only sent over TLS: configure a CA "
                "(sslmode verify-full)"
            )
        asked = url_sslmode(url)
        if mode is not None and asked is not None and _strength(asked) < _strength(mode):
            raise DatabaseTlsError(
                f"the database URL asks for sslmode={asked}, weaker than the configured "
                f"{mode}; remove sslmode from the URL"
            )
        args: dict[str, str] = {}
        if mode is not None:
            args["sslmode"] = mode
        for name, path in (
            ("sslrootcert", self.ca),
            ("sslcert", self.client_cert),
            ("sslkey", self.client_key),
        ):
            if path is None:
                continue
            if not path.is_file():
                raise DatabaseTlsError(f"database TLS file {path} ({name}) is not readable")
            args[name] = str(path)
        return args


def url_sslmode(url: str) -> str | None:
    """The ``sslmode`` a connection URL asks for itself, if any."""
    values = parse_qs(urlsplit(url).query).get("sslmode")
    return values[-1] if values else None


def _strength(mode: str) -> int:
    return SSL_MODES.index(mode) if mode in SSL_MODES else -1


def describe(args: Mapping[str, str]) -> str:
    """For the start-up log: the mode and whether the server is verified (no secrets)."""
    mode = args.get("sslmode", "prefer (libpq default)")
    return f"sslmode={mode}" + (" (server verified)" if mode == VERIFIED else " (NOT verified)")
