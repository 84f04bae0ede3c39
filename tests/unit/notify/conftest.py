"""Statuses of a Release at the moments notifications are about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.models.release import (
    FailureStatus,
    GaugeRow,
    PhaseStatus,
    ReleaseSpec,
    ReleaseStatus,
    RevertStatus,
    UndoStatus,
)

T0 = datetime(2026, 12, 1, 17, 24, 41, tzinfo=UTC)
REVISION = "3f9c2e1d" + "0" * 32
UID = "7c1e0a52-aaaa-bbbb-cccc-000000000001"


def release_spec(notify: list[dict[str, Any]] | None = None) -> ReleaseSpec:
    return ReleaseSpec.model_validate(
        {
            "source": {"repo": "https://git.example.com/shop/app.git", "revision": REVISION},
            "phases": [{"name": "canary", "deployments": ["web-canary"]}, {"name": "chat", "deployments": ["chat"]}],
            "gates": [{"name": "chat-loadavg", "query": "avg(node_load1)", "max": 6, "maxIncreasePercent": 25}],
            "notify": notify if notify is not None else [{"name": "ops", "webhook": {"url": "http://hooks.local/x"}}],
        }
    )


def holding() -> ReleaseStatus:
    return ReleaseStatus(
        phases=[
            PhaseStatus(name="canary", state="Passed", started_at=T0),
            PhaseStatus(name="chat", state="Holding", started_at=T0 + timedelta(seconds=20)),
        ],
        current_phase="chat",
        started_at=T0,
        author="Mey Tan <mey@example.com>",
        committer="Henry Stein <henstein@example.com>",
    )


def rolled_back(revert: str = "Pushed", attempts: int = 1, after: float = 40.0) -> ReleaseStatus:
    s = holding()
    done = T0 + timedelta(seconds=after)
    s.current_phase = None
    s.phases[1].state = "Failed"
    s.gauges = [
        GaugeRow(
            gate="chat-loadavg",
            phase="chat",
            pre_push=4.13,
            post_push=7.2,
            delta=3.07,
            delta_percent=74.33,
            threshold=">6 or >+25%",
            verdict="Fail",
            message="7.20 > 6",
            readings=3,
        ),
    ]
    s.failure = FailureStatus(
        gate="chat-loadavg",
        phase="chat",
        reason="GateFailed",
        message="gate chat-loadavg 7.20 > 6 in phase chat",
        at=done,
    )
    s.failed_gate = "chat-loadavg"
    s.undo = UndoStatus(at=done, restored=["web-canary", "chat"])
    s.rolled_back_at = done
    s.completed_at = done
    commit = "9a8b7c6d5e4f" + "1" * 28 if revert == "Pushed" else None
    s.revert = RevertStatus(
        state=revert,
        commit=commit,
        attempts=attempts,
        last_attempt_at=done,  # type: ignore[arg-type]
        reason=None if revert == "Pushed" else "Unreachable: git daemon down",
    )
    return s
