"""A private, throw-away PostgreSQL server for tests.

    with PostgresServer(find_bin_dir()) as pg:
        engine = sqlalchemy.create_engine(pg.url)          # the application role
        url = pg.create_database("t_abc")                  # a fresh database, same role
        pg.drop_database("t_abc")

`initdb` runs into a fresh temporary directory; the server listens on a free port on
127.0.0.1 only, with its unix socket inside that directory, and runs with ``fsync=on`` and
``synchronous_commit=on`` (durability is part of what the tests check). PostgreSQL refuses
to run as root: when the tests run as root, the server runs as the unprivileged ``postgres``
OS user (the directory is handed over to it). Authentication is scram-sha-256 with random
passwords for a superuser (``admin_url``, for creating/dropping databases) and an
application role ``knooppunt`` (``url``) that owns the databases it is given.

`stop()` asks for a fast shutdown, then kills, and always removes the directory. The server
log is kept in memory after stop (`log_text`) and is included in every start error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

APP_ROLE = "knooppunt"
CERT_ROLE = "knooppunt_cert"  # logs in with a client certificate (CN) on a TLS server
SUPERUSER = "postgres"
OS_USER = "postgres"  # created by Debian's postgresql-common
INSTALL_SCRIPT = Path(__file__).resolve().parent / "install.sh"
INSTALL_HINT = "bash tests/postgresql/install.sh"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """The server could not be started or managed; the message carries its log."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb and postgres (highest version), or None."""
    candidates: list[Path] = []
    env = os.environ.get("KNOOPPUNT_POSTGRESQL_BIN")
    if env:
        candidates.append(Path(env))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
        candidates.append(Path(out.stdout.strip()))

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for c in candidates:
        if os.access(c / "initdb", os.X_OK) and os.access(c / "postgres", os.X_OK):
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pdeathsig() -> object:
    """A preexec function: SIGINT (fast shutdown) to the server if the test process dies.

    libc is resolved here, in the parent, so the child only makes one system call.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGINT, 0, 0, 0)

    return preexec


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and key (PEM bytes, made by the test PKI at run time:
    never files of the repository). ``client_ca``: CAs whose client certificates the server
    accepts for ``cert`` authentication (hostssl … cert), optional; ``ca``: the CA that
    issued ``chain``, for the tests' clients."""

    chain: bytes
    key: bytes
    client_ca: bytes | None = None
    ca: bytes | None = None  # the CA clients verify the server with (for the tests' use)


