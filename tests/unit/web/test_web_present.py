"""Text helpers shared by the CLI and the page: rollout wording, numbers, failure text, safe URLs."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from controller.models.experiment import ExperimentSpec
from controller.models.release import FailureStatus, GaugeRow, PhaseStatus, UndoStatus
from controller.web import page, present
from controller.web.present import DASH, phase_objects, stuck_text
from controller.web.views import TrackView
from web import samples


def experiment(**kw: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"key": "k", "branches": {"control": 0.5, "enhanced": 0.5}, **kw})


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (experiment(rollout=10), "To Users 10%"),
        (experiment(rollout=100), "To Users 100%"),
        (experiment(rollout=2.5), "To Users 2.5%"),
        (experiment(audience=["qa", "admin"]), "QA and Admin only"),
        (experiment(audience=["qa"]), "QA only"),
        (experiment(audience=["qa", "admin", "beta"]), "QA, Admin and Beta only"),
        (experiment(audience=["qa", "admin"], rollout=10), "QA and Admin only, 10%"),
        (None, "—"),
    ],
    ids=["10", "100", "fraction", "imvu", "one-group", "three-groups", "audience-and-rollout", "invalid-spec"],
)
def test_rollout_text(spec: ExperimentSpec | None, text: str) -> None:
    assert present.rollout_text(spec) == text


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://bot:ghp_secret@git.example.com/shop/app.git", "https://git.example.com/shop/app.git"),
        ("https://token@git.example.com/a", "https://git.example.com/a"),
        ("ssh://git@host:22/repo.git", "ssh://host:22/repo.git"),
        ("https://git.example.com/a@b", "https://git.example.com/a@b"),
        ("git@github.com:shop/app.git", "git@github.com:shop/app.git"),
        ("file:///srv/git/app.git", "file:///srv/git/app.git"),
    ],
)
def test_safe_url_drops_credentials(url: str, safe: str) -> None:
    assert present.safe_url(url) == safe


def test_track_page_never_shows_url_credentials() -> None:
    obj = samples.track_object("web", samples.locked_track_status())
    obj["spec"]["source"]["repo"] = "https://bot:ghp_secret@git.example.com/shop/app.git"
    html = page.render_track(TrackView.from_object(obj), [], samples.NOW)
    assert "ghp_secret" not in html and "bot:" not in html
    assert "https://git.example.com/shop/app.git" in html


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (
            FailureStatus(gate="load", phase="chat", reason="GateFailed", message="gate load 7.20 > 6 in phase chat"),
            "gate load 7.20 > 6 in phase chat",
        ),
        (
            FailureStatus(gate="load", phase="chat", reason="GateFailed", message="7.20 > 6"),
            "gate load in phase chat: 7.20 > 6",
        ),
        (
            FailureStatus(phase="canary", reason="Aborted", message="aborted by user: bad"),
            "Aborted in phase canary: aborted by user: bad",
        ),
        (FailureStatus(reason="ManifestError", message="no Deployment"), "ManifestError: no Deployment"),
    ],
    ids=["planner-message", "bare-message", "abort", "no-phase"],
)
def test_failure_text(failure: FailureStatus, text: str) -> None:
    assert present.failure_text(failure) == text


def test_numbers() -> None:
    row = GaugeRow(
        gate="g", phase="p", pre_push=4.13, post_push=None, delta=None, threshold="", verdict="Error", dry_run=True
    )
    assert present.gauge_cells(row) == ("g", "p", "4.13", "—", "—", "—", "—", "Error (dry run)")
    assert (present.num(math.nan), present.signed(-0.4), present.percent(74.333)) == ("—", "-0.40", "+74.33%")
    assert (present.p_value(0.00001), present.p_value(1e-9), present.p_value(None)) == ("0.000010", "1.00e-09", "—")
    assert [present.duration(s) for s in (None, 42, 185, 3720)] == ["—", "42s", "3m05s", "1h02m"]
    now = samples.NOW
    ages = [present.age(now - timedelta(seconds=s), now) for s in (5, 600, 3 * 3600, 5 * 86400, -30)]
    assert ages == ["5s", "10m", "3h", "5d", "0s"]
    assert present.short(samples.BAD) == "3f9c2e1" and present.short(None) == "—"


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (PhaseStatus(name="a", deployments=["web"]), "Deployment/web"),
        (
            PhaseStatus(
                name="a",
                deployments=["web"],
                objects=["ConfigMap/settings", "Deployment/web", "StatefulSet/db"],
                pruned=["Service/old"],
            ),
            "ConfigMap/settings, Deployment/web, StatefulSet/db, Service/old (pruned)",
        ),
        (PhaseStatus(name="a"), DASH),
    ],
    ids=["older-status", "objects-and-pruned", "nothing"],
)
def test_phase_objects(phase: PhaseStatus, expected: str) -> None:
    assert phase_objects(phase) == expected


def test_stuck_text_of_a_restore_and_none_once_final() -> None:
    status = samples.stuck_status()
    cause = status.phases[0].stuck
    assert cause is not None
    status.failure = FailureStatus(reason="FailedCreate", message=cause.message, phase="canary")
    assert stuck_text(status) is None, "the phase's cause is history once the push failed"
    status.undo = UndoStatus(at=samples.NOW, objects=["Deployment/frontend"], stuck=cause)
    assert stuck_text(status) == (
        f"{samples.SA_CAUSE} — cannot heal by waiting: restore stops waiting at 2024-05-30 12:00:57Z"
    )
    status.completed_at = samples.NOW + timedelta(minutes=1)
    assert stuck_text(status) is None
