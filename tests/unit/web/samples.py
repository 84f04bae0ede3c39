"""API objects (as the Kubernetes API returns them) for the CLI and status-page tests.

Built from the models so they stay valid as the schema grows: a Track whose last push was rolled back
(commit lock held), that rolled-back Release with its gauges and revert, a succeeded Release, a push in
progress, Experiments and Events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.models.common import Condition
from controller.models.experiment import (
    BalanceStatus,
    CupedStatus,
    ExperimentStatus,
    ReportRow,
    SegmentReportStatus,
    SrmStatus,
)
from controller.models.release import (
    FailureStatus,
    GaugeRow,
    PhaseStatus,
    ReleaseStatus,
    RevertStatus,
    StuckStatus,
    UndoStatus,
)
from controller.models.track import CommitLock, HistoryEntry, PushLock, TrackStatus

NOW = datetime(2024, 5, 30, 12, 0, 0, tzinfo=UTC)
NS = "shop"
BAD = "3f9c2e1d" + "0" * 32
GOOD = "aaaaaaa1" + "1" * 32
NEXT = "bbbbbbb2" + "2" * 32
REVERT = "c0ffee00" + "3" * 32


def _dump(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


def release_spec(revision: str) -> dict[str, Any]:
    """A valid Release spec with two phases and two gates."""
    return {
        "source": {"repo": "https://git.example.com/shop/app.git", "branch": "main", "revision": revision},
        "phases": [
            {"name": "canary", "deployments": ["web-canary"], "hold": "60s"},
            {"name": "chat", "selector": {"matchLabels": {"tier": "chat"}}, "hold": "2m"},
        ],
        "gates": [
            {"name": "chat-loadavg", "query": "avg(node_load1)", "max": 6, "maxIncreasePercent": 25},
            {"name": "registrations", "query": "sum(rate(registrations_total[1m]))", "maxDecreasePercent": 20},
        ],
    }


def release_object(
    name: str, revision: str, status: ReleaseStatus | None, *, track: str | None = "web", created: datetime = NOW
) -> dict[str, Any]:
    """A Release as the API returns it."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "uid": f"uid-{name}",
        "creationTimestamp": created.isoformat().replace("+00:00", "Z"),
        "annotations": {},
    }
    if track:
        meta["labels"] = {"stopline.dev/track": track}
    obj: dict[str, Any] = {
        "apiVersion": "stopline.dev/v1alpha1",
        "kind": "Release",
        "metadata": meta,
        "spec": release_spec(revision),
    }
    if status is not None:
        obj["status"] = _dump(status)
    return obj


def gauges(gate_name: str = "chat-loadavg") -> list[GaugeRow]:
    """The IMVU-style table of a push that breached chat-loadavg in phase chat."""
    return [
        GaugeRow(
            gate=gate_name,
            phase="canary",
            pre_push=4.13,
            post_push=4.2,
            delta=0.07,
            delta_percent=1.69,
            threshold=">6 or >+25%",
            verdict="Pass",
            readings=6,
            at=NOW - timedelta(minutes=4),
            message="4.20 within bounds",
        ),
        GaugeRow(
            gate=gate_name,
            phase="chat",
            pre_push=4.13,
            post_push=7.2,
            delta=3.07,
            delta_percent=74.33,
            threshold=">6 or >+25%",
            verdict="Fail",
            breaches=1,
            readings=3,
            at=NOW - timedelta(minutes=2),
            message="7.20 > 6",
        ),
        GaugeRow(
            gate="registrations",
            phase="chat",
            pre_push=12.5,
            post_push=12.1,
            delta=-0.4,
            delta_percent=-3.2,
            threshold="<-20%",
            verdict="Pass",
            readings=3,
            at=NOW - timedelta(minutes=2),
            message="within bounds",
        ),
    ]


def rolled_back_status(gate_name: str = "chat-loadavg") -> ReleaseStatus:
    """A push rolled back in phase 2 (chat) with its revert commit pushed."""
    t0 = NOW - timedelta(minutes=10)
    failed_at = NOW - timedelta(minutes=2)
    return ReleaseStatus(
        phase="RolledBack",
        current_phase=None,
        failed_gate=gate_name,
        phases=[
            PhaseStatus(name="canary", state="RolledBack", started_at=t0, deployments=["web-canary"]),
            PhaseStatus(name="chat", state="Failed", started_at=t0, deployments=["chat-a", "chat-b"]),
        ],
        gauges=gauges(gate_name),
        failure=FailureStatus(
            gate=gate_name,
            phase="chat",
            reason="GateFailed",
            message=f"gate {gate_name} 7.20 > 6 in phase chat",
            at=failed_at,
        ),
        revert=RevertStatus(
            state="Pushed", commit=REVERT, pushed_at=failed_at, message="stopline: revert 3f9c2e1", attempts=1
        ),
        undo=UndoStatus(at=failed_at, restored=["web-canary", "chat-a", "chat-b"]),
        rolled_back_at=failed_at,
        started_at=t0,
        completed_at=failed_at,
        message="rolled back: gate chat-loadavg 7.20 > 6 in phase chat",
        conditions=[
            Condition(type="Ready", status="False", reason="GateFailed", message="gate failed"),
            Condition(type="RolledBack", status="True", reason="Restored", message="restored 3 deployments"),
            Condition(type="GitReverted", status="True", reason="Pushed", message=f"revert {REVERT}"),
        ],
    )


