"""Table definitions (SQLAlchemy Core), shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()

# Deliveries not settled yet: a stream's next delivery waits while an earlier one is (outbox).
UNSETTLED_STATUSES = ("pending", "dead")
UNSETTLED = "status IN ('pending', 'dead')"


class UtcDateTime(TypeDecorator[datetime]):
    """An instant, stored and returned in UTC (aware), the same on every backend.

    PostgreSQL's timestamptz keeps the instant by itself, but SQLite's DATETIME is a text
    column that silently drops the UTC offset: 10:30+01:00 would come back as 10:30 UTC, and
    comparisons against an offset-carrying parameter would be off. Normalising every bound
    value to UTC (naive values are taken as UTC) makes storage and filters agree everywhere.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _as_utc(value)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def sqlite_instant(value: datetime | None) -> str | None:
    """The text SQLAlchemy binds for a :class:`UtcDateTime` on SQLite (the instant in UTC in
    SQLite's DATETIME format, ``YYYY-MM-DD HH:MM:SS.ffffff``), for the statements the store
    prepares itself (``store/prepared.py``): SQLAlchemy's processor (the type's
    ``process_bind_param``, then a ``%`` format with seven fields) cost more than twice as
    much, and the intake binds about ten instants per message. Equal to it for every
    instant: tests/store/test_sqlite_instant.py."""
    if value is None:
        return None
    if value.tzinfo is not None:
        try:
            value = _NAIVE_EPOCH + (value - _EPOCH)  # the same wall time in UTC, naive
        except TypeError:  # a tzinfo without an offset: what astimezone makes of it
            value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


