"""Durations, label selectors and conditions shared by every resource model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from controller.models.common import (
    Condition,
    LabelSelector,
    format_duration,
    get_condition,
    parse_duration,
    set_condition,
)
from controller.models.release import Phase


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("60s", timedelta(seconds=60), "1m"),
        ("2m", timedelta(minutes=2), "2m"),
        ("1h30m", timedelta(hours=1, minutes=30), "1h30m"),
        ("250ms", timedelta(milliseconds=250), "250ms"),
        ("1.5s", timedelta(seconds=1.5), "1s500ms"),
        ("0s", timedelta(0), "0s"),
        ("1h0m5s", timedelta(hours=1, seconds=5), "1h5s"),
        ("90m", timedelta(minutes=90), "1h30m"),
    ],
    ids=["60s", "2m", "1h30m", "250ms", "1.5s", "0s", "1h0m5s", "90m"],
)
def test_duration_round_trip(text: str, expected: timedelta, canonical: str) -> None:
    assert parse_duration(text) == expected
    assert format_duration(expected) == canonical
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(30, timedelta(seconds=30)), (0.5, timedelta(milliseconds=500)), (timedelta(minutes=1), timedelta(minutes=1))],
    ids=["int-seconds", "float-seconds", "timedelta"],
)
def test_duration_accepts_numbers_and_timedeltas(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 minutes", "invalid duration '10 minutes'"),
        ("10d", "invalid duration '10d'"),
        ("s", "invalid duration 's'"),
        ("", "invalid duration ''"),
        (-1, "must not be negative"),
        (True, "invalid duration True"),
        (None, "invalid duration None"),
    ],
    ids=["words", "days", "unit-only", "empty", "negative", "bool", "none"],
)
def test_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


def test_duration_field_serializes_go_style() -> None:
    phase = Phase.model_validate({"name": "canary", "deployments": ["web"], "hold": "90s"})
    assert phase.hold == timedelta(seconds=90)
    assert phase.wire()["hold"] == "1m30s"


SELECTOR_CASES = [
    ({"matchLabels": {"tier": "chat"}}, {"tier": "chat", "app": "web"}, True),
    ({"matchLabels": {"tier": "chat"}}, {"tier": "web"}, False),
    ({"matchLabels": {"tier": "chat"}}, {}, False),
    ({"matchLabels": {"tier": "chat", "app": "web"}}, {"tier": "chat"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "c"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "b"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
    ({"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, {"canary": ""}, True),
    ({"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, {"other": "x"}, False),
    ({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, {"other": "x"}, True),
    ({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, {"canary": "1"}, False),
    (
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["chat"]}],
        },
        {"app": "web", "tier": "chat"},
        True,
    ),
    (
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["chat"]}],
        },
        {"app": "api", "tier": "chat"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    SELECTOR_CASES,
    ids=[
        "labels-match",
        "labels-differ",
        "labels-missing",
        "labels-partial",
        "in-match",
        "in-other-value",
        "in-absent",
        "notin-other-value",
        "notin-absent",
        "notin-listed",
        "exists-present",
        "exists-absent",
        "doesnotexist-absent",
        "doesnotexist-present",
        "labels-and-expressions",
        "labels-fail-expressions-pass",
    ],
)
def test_label_selector_matches(selector: dict[str, object], labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is expected


def test_label_selector_rejects_empty() -> None:
    with pytest.raises(ValidationError, match="selector needs matchLabels or matchExpressions"):
        LabelSelector.model_validate({})


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=9)


def _transition_time(conditions: list[Condition], type_: str) -> datetime | None:
    cond = get_condition(conditions, type_)
    assert cond is not None, f"no {type_} condition"
    return cond.last_transition_time


def test_set_condition_adds_new_condition_at_now() -> None:
    out = set_condition([], "Ready", "False", "Progressing", "pushing canary", T0, generation=3)
    assert out == [
        Condition(
            type="Ready",
            status="False",
            reason="Progressing",
            message="pushing canary",
            last_transition_time=T0,
            observed_generation=3,
        )
    ]


def test_set_condition_keeps_transition_time_when_status_unchanged() -> None:
    first = set_condition([], "Ready", "False", "Progressing", "pushing canary", T0)
    second = set_condition(first, "Ready", "False", "Holding", "holding canary", T1, generation=2)
    assert _transition_time(second, "Ready") == T0
    cond = second[0]
    assert (cond.reason, cond.message, cond.observed_generation) == ("Holding", "holding canary", 2)


def test_set_condition_moves_transition_time_on_status_change() -> None:
    first = set_condition([], "Ready", "False", "Progressing", "pushing", T0)
    second = set_condition(first, "Ready", "True", "Succeeded", "done", T1)
    third = set_condition(second, "Ready", "True", "Succeeded", "still done", T2)
    assert _transition_time(second, "Ready") == T1
    assert _transition_time(third, "Ready") == T1


def test_set_condition_leaves_other_types_and_order_alone() -> None:
    conds = set_condition([], "Ready", "False", "Progressing", "", T0)
    conds = set_condition(conds, "GatesPassing", "True", "AllPass", "", T0)
    updated = set_condition(conds, "Ready", "True", "Succeeded", "", T1)
    assert [c.type for c in updated] == ["Ready", "GatesPassing"]
    assert updated[1] == conds[1]
    assert conds[0].status == "False", "the input list must not be mutated"


def test_set_condition_fills_missing_transition_time() -> None:
    legacy = [Condition(type="Ready", status="True", reason="Succeeded")]
    out = set_condition(legacy, "Ready", "True", "Succeeded", "", T1)
    assert out[0].last_transition_time == T1


def test_get_condition_absent() -> None:
    assert get_condition([], "Ready") is None