class PostgresServer:
    """One private PostgreSQL server; see the module docstring."""

    def __init__(
        self,
        bin_dir: Path,
        *,
        start_timeout: float = 60.0,
        extra_listen: Sequence[str] = (),
        allow_networks: Sequence[str] = (),
        tls: ServerTls | None = None,
    ) -> None:
        """``extra_listen``: addresses to listen on besides 127.0.0.1; ``allow_networks``:
        CIDRs whose clients may log in (scram-sha-256), e.g. a test node's pods; ``tls``:
        run with ``ssl=on`` and this certificate, and accept TCP logins only over TLS."""
        self.tls = tls
        self.bin_dir = Path(bin_dir)
        self.extra_listen = list(extra_listen)
        self.allow_networks = list(allow_networks)
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self.port = 0
        self.superuser_password = secrets.token_urlsafe(18)
        self.password = secrets.token_urlsafe(18)
        self.database = "knooppunt"
        self.log_text = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0
        self._user: pwd.struct_passwd | None = None

    # -- paths and urls --------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "run"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    def url_for(self, database: str, *, admin: bool = False) -> str:
        """SQLAlchemy URL (psycopg 3) over TCP to one database."""
        user, password = (
            (SUPERUSER, self.superuser_password) if admin else (APP_ROLE, self.password)
        )
        return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The application role's URL to the server's default database."""
        return self.url_for(self.database)

    @property
    def admin_url(self) -> str:
        return self.url_for("postgres", admin=True)

    def _dsn(self, database: str = "postgres", *, admin: bool = True) -> str:
        return self.url_for(database, admin=admin).replace("postgresql+psycopg://", "postgresql://")

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        for tool in ("initdb", "postgres"):
            if not os.access(self.bin_dir / tool, os.X_OK):
                raise PostgresError(f"{self.bin_dir / tool} not found; run {INSTALL_HINT}")
        if self._as_root:
            try:
                self._user = pwd.getpwnam(OS_USER)
            except KeyError as exc:
                raise PostgresError(
                    f"running as root, but there is no '{OS_USER}' OS user to run the server"
                ) from exc
        # Directly under the system temp dir: short unix-socket paths, and reachable for the
        # postgres user (pytest's own tmp dirs are 0700 root).
        self.root = Path(tempfile.mkdtemp(prefix="knooppunt-pg-"))
        try:
            self._initdb()
            self._start_server()
            self._bootstrap()
        except BaseException:
            self.stop()
            raise

    def _child_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {
            "env": {
                "PATH": f"{self.bin_dir}:/usr/bin:/bin",
                "LC_ALL": "C",
                "LANG": "C",
                "TZ": "UTC",
                "HOME": str(self.root),
                "PGTZ": "UTC",
            },
            "cwd": str(self.root),
            "stdin": subprocess.DEVNULL,
        }
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return kwargs

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _initdb(self) -> None:
        assert self.root is not None
        self._chown(self.root)
        self.socket_dir.mkdir(mode=0o700)
        self._chown(self.socket_dir)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local",
                "scram-sha-256",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-instructions",
            ],
            capture_output=True,
            timeout=120,
            check=False,
            **self._child_kwargs(),  # type: ignore[arg-type]
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed ({result.returncode}):\n"
                + result.stdout.decode(errors="replace")
                + result.stderr.decode(errors="replace")
            )
        if self.tls is not None:
            self._write_tls()
        if self.allow_networks:
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                for net in self.allow_networks:
                    hba.write(f"{self._host_kind} all all {net} scram-sha-256\n")

    @property
    def _host_kind(self) -> str:
        return "hostssl" if self.tls is not None else "host"

    def _write_tls(self) -> None:
        """Certificate files for ``ssl=on`` (the key 0600, owned by the server's user, as
        PostgreSQL demands), and a pg_hba.conf that refuses TCP logins without TLS: first
        certificate logins of the ``certuser`` role when a client CA is given, then
        passwords, all over TLS only."""
        assert self.tls is not None
        files = {"server.crt": self.tls.chain, "server.key": self.tls.key}
        if self.tls.client_ca is not None:
            files["client-ca.crt"] = self.tls.client_ca
        for name, content in files.items():
            path = self.data_dir / name
            path.write_bytes(content)
            path.chmod(0o600)
            self._chown(path)
        hba_path = self.data_dir / "pg_hba.conf"
        local = [
            line
            for line in hba_path.read_text().splitlines()
            if line.startswith("local") or line.startswith("#") or not line.strip()
        ]
        rules = ["hostnossl all all all reject"]
        if self.tls.client_ca is not None:
            rules.append(f"hostssl all {CERT_ROLE} all cert")
        rules += [
            "hostssl all all 127.0.0.1/32 scram-sha-256",
            "hostssl all all ::1/128 scram-sha-256",
        ]
        hba_path.write_text("\n".join([*local, *rules]) + "\n")

    def _start_server(self) -> None:
        last_error = ""
        for _attempt in range(5):
            self.port = _free_port()
            log = self.log_path.open("ab")
            try:
                self._proc = subprocess.Popen(
                    [
                        str(self.bin_dir / "postgres"),
                        "-D",
                        str(self.data_dir),
                        "-c",
                        f"port={self.port}",
                        "-c",
                        f"listen_addresses={','.join(['127.0.0.1', *self.extra_listen])}",
                        "-c",
                        f"unix_socket_directories={self.socket_dir}",
                        "-c",
                        "fsync=on",
                        "-c",
                        "synchronous_commit=on",
                        "-c",
                        "full_page_writes=on",
                        "-c",
                        "max_connections=300",
                        "-c",
                        "shared_buffers=64MB",
                        "-c",
                        "log_min_messages=warning",
                        "-c",
                        "log_line_prefix=%m [%p] %q%u@%d ",
                        "-c",
                        "log_timezone=UTC",
                        "-c",
                        "timezone=UTC",
                        *self._tls_options(),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_pdeathsig(),  # type: ignore[arg-type]
                    **self._child_kwargs(),  # type: ignore[arg-type]
                )
            finally:
                log.close()
            if self._wait_ready():
                return
            last_error = self._read_log()
            self._kill()
            if "could not bind" not in last_error and "Address already in use" not in last_error:
                break
        raise PostgresError(f"PostgreSQL did not start; server log:\n{last_error}")

    def _tls_options(self) -> list[str]:
        if self.tls is None:
            return []
        options = ["ssl=on", "ssl_cert_file=server.crt", "ssl_key_file=server.key"]
        if self.tls.client_ca is not None:
            options.append("ssl_ca_file=client-ca.crt")
        return [arg for option in options for arg in ("-c", option)]

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self._dsn(), connect_timeout=5):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def _bootstrap(self) -> None:
        with psycopg.connect(self._dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(self.password)
                )
            )
            if self.tls is not None and self.tls.client_ca is not None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(CERT_ROLE)))
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE owned by the application role; returns its URL."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self._dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(APP_ROLE)
                )
            )
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE, disconnecting whatever is still connected to it."""
        with psycopg.connect(self._dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _read_log(self) -> str:
        if self.root is None:
            return self.log_text
        with contextlib.suppress(OSError):
            self.log_text = self.log_path.read_text(errors="replace")
        return self.log_text

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self._read_log().splitlines()[-lines:])

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # fast shutdown: abort sessions, checkpoint, exit
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=30)

    def stop(self) -> None:
        """Fast shutdown, then kill; always removes the directory (the log stays in memory)."""
        try:
            self._kill()
        finally:
            self._read_log()
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