# BigInteger autoincrement on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UtcDateTime(), nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("connector", String(63), nullable=False),
    Column("connector_revision", Integer, nullable=False),
    Column("message_type", String(63), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("sender_message_id", String(128), nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("controller", String(64), nullable=False),
    Column("answer_status", Integer, nullable=False),
    Column("answer_body", LargeBinary, nullable=False),
    Column("answer_content_type", String(100), nullable=False),
    Column("purged_at", UtcDateTime(), nullable=True),
    UniqueConstraint("connector", "sender", "sender_message_id", name="uq_message_sender_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("message_id", String(36), ForeignKey("messages.id"), nullable=False),
    Column("mailbox_kind", String(16), nullable=False),
    Column("mailbox_id", String(64), nullable=False),
    Column("connector", String(63), nullable=False),
    Column("message_type", String(63), nullable=False),
    Column("purpose", String(63), nullable=True),
    Column("legal_basis", Text, nullable=True),
    Column("content", LargeBinary, nullable=True),
    Column("content_type", String(100), nullable=False),
    Column("subject_refs", Text, nullable=False),
    Column("order_key", String(64), nullable=True),
    Column("delivery_mode", String(8), nullable=False),
    Column("endpoint", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Column("read_count", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("purged_at", UtcDateTime(), nullable=True),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    # W3C traceparent of the intake that queued it: deliveries continue the message's trace
    Column("traceparent", String(55), nullable=True),
    Index("ix_deliveries_mailbox", "mailbox_kind", "mailbox_id", "status", "seq"),
    Index("ix_deliveries_due", "delivery_mode", "status", "next_attempt_at"),
    Index("ix_deliveries_status_seq", "status", "seq"),
    # A claim takes only stream heads: no earlier delivery of the stream unsettled. Partial,
    # on unsettled deliveries only, so that check costs the same however long the stream's
    # settled history is (on all rows it walked that history, row by row).
    Index(
        "ix_deliveries_unsettled_order",
        "mailbox_kind",
        "mailbox_id",
        "purpose",
        "order_key",
        "seq",
        sqlite_where=text(UNSETTLED),
        postgresql_where=text(UNSETTLED),
    ),
)

processing_log = Table(
    "processing_log",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("timestamp", UtcDateTime(), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("parent_span_id", String(16), nullable=True),
    Column("activity", String(32), nullable=False),
    Column("purpose", String(63), nullable=False),
    Column("legal_basis", Text, nullable=False),
    Column("controller", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("subject_ref", String(64), nullable=True),
    Column("connector", String(63), nullable=True),
    Column("message_type", String(63), nullable=True),
    Column("message_id", String(36), nullable=True),
    Column("delivery_id", String(36), nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_log_controller_seq", "controller", "seq"),
    Index("ix_log_controller_subject", "controller", "subject_ref"),
    # Never reuse a number, not even after the newest records were purged: a leaf names its
    # record by seq.
    sqlite_autoincrement=True,
)

used_assertions = Table(
    "used_assertions",
    metadata,
    # Acting-for assertions a replica has accepted, until they expire: shared by every replica
    # on one database, so an assertion is accepted once per node, not once per replica.
    Column("issuer", String(128), primary_key=True),
    Column("jti", String(128), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),  # seconds since the epoch
    Index("ix_used_assertions_expiry", "expires_at"),
)


log_leaves = Table(
    "log_leaves",
    metadata,
    # The Merkle tree of the processing log: one leaf per record, in commit order. A leaf
    # outlives its record (retention purges records, never leaves), so the tree stays
    # verifiable for ever. leaf_index is dense: 0, 1, 2, … with no gaps.
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("record_id", String(36), nullable=False, unique=True),
    Column("leaf_hash", LargeBinary, nullable=False),
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    # Signed tree heads: the root of the first tree_size leaves, signed with the node's key.
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("origin", String(255), nullable=False),
    Column("algorithm", String(32), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("certificate", Text, nullable=False),  # the signer's PEM chain, leaf first
)

conversations = Table(
    "conversations",
    metadata,
    # One conversation item: opened by one item of a message (e.g. a requested product of a
    # WMO315), closed by a matching item of another (the WMO301 assigning it). A closer that
    # arrives first is kept as "unmatched" until its opener comes. No personal data: the
    # correlation values are only present as a keyed hash.
    Column("id", String(36), primary_key=True),
    Column("connector", String(63), nullable=False),
    Column("conversation", String(63), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("gemeente", String(64), nullable=False),
    Column("participant", String(64), nullable=False),
    Column("sender", String(64), nullable=False),  # the opener's sender
    Column("recipient", String(64), nullable=False),  # who must answer
    Column("status", String(16), nullable=False),  # open, closed, late, unmatched
    Column("opener_message_id", String(36), nullable=True),
    Column("opener_type", String(63), nullable=True),
    Column("opener_reference", String(128), nullable=True),
    Column("opener_item", Integer, nullable=True),
    Column("opened_at", UtcDateTime(), nullable=True),
    Column("due_at", UtcDateTime(), nullable=True),
    Column("closer_message_id", String(36), nullable=True),
    Column("closer_type", String(63), nullable=True),
    Column("closer_reference", String(128), nullable=True),
    Column("closed_at", UtcDateTime(), nullable=True),
    Index("ix_conversations_key", "connector", "conversation", "key_hash", "status"),
    Index("ix_conversations_due", "status", "due_at"),
    Index("ix_conversations_gemeente", "gemeente", "status"),
    Index("ix_conversations_participant", "participant", "status"),
)

shadow_counts = Table(
    "shadow_counts",
    metadata,
    # Shadow validation results, shared by the replicas of a node: per connector and shadow
    # (its revision and content hash), messages evaluated (kind "") and differences by kind.
    Column("connector", String(63), primary_key=True),
    Column("shadow_key", String(64), primary_key=True),
    Column("message_type", String(63), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

shadow_examples = Table(
    "shadow_examples",
    metadata,
    # Distinct examples of differences: paths and codes only, never values.
    Column("connector", String(63), primary_key=True),
    Column("shadow_key", String(64), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("example", Text, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)
