"""Conditions and rollout state: pure functions over dicts."""

from __future__ import annotations

from knooppunt_operator import status
from knooppunt_operator.status import Observed


def test_transition_time_moves_only_when_the_status_flips() -> None:
    first = status.merge_conditions(
        [], [Observed("Ready", "False", "RollingOut", "0 of 1")], generation=1, now="T1"
    )
    assert first == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "RollingOut",
            "message": "0 of 1",
            "observedGeneration": 1,
            "lastTransitionTime": "T1",
        }
    ]
    same = status.merge_conditions(
        first, [Observed("Ready", "False", "Unavailable", "still 0 of 1")], generation=2, now="T2"
    )
    assert same[0]["lastTransitionTime"] == "T1"
    assert same[0]["reason"] == "Unavailable" and same[0]["observedGeneration"] == 2
    flipped = status.merge_conditions(
        same, [Observed("Ready", "True", "Available", "1 of 1")], generation=2, now="T3"
    )
    assert flipped[0]["lastTransitionTime"] == "T3"


def test_conditions_of_other_types_are_kept() -> None:
    foreign = {"type": "Audited", "status": "True", "reason": "Ok", "lastTransitionTime": "T0"}
    merged = status.merge_conditions(
        [foreign], [Observed("Ready", "True", "Available")], generation=1, now="T1"
    )
    assert merged[-1] == foreign


def test_status_patch_is_none_when_nothing_changed() -> None:
    old = {"observedGeneration": 1, "rollout": {"templateHash": "a", "revisions": {"x": 1}}}
    assert status.status_patch(old, dict(old)) is None
    assert status.status_patch(old, {**old, "failedRollout": None}) is None
    assert status.status_patch(
        old, {"observedGeneration": 2, "rollout": {"templateHash": "a", "revisions": {"y": 2}}}
    ) == {"status": {"observedGeneration": 2, "rollout": {"revisions": {"x": None, "y": 2}}}}


def test_merge_diff_removes_and_replaces() -> None:
    assert status.merge_diff(
        {"a": 1, "b": {"c": 1, "d": 2}, "l": [1]}, {"b": {"c": 1}, "l": [2], "e": 3}
    ) == {"a": None, "b": {"d": None}, "l": [2], "e": 3}


def deployment(generation: int = 2, **st: int) -> dict[str, object]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": st}


def test_rollout_state_like_kubectl_rollout_status() -> None:
    assert not status.rollout_state(None).exists
    pending = status.rollout_state(deployment(observedGeneration=1))
    assert not pending.complete and "observe" in pending.message
    half = status.rollout_state(
        deployment(observedGeneration=2, updatedReplicas=1, replicas=3, availableReplicas=2)
    )
    assert not half.complete and half.message == "1 of 2 replicas updated" and half.serving
    old_left = status.rollout_state(
        deployment(observedGeneration=2, updatedReplicas=2, replicas=3, availableReplicas=2)
    )
    assert not old_left.complete and old_left.message == "1 old replicas pending termination"
    done = status.rollout_state(
        deployment(
            observedGeneration=2,
            updatedReplicas=2,
            replicas=2,
            availableReplicas=2,
            readyReplicas=2,
        )
    )
    assert done.complete and done.message == "2 of 2 replicas available"
    stuck = status.rollout_state(
        {
            **deployment(observedGeneration=2),
            "status": {
                "observedGeneration": 2,
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ],
            },
        }
    )
    assert stuck.deadline_exceeded and not stuck.complete
