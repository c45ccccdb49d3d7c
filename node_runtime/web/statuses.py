"""The one table from what happened to an HTTP status.

Code below the HTTP layer (the intake pipeline above all) names what happened, a problem kind or
an outcome; only this table turns that into a status code.
"""

from __future__ import annotations

from typing import Literal

ProblemKind = Literal[
    "invalid",  # the request itself is malformed
    "unauthenticated",  # no verified client certificate
    "forbidden",  # authenticated, but not allowed to do this
    "not-found",
    "conflict",  # clashes with what was accepted before
    "too-large",
    "unsupported-media-type",
    "unprocessable",  # well-formed, but refused on its content
    "failed",  # our own failure
]
Outcome = Literal["accepted", "duplicate", "rejected", "refused"]

PROBLEM_STATUS: dict[ProblemKind, int] = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not-found": 404,
    "conflict": 409,
    "too-large": 413,
    "unsupported-media-type": 415,
    "unprocessable": 422,
    "failed": 500,
}

OUTCOME_STATUS: dict[Outcome, int] = {
    "accepted": 202,
    "duplicate": 202,  # the first answer again, byte for byte
    "rejected": 422,
}
