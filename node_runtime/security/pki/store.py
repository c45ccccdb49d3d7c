"""The on-disk development PKI.

Layout (every directory 0700, every private key 0600, written atomically)::

    <dir>/
      .lock                         advisory lock serialising changes (flock)
      root/ca.crt  root/ca.key      root CA
      intermediate/ca.crt           issuing CA ("private services")
      intermediate/ca.key
      intermediate/crl.pem          CRL of the issuing CA (signed by it, with nextUpdate)
      intermediate/index.json       every certificate ever issued: serial, subject, kind,
                                    validity, fingerprint, revoked_at, reason, current
      issued/<name>.crt             leaf certificate
      issued/<name>.key             its private key (PKCS#8 PEM, unencrypted, 0600)
      issued/<name>.chain.pem       leaf + intermediate: what a server/client presents
      trust/ca-bundle.pem           root + intermediate: what peers trust
      trust/crl.pem                 copy of intermediate/crl.pem for the TLS layer

``<name>`` is a short handle (``localhost``, ``gemeente-0363``); the same name always refers to
the current certificate of that party, older ones stay in the index (and in the CRL when
revoked).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from node_runtime.security.pki.authority import (
    DEFAULT_KEY_ALGORITHM,
    CertificateAuthority,
    KeyAlgorithm,
    PkiError,
    PrivateKey,
    as_private_key,
    certificate_chain_pem,
    create_intermediate_ca,
    create_root_ca,
    utcnow,
)
from node_runtime.security.pki.issuing import (
    DEFAULT_CRL_VALIDITY,
    DEFAULT_LEAF_VALIDITY,
    CertificateKind,
    IPAddressLike,
    IssuedCertificate,
    RevokedEntry,
    build_crl,
    certificate_kind,
    issue_client_certificate,
    issue_server_certificate,
    parse_revocation_reason,
    renew_certificate,
    subject_alternative_names,
    validate_oin,
)

#: Short names for ``rfc4514_string`` that cryptography does not know by itself.
SUBJECT_ATTRIBUTE_NAMES = {x509.NameOID.SERIAL_NUMBER: "serialNumber"}

StrPath: TypeAlias = str | os.PathLike[str]
Status: TypeAlias = Literal["valid", "expired", "not-yet-valid", "revoked", "superseded"]

DEFAULT_PKI_DIR = Path(".knooppunt/pki")
INDEX_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class IssuedPaths:
    """Files of one issued certificate."""

    certificate: Path
    key: Path
    chain: Path


@dataclass
class IndexEntry:
    """One line of ``intermediate/index.json``."""

    name: str
    serial: str  # upper-case hex, as OpenSSL prints it
    kind: CertificateKind
    subject: str
    not_before: str
    not_after: str
    fingerprint_sha256: str
    current: bool = True
    revoked_at: str | None = None
    revocation_reason: str | None = None

    @property
    def serial_number(self) -> int:
        return int(self.serial, 16)

    def status(self, now: dt.datetime | None = None) -> Status:
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if not self.current:
            return "superseded"
        if now < dt.datetime.fromisoformat(self.not_before):
            return "not-yet-valid"
        if now > dt.datetime.fromisoformat(self.not_after):
            return "expired"
        return "valid"


@dataclass
class _Index:
    crl_number: int = 0
    certificates: list[IndexEntry] = field(default_factory=list)


def validate_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise PkiError(
            f"invalid certificate name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


# --------------------------------------------------------------------------- file helpers


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` atomically; the file never exists with looser permissions.

    The temporary file is created with ``os.open(..., mode)`` (and ``fchmod`` against a lax
    umask), fsynced, renamed over ``path`` and the directory fsynced.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


def write_private_key(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(path, pem, mode=0o600)


def read_private_key(path: Path) -> PrivateKey:
    return as_private_key(serialization.load_pem_private_key(path.read_bytes(), password=None))


def read_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _ensure_directory(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


# --------------------------------------------------------------------------- the store


class PkiStore:
    """A development PKI in a directory. Mutating methods take an exclusive file lock."""

    def __init__(self, directory: StrPath = DEFAULT_PKI_DIR) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"PkiStore({str(self.directory)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PkiStore) and other.directory == self.directory

    def __hash__(self) -> int:
        return hash(self.directory)

    # paths -----------------------------------------------------------------
    @property
    def root_certificate_path(self) -> Path:
        return self.directory / "root" / "ca.crt"

    @property
    def root_key_path(self) -> Path:
        return self.directory / "root" / "ca.key"

    @property
    def intermediate_certificate_path(self) -> Path:
        return self.directory / "intermediate" / "ca.crt"

    @property
    def intermediate_key_path(self) -> Path:
        return self.directory / "intermediate" / "ca.key"

    @property
    def intermediate_crl_path(self) -> Path:
        return self.directory / "intermediate" / "crl.pem"

    @property
    def index_path(self) -> Path:
        return self.directory / "intermediate" / "index.json"

    @property
    def ca_bundle_path(self) -> Path:
        return self.directory / "trust" / "ca-bundle.pem"

    @property
    def crl_path(self) -> Path:
        return self.directory / "trust" / "crl.pem"

    def paths(self, name: str) -> IssuedPaths:
        issued = self.directory / "issued"
        validate_name(name)
        return IssuedPaths(
            certificate=issued / f"{name}.crt",
            key=issued / f"{name}.key",
            chain=issued / f"{name}.chain.pem",
        )

    # state -----------------------------------------------------------------
    def is_initialised(self) -> bool:
        return all(
            p.exists()
            for p in (
                self.root_certificate_path,
                self.intermediate_certificate_path,
                self.intermediate_key_path,
                self.ca_bundle_path,
                self.crl_path,
            )
        )

    def root(self) -> CertificateAuthority:
        self._require_initialised()
        return CertificateAuthority(
            read_certificate(self.root_certificate_path), read_private_key(self.root_key_path)
        )

    def intermediate(self) -> CertificateAuthority:
        self._require_initialised()
        return CertificateAuthority(
            read_certificate(self.intermediate_certificate_path),
            read_private_key(self.intermediate_key_path),
        )

    def crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl(self.intermediate_crl_path.read_bytes())

    def entries(self) -> list[IndexEntry]:
        """Every certificate issued, oldest first."""
        return list(self._read_index().certificates)

    def current(self, name: str) -> IndexEntry:
        validate_name(name)
        for entry in reversed(self._read_index().certificates):
            if entry.name == name and entry.current:
                return entry
        raise PkiError(f"no certificate named {name!r} in {self.directory}")

    def has(self, name: str) -> bool:
        try:
            self.current(name)
        except PkiError:
            return False
        return self.paths(name).certificate.exists() and self.paths(name).key.exists()

    def certificate(self, name: str) -> x509.Certificate:
        return read_certificate(self.paths(name).certificate)

    def key(self, name: str) -> PrivateKey:
        return read_private_key(self.paths(name).key)

    # operations ------------------------------------------------------------
    def init(
        self,
        *,
        key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
        crl_validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
    ) -> bool:
        """Create root CA, intermediate CA, trust bundle and an empty CRL where missing.

        Returns whether anything was created. Existing CAs are never overwritten.
        """
        with self._locked():
            created = False
            if self.root_certificate_path.exists():
                root = CertificateAuthority(
                    read_certificate(self.root_certificate_path),
                    read_private_key(self.root_key_path),
                )
            else:
                if self.intermediate_certificate_path.exists():
                    raise PkiError(
                        f"{self.directory}: intermediate CA exists without a root CA; refusing to "
                        "create a new root"
                    )
                root = create_root_ca(key_algorithm=key_algorithm)
                _ensure_directory(self.root_certificate_path.parent)
                write_private_key(self.root_key_path, root.key)
                atomic_write(self.root_certificate_path, _pem(root.certificate), mode=0o644)
                created = True
            if self.intermediate_certificate_path.exists():
                intermediate = CertificateAuthority(
                    read_certificate(self.intermediate_certificate_path),
                    read_private_key(self.intermediate_key_path),
                )
            else:
                intermediate = create_intermediate_ca(root, key_algorithm=key_algorithm)
                _ensure_directory(self.intermediate_certificate_path.parent)
                write_private_key(self.intermediate_key_path, intermediate.key)
                atomic_write(
                    self.intermediate_certificate_path, _pem(intermediate.certificate), mode=0o644
                )
                created = True
            _ensure_directory(self.directory / "issued")
            _ensure_directory(self.ca_bundle_path.parent)
            bundle = certificate_chain_pem([root.certificate, intermediate.certificate])
            if not self.ca_bundle_path.exists() or self.ca_bundle_path.read_bytes() != bundle:
                atomic_write(self.ca_bundle_path, bundle, mode=0o644)
                created = True
            if not self.index_path.exists():
                self._write_index(_Index())
            if not (self.intermediate_crl_path.exists() and self.crl_path.exists()):
                self._write_crl(intermediate, crl_validity)
                created = True
            return created

    def issue_server(
        self,
        name: str,
        *,
        dns_names: Sequence[str],
        ip_addresses: Sequence[IPAddressLike] = (),
        organisation: str | None = None,
        serial_number: str | None = None,
        key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        validity: dt.timedelta = DEFAULT_LEAF_VALIDITY,
        replace: bool = False,
    ) -> IssuedPaths:
        """Issue a server certificate under ``name`` (``replace`` supersedes an existing one)."""
        validate_name(name)
        with self._locked():
            issuer = self.intermediate()
            issued = issue_server_certificate(
                issuer,
                dns_names=dns_names,
                ip_addresses=ip_addresses,
                organisation=organisation,
                serial_number=serial_number,
                key_algorithm=key_algorithm,
                not_before=not_before,
                not_after=not_after,
                validity=validity,
            )
            return self._store_new(name, issued, issuer, replace=replace)

    def issue_client(
        self,
        name: str,
        *,
        organisation: str,
        oin: str | None = None,
        organisation_number: str | None = None,
        common_name: str | None = None,
        key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        validity: dt.timedelta = DEFAULT_LEAF_VALIDITY,
        replace: bool = False,
    ) -> IssuedPaths:
        """Issue an organisation certificate; subject serialNumber is the OIN (20 digits) or,
        for parties without one, another organisation number."""
        validate_name(name)
        if (oin is None) == (organisation_number is None):
            raise PkiError("give exactly one of oin or organisation_number")
        serial = validate_oin(oin) if oin is not None else str(organisation_number)
        with self._locked():
            issuer = self.intermediate()
            issued = issue_client_certificate(
                issuer,
                organisation=organisation,
                serial_number=serial,
                common_name=common_name or name,
                key_algorithm=key_algorithm,
                not_before=not_before,
                not_after=not_after,
                validity=validity,
            )
            return self._store_new(name, issued, issuer, replace=replace)

    def renew(
        self,
        name: str,
        *,
        new_key: bool = False,
        key_algorithm: KeyAlgorithm | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        validity: dt.timedelta | None = None,
    ) -> IssuedPaths:
        """Re-issue the current certificate of ``name`` with a new serial and validity.

        The previous certificate is marked superseded in the index but is *not* revoked; revoke
        it explicitly (``revoke(name, serial=...)``) if it must stop working before it expires.
        """
        with self._locked():
            issuer = self.intermediate()
            previous = self.current(name)
            paths = self.paths(name)
            issued = renew_certificate(
                issuer,
                read_certificate(paths.certificate),
                read_private_key(paths.key),
                new_key=new_key,
                key_algorithm=key_algorithm,
                not_before=not_before,
                not_after=not_after,
                validity=validity,
            )
            index = self._read_index()
            for entry in index.certificates:
                if entry.serial == previous.serial:
                    entry.current = False
            index.certificates.append(_entry(name, issued.certificate))
            self._write_files(paths, issued)
            self._write_index(index)
            return paths

    def revoke(
        self,
        name: str,
        *,
        reason: str | None = None,
        serial: str | None = None,
        revoked_at: dt.datetime | None = None,
        crl_validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
    ) -> IndexEntry:
        """Revoke the current certificate of ``name`` (or the one with ``serial``) and
        regenerate the CRL."""
        flag = parse_revocation_reason(reason)
        validate_name(name)
        with self._locked():
            index = self._read_index()
            wanted = _normalise_serial(serial) if serial else None
            matches = [
                e
                for e in index.certificates
                if e.name == name
                and (e.serial.lstrip("0") == wanted if wanted is not None else e.current)
            ]
            if not matches:
                which = f"serial {serial}" if serial else "current certificate"
                raise PkiError(f"{name}: no {which} to revoke")
            entry = matches[-1]
            if entry.revoked_at is not None:
                raise PkiError(
                    f"{name}: certificate {entry.serial} was revoked at {entry.revoked_at}"
                )
            entry.revoked_at = _iso(revoked_at or utcnow())
            entry.revocation_reason = flag.value if flag is not None else None
            self._write_index(index)
            self._write_crl(self.intermediate(), crl_validity)
            return entry

    def refresh_crl(self, *, validity: dt.timedelta = DEFAULT_CRL_VALIDITY) -> Path:
        """Re-sign the CRL (new CRL number, new nextUpdate); returns ``trust/crl.pem``."""
        with self._locked():
            self._write_crl(self.intermediate(), validity)
        return self.crl_path

    # internals -------------------------------------------------------------
    def _require_initialised(self) -> None:
        if not self.intermediate_certificate_path.exists():
            raise PkiError(
                f"no PKI in {self.directory}; create one with `knooppunt pki init --dir "
                f"{self.directory}`"
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        _ensure_directory(self.directory)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _store_new(
        self, name: str, issued: IssuedCertificate, issuer: CertificateAuthority, *, replace: bool
    ) -> IssuedPaths:
        index = self._read_index()
        existing = [e for e in index.certificates if e.name == name and e.current]
        if existing and not replace:
            raise PkiError(f"a certificate named {name!r} exists; use renew, or replace it")
        now = _iso(utcnow())
        for entry in existing:
            entry.current = False
            if entry.revoked_at is None:
                entry.revoked_at = now
                entry.revocation_reason = x509.ReasonFlags.superseded.value
        paths = self.paths(name)
        self._write_files(paths, issued)
        index.certificates.append(_entry(name, issued.certificate))
        self._write_index(index)
        if existing:
            self._write_crl(issuer, DEFAULT_CRL_VALIDITY)
        return paths

    def _write_files(self, paths: IssuedPaths, issued: IssuedCertificate) -> None:
        _ensure_directory(paths.key.parent)
        write_private_key(paths.key, issued.key)
        atomic_write(paths.certificate, _pem(issued.certificate), mode=0o644)
        atomic_write(paths.chain, certificate_chain_pem(issued.chain), mode=0o644)

    def _write_crl(self, issuer: CertificateAuthority, validity: dt.timedelta) -> None:
        index = self._read_index()
        index.crl_number += 1
        revoked = [
            RevokedEntry(
                serial_number=e.serial_number,
                revoked_at=dt.datetime.fromisoformat(e.revoked_at),
                reason=x509.ReasonFlags(e.revocation_reason) if e.revocation_reason else None,
            )
            for e in index.certificates
            if e.revoked_at is not None
        ]
        crl = build_crl(issuer, revoked, crl_number=index.crl_number, validity=validity)
        pem = crl.public_bytes(serialization.Encoding.PEM)
        self._write_index(index)
        atomic_write(self.intermediate_crl_path, pem, mode=0o644)
        _ensure_directory(self.crl_path.parent)
        atomic_write(self.crl_path, pem, mode=0o644)

    def _read_index(self) -> _Index:
        if not self.index_path.exists():
            return _Index()
        raw: dict[str, Any] = json.loads(self.index_path.read_text(encoding="utf-8"))
        if raw.get("version") != INDEX_VERSION:
            raise PkiError(f"{self.index_path}: unsupported index version {raw.get('version')!r}")
        return _Index(
            crl_number=int(raw.get("crl_number", 0)),
            certificates=[IndexEntry(**item) for item in raw.get("certificates", [])],
        )

    def _write_index(self, index: _Index) -> None:
        document = {
            "version": INDEX_VERSION,
            "crl_number": index.crl_number,
            "certificates": [asdict(e) for e in index.certificates],
        }
        _ensure_directory(self.index_path.parent)
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        atomic_write(self.index_path, text.encode("utf-8"), mode=0o644)


def _normalise_serial(serial: str) -> str:
    text = serial.strip().upper().replace(":", "").removeprefix("0X").lstrip("0")
    if not re.fullmatch(r"[0-9A-F]+", text):
        raise PkiError(f"invalid serial number {serial!r}; give it in hexadecimal")
    return text


def _entry(name: str, certificate: x509.Certificate) -> IndexEntry:
    return IndexEntry(
        name=name,
        serial=f"{certificate.serial_number:X}",
        kind=certificate_kind(certificate),
        subject=certificate.subject.rfc4514_string(SUBJECT_ATTRIBUTE_NAMES),
        not_before=_iso(certificate.not_valid_before_utc),
        not_after=_iso(certificate.not_valid_after_utc),
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
    )


# --------------------------------------------------------------------------- demo set-up


@dataclass(frozen=True)
class DevPki:
    """What :func:`ensure_dev_pki` made sure exists."""

    store: PkiStore
    ca_bundle: Path
    crl: Path
    server: IssuedPaths
    clients: Mapping[str, IssuedPaths]


def ensure_dev_pki(
    directory: StrPath = DEFAULT_PKI_DIR,
    *,
    clients: Sequence[tuple[str, str, str]] = (),
    server_name: str = "localhost",
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[IPAddressLike] = ("127.0.0.1", "::1"),
    key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
    renew_before: dt.timedelta = dt.timedelta(days=30),
    crl_refresh_before: dt.timedelta = dt.timedelta(days=2),
) -> DevPki:
    """Idempotently set up the local demo's PKI.

    Creates the CAs if missing; issues the server certificate ``server_name`` for
    ``dns_names``/``ip_addresses`` and one organisation certificate per ``(name, organisation,
    oin)`` in ``clients`` when missing. Certificates that expire within ``renew_before`` are
    renewed; a certificate whose subject, SAN or key no longer matches is replaced. A revoked
    client certificate is left revoked (that was a deliberate act). The CRL is re-signed when
    its nextUpdate is less than ``crl_refresh_before`` away.
    """
    store = PkiStore(directory)
    store.init(key_algorithm=key_algorithm)
    now = utcnow()

    wanted_dns = sorted(n.lower() for n in dns_names)
    wanted_ips = sorted(str(ipaddress.ip_address(ip)) for ip in ip_addresses)
    if store.has(server_name) and not _san_differs(store, server_name, wanted_dns, wanted_ips):
        if not _usable(store, server_name):  # revoked, or files that do not belong together
            store.issue_server(
                server_name,
                dns_names=dns_names,
                ip_addresses=ip_addresses,
                key_algorithm=key_algorithm,
                replace=True,
            )
        elif _expiring(store, server_name, now + renew_before):
            store.renew(server_name, validity=DEFAULT_LEAF_VALIDITY)
    else:
        store.issue_server(
            server_name,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            key_algorithm=key_algorithm,
            replace=_known(store, server_name),
        )

    client_paths: dict[str, IssuedPaths] = {}
    for name, organisation, oin in clients:
        if store.has(name) and not _subject_differs(store, name, organisation, oin):
            if store.current(name).revoked_at is not None:
                pass  # revoked on purpose: keep it that way
            elif not _usable(store, name):
                store.issue_client(
                    name,
                    organisation=organisation,
                    oin=oin,
                    key_algorithm=key_algorithm,
                    replace=True,
                )
            elif _expiring(store, name, now + renew_before):
                store.renew(name, validity=DEFAULT_LEAF_VALIDITY)
        else:
            store.issue_client(
                name,
                organisation=organisation,
                oin=oin,
                key_algorithm=key_algorithm,
                replace=_known(store, name),
            )
        client_paths[name] = store.paths(name)

    crl = store.crl()
    next_update = crl.next_update_utc
    if next_update is None or next_update - now < crl_refresh_before:
        store.refresh_crl()

    return DevPki(
        store=store,
        ca_bundle=store.ca_bundle_path,
        crl=store.crl_path,
        server=store.paths(server_name),
        clients=client_paths,
    )


def _known(store: PkiStore, name: str) -> bool:
    try:
        store.current(name)
    except PkiError:
        return False
    return True


def _usable(store: PkiStore, name: str) -> bool:
    """The files exist, belong together and the certificate is in the index, not revoked."""
    if not store.has(name):
        return False
    try:
        certificate = store.certificate(name)
        key = store.key(name)
    except (OSError, ValueError, PkiError):
        return False
    if key.public_key() != certificate.public_key():
        return False
    entry = store.current(name)
    return entry.serial == f"{certificate.serial_number:X}" and entry.revoked_at is None


def _expiring(store: PkiStore, name: str, horizon: dt.datetime) -> bool:
    return store.certificate(name).not_valid_after_utc < horizon


def _san_differs(store: PkiStore, name: str, dns: list[str], ips: list[str]) -> bool:
    try:
        have_dns, have_ips = subject_alternative_names(store.certificate(name))
    except (OSError, ValueError):
        return True
    return sorted(have_dns) != dns or sorted(have_ips) != ips


def _subject_differs(store: PkiStore, name: str, organisation: str, oin: str) -> bool:
    try:
        subject = store.certificate(name).subject
    except (OSError, ValueError):
        return True
    wanted = {"O": organisation, "serialNumber": oin}
    have = {
        "O": [str(a.value) for a in subject if a.oid == x509.NameOID.ORGANIZATION_NAME],
        "serialNumber": [str(a.value) for a in subject if a.oid == x509.NameOID.SERIAL_NUMBER],
    }
    return any(have[k] != [v] for k, v in wanted.items())
