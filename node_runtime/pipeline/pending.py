"""What an intake waits for before it can answer: a read of the store or a durable write.

The steps of the pipeline do not call the store for these; they return what they need and
what to do with the outcome (``then``). :class:`~node_runtime.pipeline.intake.IntakeService`
carries them out, from a thread (``process``: the store blocks) or from the event loop
(``process_async``: the commit runs in the store's writer thread and the loop goes on serving
other requests meanwhile). The steps are the same code either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node_runtime.pipeline.outcomes import IntakeResult
from node_runtime.store.records import MessageRecord
from node_runtime.store.sql import Write


@dataclass(frozen=True, slots=True)
class PendingLookup:
    """The message accepted before under this connector, sender and sender message id."""

    connector: str
    sender: str
    sender_message_id: str
    then: Callable[[MessageRecord | None], Step]


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """A write; ``then`` gets the store's outcome (for an accepted message: the stored record
    and whether this write created it).

    ``answer_waits``: the answer waits until the write is durable. Only a refusal's record
    does not (``False``): nothing of a refused request is stored and its answer promises
    nothing about the record, so the record is committed behind the answer, in the next group
    commit (see :meth:`~node_runtime.store.sql.SqlStore.write_behind`)."""

    write: Write
    then: Callable[[Any], Step]
    answer_waits: bool = True


Step = IntakeResult | PendingLookup | PendingWrite
