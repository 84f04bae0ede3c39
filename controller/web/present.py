"""Plain-text formatting shared by the CLI and the status page (numbers, ages, rollout wording). Pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from controller.models.experiment import ExperimentSpec
from controller.models.release import FailureStatus, GaugeRow, PhaseStatus, ReleaseStatus, StuckStatus

DASH = "—"


def short(sha: str | None, n: int = 7) -> str:
    """Abbreviated commit SHA."""
    return sha[:n] if sha else DASH


def num(x: float | None, digits: int = 2) -> str:
    """A gauge number: fixed decimals, a dash when missing."""
    if x is None or not math.isfinite(x):
        return DASH
    return f"{x:.{digits}f}"


def signed(x: float | None, digits: int = 2) -> str:
    """A delta with its sign."""
    if x is None or not math.isfinite(x):
        return DASH
    return f"{x:+.{digits}f}"


def percent(x: float | None, digits: int = 2) -> str:
    """A signed percentage, e.g. ``+19.84%``."""
    if x is None or not math.isfinite(x):
        return DASH
    return f"{x:+.{digits}f}%"


def p_value(p: float | None) -> str:
    """A p-value with enough digits to read small ones."""
    if p is None or not math.isfinite(p):
        return DASH
    return f"{p:.6f}" if p >= 5e-7 else f"{p:.2e}"


def chance(value: float | None) -> str:
    """A chance to win as a percentage, ``97.31%``."""
    return DASH if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def loss(value: float | None) -> str:
    """An expected loss in metric units: 6 decimals, tiny ones in exponent form."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.6f}" if value == 0 or abs(value) >= 5e-7 else f"{value:.2e}"


def timestamp(at: datetime | None) -> str:
    """UTC time to the second, ``2024-05-01 12:03:04Z``."""
    if at is None:
        return DASH
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def age(at: datetime | None, now: datetime) -> str:
    """Kubernetes-style age: ``45s``, ``12m``, ``3h``, ``5d``."""
    if at is None:
        return DASH
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def duration(seconds: float | None) -> str:
    """A push duration: ``42s``, ``3m05s``, ``1h02m``."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def gauge_cells(row: GaugeRow) -> tuple[str, str, str, str, str, str, str, str]:
    """The IMVU gauges columns: gate, phase, pre, post, delta, delta %, threshold, verdict."""
    verdict = row.verdict + (" (dry run)" if row.dry_run else "")
    return (
        row.gate,
        row.phase,
        num(row.pre_push),
        num(row.post_push),
        signed(row.delta),
        percent(row.delta_percent),
        row.threshold or DASH,
        verdict,
    )


def phase_objects(phase: PhaseStatus) -> str:
    """What a phase pushes (Kind/name, apply order) and prunes; older statuses list only Deployments."""
    pushed = list(phase.objects) or [f"Deployment/{d}" for d in phase.deployments]
    return ", ".join([*pushed, *(f"{k} (pruned)" for k in phase.pruned)]) or DASH


def current_stuck(status: ReleaseStatus) -> tuple[str, StuckStatus] | None:
    """(where, cause) while the current phase's rollout or the restore is stuck; None otherwise."""
    if status.completed_at is not None:
        return None
    if status.failure is not None:
        stuck = status.undo.stuck if status.undo is not None else None
        return ("restore", stuck) if stuck is not None else None
    phase = next((p for p in status.phases if p.name == status.current_phase), None)
    if phase is None or phase.stuck is None or phase.state != "Progressing":
        return None
    return f"phase {phase.name}", phase.stuck


def stuck_text(status: ReleaseStatus) -> str | None:
    """Why the rollout (or the restore) is not Available yet, and what happens next; None when it is not stuck."""
    found = current_stuck(status)
    if found is None:
        return None
    where, stuck = found
    if not stuck.heals and stuck.fails_at is not None:
        what = "fails" if where != "restore" else "stops waiting"
        return f"{stuck.message} — cannot heal by waiting: {where} {what} at {timestamp(stuck.fails_at)}"
    return f"{stuck.message} — may heal: {where} keeps waiting (since {timestamp(stuck.since)})"


def failure_text(failure: FailureStatus) -> str:
    """Why the push failed, naming the gate and phase once (the planner's message often already does)."""
    where = f" in phase {failure.phase}" if failure.phase else ""
    if failure.gate:
        if failure.message.startswith(f"gate {failure.gate}"):
            return failure.message
        return f"gate {failure.gate}{where}: {failure.message}"
    return f"{failure.reason}{where}: {failure.message}"


def safe_url(url: str) -> str:
    """A repository URL without credentials (``https://user:token@host/x`` → ``https://host/x``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{slash}{path}"


def _group(name: str) -> str:
    return name.upper() if len(name) <= 3 else name[:1].upper() + name[1:]


def audience_text(groups: list[str]) -> str:
    """``[qa, admin]`` → ``QA and Admin only``."""
    names = [_group(g) for g in groups]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{joined} only"


def rollout_text(spec: ExperimentSpec | None) -> str:
    """The experiment's rollout as IMVU wrote it: ``To Users 10%`` or ``QA and Admin only``."""
    if spec is None:
        return DASH
    if spec.audience:
        text = audience_text(spec.audience)
        return text if spec.rollout >= 100 else f"{text}, {spec.rollout:g}%"
    return f"To Users {spec.rollout:g}%"