def succeeded_status() -> ReleaseStatus:
    """A push that passed every phase."""
    return ReleaseStatus(
        phase="Succeeded",
        phases=[PhaseStatus(name="canary", state="Passed"), PhaseStatus(name="chat", state="Passed")],
        gauges=[g.model_copy(update={"verdict": "Pass", "message": "ok"}) for g in gauges()],
        started_at=NOW - timedelta(days=1, minutes=10),
        completed_at=NOW - timedelta(days=1),
    )


def holding_status() -> ReleaseStatus:
    """A push holding in its first phase."""
    return ReleaseStatus(
        phase="Holding",
        current_phase="canary",
        phases=[PhaseStatus(name="canary", state="Holding"), PhaseStatus(name="chat")],
        gauges=gauges()[:1],
        started_at=NOW - timedelta(minutes=1),
    )


SA_CAUSE = (
    'frontend: FailedCreate: pods "frontend-7d4b9c-" is forbidden: error looking up service account '
    'shop/frontend: serviceaccount "frontend" not found'
)


def stuck_status(*, heals: bool = False) -> ReleaseStatus:
    """A push whose first phase is stuck rolling out: a missing ServiceAccount, or (heals) no node fits."""
    if heals:
        stuck = StuckStatus(
            workload="Deployment/db",
            reason="Unschedulable",
            message="db: Unschedulable: 0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
            heals=True,
            pods=1,
            since=NOW - timedelta(seconds=20),
        )
    else:
        stuck = StuckStatus(
            workload="Deployment/frontend",
            reason="FailedCreate",
            message=SA_CAUSE,
            heals=False,
            since=NOW - timedelta(seconds=3),
            fails_at=NOW + timedelta(seconds=57),
        )
    return ReleaseStatus(
        phase="Progressing",
        current_phase="canary",
        phases=[PhaseStatus(name="canary", state="Progressing", stuck=stuck), PhaseStatus(name="chat")],
        started_at=NOW - timedelta(seconds=5),
        message=f"phase canary stuck: {stuck.message}",
    )


def history(days: int = 30) -> list[HistoryEntry]:
    """Newest first: today one rollback + one success, 3 days ago two successes, 40 days ago one (off-graph)."""
    return [
        HistoryEntry(
            revision=BAD,
            release="web-3f9c2e1",
            result="RolledBack",
            at=NOW - timedelta(minutes=2),
            started_at=NOW - timedelta(minutes=10),
            duration_seconds=480,
            failed_gate="chat-loadavg",
            revert_commit=REVERT,
        ),
        HistoryEntry(
            revision=GOOD,
            release="web-aaaaaaa",
            result="Succeeded",
            at=NOW - timedelta(hours=1),
            started_at=NOW - timedelta(hours=1, minutes=5),
            duration_seconds=300,
        ),
        HistoryEntry(revision=GOOD, release="web-a1", result="Succeeded", at=NOW - timedelta(days=3)),
        HistoryEntry(revision=GOOD, release="web-a2", result="Succeeded", at=NOW - timedelta(days=3, hours=2)),
        HistoryEntry(revision=GOOD, release="web-old", result="RolledBack", at=NOW - timedelta(days=40)),
    ]


def locked_track_status() -> TrackStatus:
    """The Track after the rollback: commit lock held, no push in flight."""
    return TrackStatus(
        last_seen=BAD,
        last_seen_at=NOW,
        last_good=GOOD,
        last_pushed=BAD,
        commit_lock=CommitLock(
            locked=True,
            reason="web-3f9c2e1 rolledback: gate chat-loadavg: 7.20 > 6",
            since=NOW - timedelta(minutes=2),
            release="web-3f9c2e1",
            revision=BAD,
            by="stopline",
        ),
        history=history(),
    )


def open_track_status() -> TrackStatus:
    """A Track pushing, line open."""
    return TrackStatus(
        last_seen=NEXT,
        last_good=GOOD,
        current="web-bbbbbbb",
        push_lock=PushLock(held=True, release="web-bbbbbbb", since=NOW - timedelta(minutes=1)),
    )


def track_object(name: str, status: TrackStatus | None) -> dict[str, Any]:
    """A Track as the API returns it."""
    obj: dict[str, Any] = {
        "apiVersion": "stopline.dev/v1alpha1",
        "kind": "Track",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "creationTimestamp": "2024-05-01T00:00:00Z"},
        "spec": {
            "source": {"repo": "https://git.example.com/shop/app.git", "branch": "main"},
            "template": {k: v for k, v in release_spec(GOOD).items() if k != "source"},
        },
    }
    if status is not None:
        obj["status"] = _dump(status)
    return obj


