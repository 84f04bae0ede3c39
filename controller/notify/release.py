"""Which notification events a Release has reached, and what they say. Pure: no I/O; time comes in as ``now``.

Events are level-triggered from the status (and recorded once: ``notifications.recorded``):

* ``PushStarted`` — the phases are resolved (the push began).
* ``Succeeded`` — every phase passed.
* ``RolledBack`` — the push failed and the cluster side is done (RolledBack, or Failed when nothing could be
  restored). Sent once the git revert has settled (pushed, found, conflict, skipped, waived) so the message
  names the revert commit — or, when the revert is still pending :data:`REVERT_WAIT` after the rollback,
  then, saying the revert is pending (RevertFailed follows if it keeps failing).
* ``RevertFailed`` — the revert conflicts, or :data:`REVERT_FAILED_AFTER` attempts failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.models.common import person_name
from controller.models.notify import GaugeFacts, NotificationMessage, Sink
from controller.models.release import REVERT_LANDED, REVERT_SETTLED, ReleaseSpec, ReleaseStatus
from controller.notify.outbox import effective_sinks, record
from controller.release.plan import derive_phase, revert_pending

#: The RolledBack message waits at most this long for the revert to settle (then it says "pending").
REVERT_WAIT = timedelta(seconds=30)
#: A revert that failed this many attempts in a row is reported (RevertFailed) while it goes on retrying.
REVERT_FAILED_AFTER = 3


def key_prefix(namespace: str, name: str, uid: str) -> str:
    """``<namespace>/<name>/<uid prefix>``: a namesake created later never shares a delivery key."""
    return f"{namespace}/{name}/{uid[:8]}" if uid else f"{namespace}/{name}"


def reached(spec: ReleaseSpec, status: ReleaseStatus, now: datetime) -> list[str]:
    """The events this status has reached (recorded or not), in the order they happen."""
    out: list[str] = []
    if status.phases and status.started_at is not None:
        out.append("PushStarted")
    phase = derive_phase(status)
    if phase == "Succeeded":
        out.append("Succeeded")
    if status.failure is not None and status.completed_at is not None and phase in ("RolledBack", "Failed"):
        waited = now >= (status.rolled_back_at or status.completed_at) + REVERT_WAIT
        if not revert_pending(spec, status) or waited or _revert_failed(status):
            out.append("RolledBack")
    if _revert_failed(status):
        out.append("RevertFailed")
    return out


def _revert_failed(status: ReleaseStatus) -> bool:
    r = status.revert
    if r is None:
        return False
    return r.state == "Conflict" or (
        r.state not in REVERT_SETTLED and r.attempt_started_at is None and r.attempts >= REVERT_FAILED_AFTER
    )


def message(
    event: str,
    spec: ReleaseSpec,
    status: ReleaseStatus,
    namespace: str,
    name: str,
    now: datetime,
    track: str | None = None,
) -> NotificationMessage:
    """What the event says: who pushed, which gate failed with its numbers, and the revert."""
    src = spec.source
    short = src.revision[:7]
    who = person_name(status.author)
    by = f" by {who}" if who else ""
    failure = status.failure
    row = None
    if failure is not None and failure.gate:
        row = next((r for r in status.gauges if r.gate == failure.gate and r.phase == failure.phase), None)
    revert = status.revert
    phase = derive_phase(status)
    summary: list[str] = []
    if event == "PushStarted":
        title = f"Pushing {short}{by} to {namespace}/{name}"
        summary.append(f"Phases: {', '.join(p.name for p in status.phases)}.")
    elif event == "Succeeded":
        title = f"Pushed {short}{by}: every phase passed ({namespace}/{name})"
    elif event == "RolledBack":
        verb = "rolled back" if phase == "RolledBack" else "failed (the cluster could not be fully restored)"
        title = f"Push of {short}{by} {verb}: " + (
            f"gate {failure.gate} failed in phase {failure.phase}"
            if failure is not None and failure.gate
            else (failure.reason if failure is not None else "failed")
        )
        if failure is not None:
            summary.append(f"{failure.reason}: {failure.message}")
    else:  # RevertFailed
        state = revert.state if revert else "Pending"
        title = f"Revert of {short}{by} not on {src.branch}: {state}" + (
            f" after {revert.attempts} attempt(s)" if revert and state != "Conflict" else ""
        )
        if revert is not None and revert.reason:
            summary.append(revert.reason)
        summary.append("The commit lock holds until a human looks (stopline unlock).")
    if event in ("RolledBack", "RevertFailed") and revert is not None:
        if revert.commit:
            summary.append(f"Revert {revert.commit[:12]} {revert.state} on {src.branch}.")
        elif revert.state == "Pending":
            summary.append(f"Revert pending (attempt {revert.attempts}): {revert.reason or 'not pushed yet'}.")
        elif event == "RolledBack" and revert.state in ("Skipped", "Waived", "Conflict"):
            summary.append(f"Revert {revert.state}: {revert.reason or ''}".rstrip(": ") + ".")
    return NotificationMessage(
        event=event,
        namespace=namespace,
        name=name,
        at=_event_time(event, status, now),
        title=title,
        summary="\n".join(summary),
        phase=phase,
        repo=src.repo,
        branch=src.branch,
        revision=src.revision,
        author=status.author,
        committer=status.committer,
        reason=failure.reason if failure is not None else None,
        gauge=None
        if row is None
        else GaugeFacts(
            gate=row.gate,
            phase=row.phase,
            pre_push=row.pre_push,
            post_push=row.post_push,
            delta=row.delta,
            delta_percent=row.delta_percent,
            threshold=row.threshold,
            verdict=row.verdict,
            message=row.message,
        ),
        revert_state=revert.state if revert is not None and failure is not None else None,
        revert_commit=revert.commit if revert is not None else None,
        revert_reason=revert.reason if revert is not None and revert.state not in REVERT_LANDED else None,
        track=track,
    )


def _event_time(event: str, status: ReleaseStatus, now: datetime) -> datetime:
    if event == "PushStarted":
        return status.started_at or now
    if event in ("Succeeded", "RolledBack"):
        return status.completed_at or now
    return (status.revert.last_attempt_at if status.revert else None) or now


def record_events(
    spec: ReleaseSpec,
    status: ReleaseStatus,
    defaults: Sequence[Sink],
    namespace: str,
    name: str,
    uid: str,
    now: datetime,
    track: str | None = None,
) -> ReleaseStatus:
    """The status with an outbox entry per interested sink for every event reached and not recorded yet."""
    sinks = effective_sinks(spec.notify, defaults)
    if not sinks:
        return status
    recorded = set(status.notifications.recorded) if status.notifications else set()
    new = [e for e in reached(spec, status, now) if e not in recorded and any(a.sink.wants(e) for a in sinks)]
    if not new:
        return status
    notes = status.notifications
    prefix = key_prefix(namespace, name, uid)
    for event in new:
        notes = record(notes, event, message(event, spec, status, namespace, name, now, track), sinks, prefix, now)
    if notes is status.notifications:
        return status
    return status.model_copy(update={"notifications": notes})