def experiment_object(
    name: str,
    *,
    rollout: float = 10,
    audience: list[str] | None = None,
    close_on: str | None = None,
    force: dict[str, dict[str, str]] | None = None,
    segmented: bool = False,
    cuped: bool = False,
) -> dict[str, Any]:
    """An Experiment with the IMVU report in its status."""
    spec: dict[str, Any] = {
        "key": "GDCEurope2011",
        "rollout": rollout,
        "branches": {"control": 0.5, "enhanced": 0.5},
    }
    if audience:
        spec["audience"] = audience
    if close_on:
        spec["closeOn"] = close_on
    if force:
        spec["force"] = force
    status = ExperimentStatus(
        report=[
            ReportRow(branch="control", samples=148266, conversions=64630, mean=0.43591, variance=0.24589),
            ReportRow(
                branch="enhanced",
                samples=150702,
                conversions=66903,
                mean=0.44394,
                variance=0.24686,
                p_value=0.00001,
                significance=99.999,
                lift_percent=1.84,
                ci=[1.02, 2.67],
            ),
        ],
        srm=SrmStatus(p_value=0.41, ok=True),
        decision="Closed:enhanced" if close_on else "Winner:enhanced",
        p_value=0.00001,
        closed_on=close_on,
        updated_at=NOW,
    )
    if cuped:
        status.cuped = CupedStatus(
            theta=0.801234567,
            report=[
                ReportRow(branch="control", samples=1500, mean=3.41234, variance=1.02),
                ReportRow(
                    branch="enhanced", samples=1500, mean=3.53311, variance=0.99, p_value=0.0012, lift_percent=3.54
                ),
            ],
            variance_reduction={"enhanced": 0.6712},
        )
    if segmented:
        status.segments = [
            SegmentReportStatus(
                dimension="country",
                segment="de",
                report=[
                    ReportRow(branch="control", samples=300, conversions=120, mean=0.4),
                    ReportRow(
                        branch="enhanced", samples=700, conversions=300, mean=3 / 7, p_value=0.3521, lift_percent=7.14
                    ),
                ],
                srm=SrmStatus(p_value=2.9e-36, ok=False),
            ),
            SegmentReportStatus(
                dimension="country",
                segment="fr",
                report=[
                    ReportRow(branch="control", samples=1010, conversions=400, mean=400 / 1010),
                    ReportRow(branch="enhanced", samples=990, conversions=410, mean=410 / 990, p_value=0.41),
                ],
                srm=SrmStatus(p_value=0.654721, ok=True),
            ),
        ]
        status.balance = [
            BalanceStatus(
                dimension="country", segments=2, p_value=1.4e-35, chi_square=160.2, df=2, ok=False, imbalanced=["de"]
            )
        ]
    return {
        "apiVersion": "stopline.dev/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2024-05-01T00:00:00Z"},
        "spec": spec,
        "status": _dump(status),
    }


def events(name: str = "web-3f9c2e1") -> list[dict[str, Any]]:
    """core/v1 Events about the rolled-back Release (deliberately out of order)."""

    def ev(minutes: int, type_: str, reason: str, message: str) -> dict[str, Any]:
        at = (NOW - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
        return {
            "metadata": {"name": f"{name}.{minutes}", "namespace": NS},
            "involvedObject": {"kind": "Release", "name": name},
            "type": type_,
            "reason": reason,
            "message": message,
            "lastTimestamp": at,
            "count": 1,
        }

    return [
        ev(2, "Warning", "GateFailed", "gate chat-loadavg: 7.20 > 6"),
        ev(10, "Normal", "PushStarted", "pushing 3f9c2e1 in 2 phase(s)"),
        ev(1, "Normal", "RolledBack", "restored web-canary, chat-a, chat-b"),
    ]


def cluster() -> dict[str, dict[str, dict[str, Any]]]:
    """plural -> name -> object, for the fakes."""
    return {
        "tracks": {
            "web": track_object("web", locked_track_status()),
            "api": track_object("api", open_track_status()),
        },
        "releases": {
            "web-3f9c2e1": release_object(
                "web-3f9c2e1", BAD, rolled_back_status(), created=NOW - timedelta(minutes=10)
            ),
            "web-aaaaaaa": release_object("web-aaaaaaa", GOOD, succeeded_status(), created=NOW - timedelta(days=1)),
            "web-bbbbbbb": release_object(
                "web-bbbbbbb", NEXT, holding_status(), track="api", created=NOW - timedelta(minutes=1)
            ),
        },
        "experiments": {
            "gdc": experiment_object("gdc", rollout=10),
            "beta": experiment_object("beta", rollout=100, audience=["qa", "admin"]),
            "done": experiment_object("done", close_on="enhanced"),
        },
    }
