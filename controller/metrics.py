"""The controller's own Prometheus metrics, on a private registry served at ``/metrics``.

Fed by the release loop through :class:`controller.release.runner.Hooks` (see :meth:`ControllerMetrics.hooks`):

* ``stopline_releases_total{result}``            Releases that reached Succeeded / RolledBack / Failed
* ``stopline_rollbacks_total``                   restores carried out (every touched Deployment back to its snapshot)
* ``stopline_reverts_total{state}``              git reverts by outcome (Pushed, AlreadyReverted, Conflict, Error, ...)
* ``stopline_gate_evaluations_total{verdict}``   gate readings folded into the gauges, by verdict
* ``stopline_gate_verdicts_total{kind,verdict}`` the same by gate kind (query, experiment, compare, ...)
* ``stopline_gate_evaluation_seconds``           time to read the due gates of one evaluation round
* ``stopline_detect_to_rollback_seconds``        first breaching reading → restore done (the DESIGN §6 target)
* ``stopline_reconcile_errors_total{kind}``      failed actions and crashed loops, by resource kind
* ``stopline_active_releases``                   Releases this controller is driving right now
* ``stopline_status_writes_total{kind,action}``   status patches written, by what led to them
* ``stopline_notifications_total{sink_type,event,result}``  notification attempts: sent, failed (retried), gaveup
* ``stopline_notifications_pending``             outbox entries not delivered yet (Releases and Tracks)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from controller.models.notify import NOTIFY_EVENTS, SINK_TYPES, NotificationsStatus
from controller.models.release import FINAL_PHASES, GateKind, GaugeRow, ReleaseStatus
from controller.notify.outbox import RecordDelivery, pending
from controller.release.actions import Action, ActionFailed, EvaluateGates, Outcome, RecordRevert, Undo, Undone
from controller.release.executor import ReleaseRef
from controller.release.runner import Emit, Hooks

GATE_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DETECT_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
FINAL = FINAL_PHASES

_Key = tuple[str, str, str]


def _key(ref: ReleaseRef) -> _Key:
    return (ref.namespace, ref.name, ref.uid)


class ControllerMetrics:
    """All controller metrics on one registry; the hook methods are cheap and never raise into the loop."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.releases = Counter("stopline_releases", "Releases that reached a final state.", ["result"], registry=r)
        self.rollbacks = Counter("stopline_rollbacks", "Rollbacks carried out (snapshots restored).", registry=r)
        self.reverts = Counter(
            "stopline_reverts", "Git reverts of rolled-back revisions, by outcome.", ["state"], registry=r
        )
        self.gate_evaluations = Counter(
            "stopline_gate_evaluations", "Gate readings folded into the gauges, by verdict.", ["verdict"], registry=r
        )
        self.gate_verdicts = Counter(
            "stopline_gate_verdicts",
            "Gate readings folded into the gauges, by gate kind (query, experiment, compare, ...) and verdict.",
            ["kind", "verdict"],
            registry=r,
        )
        self.gate_seconds = Histogram(
            "stopline_gate_evaluation_seconds",
            "Time to read the due gates of one evaluation round.",
            buckets=GATE_SECONDS_BUCKETS,
            registry=r,
        )
        self.detect_to_rollback = Histogram(
            "stopline_detect_to_rollback_seconds",
            "From the first breaching gate reading to every touched Deployment restored.",
            buckets=DETECT_BUCKETS,
            registry=r,
        )
        self.reconcile_errors = Counter(
            "stopline_reconcile_errors", "Failed actions and crashed reconcile loops, by kind.", ["kind"], registry=r
        )
        self.kube_requests = Counter(
            "stopline_kube_requests",
            "Kubernetes API requests the controller sent, by verb (GET on a collection: LIST; with watch=true: "
            "WATCH) and resource.",
            ["verb", "resource"],
            registry=r,
        )
        self.watch_live = Gauge(
            "stopline_workload_watch_live",
            "1 while the watch of a kind (Deployment, StatefulSet, DaemonSet, Namespace) is listed and streaming "
            "(read from memory); 0 while it is down or re-listing after a failure (read from the API server).",
            ["kind"],
            registry=r,
        )
        self.watch_errors = Counter(
            "stopline_workload_watch_errors",
            "Workload watch failures, by kind and reason (HTTP status or error type); each is retried with backoff.",
            ["kind", "reason"],
            registry=r,
        )
        self.active_releases = Gauge("stopline_active_releases", "Releases being driven right now.", registry=r)
        self.revert_attempts = Counter(
            "stopline_revert_attempts",
            "Git revert attempts, by result (Pushed, AlreadyReverted, Conflict, or the failure's reason).",
            ["result"],
            registry=r,
        )
        self.reverts_pending = Gauge(
            "stopline_reverts_pending", "Rolled-back revisions whose revert is not on the branch yet.", registry=r
        )
        self.inconclusive_pauses = Counter(
            "stopline_inconclusive_pauses",
            "Pushes paused because an acting gate had no conclusive reading (monitoring outage).",
            registry=r,
        )
        self.paused_releases = Gauge(
            "stopline_paused_releases", "Releases paused right now, by reason.", ["reason"], registry=r
        )
        self.shards_held = Gauge(
            "stopline_shards_held", "Shards (of STOPLINE_SHARDS) this replica holds a valid Lease for.", registry=r
        )
        self.status_write_errors = Counter(
            "stopline_status_write_errors", "Status patches that failed (retried with backoff), by kind.", ["kind"],
            registry=r,
        )  # fmt: skip
        self.status_writes = Counter(
            "stopline_status_writes",
            "Status patches written, by kind and by what led to them (the action whose result is written; "
            "before:<action> for the write that precedes a side effect).",
            ["kind", "action"],
            registry=r,
        )
        self.notifications = Counter(
            "stopline_notifications",
            "Notification delivery attempts, by sink type, event and result (sent, failed: retried, gaveup).",
            ["sink_type", "event", "result"],
            registry=r,
        )
        self.notifications_pending = Gauge(
            "stopline_notifications_pending", "Notification outbox entries not delivered yet.", registry=r
        )
        for sink_type in SINK_TYPES:
            for event in NOTIFY_EVENTS:
                for result in ("sent", "failed"):
                    self.notifications.labels(sink_type, event, result)
        self._pending_notes: dict[tuple[str, ...], int] = {}
        self._pending_reverts: set[_Key] = set()
        self._paused: dict[_Key, str] = {}
        for reason in ("User", "Inconclusive"):
            self.paused_releases.labels(reason)
        for verdict in ("Pass", "Fail", "Inconclusive", "Error"):
            self.gate_evaluations.labels(verdict)
            for kind in get_args(GateKind):
                self.gate_verdicts.labels(kind, verdict)
        for result in sorted(FINAL):
            self.releases.labels(result)
        for kind in ("Release", "Track", "Experiment"):
            self.reconcile_errors.labels(kind)
            self.status_write_errors.labels(kind)
        # (namespace, name, uid) -> (gate, phase) -> time of the first breaching reading of the current streak
        self._first_breach: dict[_Key, dict[tuple[str, str], datetime]] = {}

    # ---------------------------------------------------------------- hooks
    def on_action(self, ref: ReleaseRef, action: Action, seconds: float) -> None:
        """Every executed action with how long it took."""
        if isinstance(action, EvaluateGates):
            self.gate_seconds.observe(max(0.0, seconds))

    def on_step(
        self, ref: ReleaseRef, action: Action, outcome: Outcome, before: ReleaseStatus, after: ReleaseStatus
    ) -> None:
        """Every executed action with its outcome and the status before and after it."""
        if isinstance(outcome, ActionFailed):
            self.reconcile_errors.labels("Release").inc()
        if isinstance(action, EvaluateGates):
            self._readings(ref, before, after)
        elif isinstance(action, Undo) and isinstance(outcome, Undone):
            self._undone(ref, action, outcome, after)
        elif isinstance(action, RecordRevert):
            r = action.result
            self.reverts.labels(r.state if r.state != "Error" else "Pending").inc()
            self.revert_attempts.labels(r.state if r.state != "Error" else (r.code or "Error")).inc()
        elif isinstance(action, RecordDelivery):
            self.delivered(before.notifications, after.notifications)
        self.outbox(("Release", *_key(ref)), after.notifications)
        self._track_pending(ref, after)

    def delivered(self, before: NotificationsStatus | None, after: NotificationsStatus | None) -> None:
        """Count each attempt folded into an outbox (by comparing its entries before and after)."""
        old = {e.key: e.attempts for e in (before.outbox if before else [])}
        for e in after.outbox if after else []:
            if e.key in old and old[e.key] != e.attempts:
                result = {"Sent": "sent", "Failed": "gaveup"}.get(e.state, "failed")
                self.notifications.labels(e.sink_type, e.event, result).inc()

    def outbox(self, owner: tuple[str, ...], notes: NotificationsStatus | None) -> None:
        """The owner's undelivered entries now (None notes and 0: forgotten)."""
        n = len(pending(notes))
        if n:
            self._pending_notes[owner] = n
        else:
            self._pending_notes.pop(owner, None)
        self.notifications_pending.set(sum(self._pending_notes.values()))

    def kube_request(self, verb: str, resource: str) -> None:
        """The controller sent one Kubernetes API request."""
        self.kube_requests.labels(verb, resource).inc()

    def workload_watch_live(self, kind: str, live: bool) -> None:
        self.watch_live.labels(kind).set(1 if live else 0)

    def workload_watch_error(self, kind: str, reason: str) -> None:
        self.watch_errors.labels(kind, reason).inc()

    def status_written(self, kind: str, action: str) -> None:
        """A status patch of ``kind`` was written, for ``action``."""
        self.status_writes.labels(kind, action).inc()

    def status_write_error(self, kind: str) -> None:
        """A status patch of ``kind`` failed (the loop retries it)."""
        self.status_write_errors.labels(kind).inc()

    def _track_pending(self, ref: ReleaseRef, after: ReleaseStatus) -> None:
        key = _key(ref)
        pending = after.revert is not None and after.revert.state in ("Pending", "Error")
        if pending and key not in self._pending_reverts:
            self._pending_reverts.add(key)
        elif not pending and key in self._pending_reverts:
            self._pending_reverts.discard(key)
        self.reverts_pending.set(len(self._pending_reverts))
        reason = after.pause_reason
        old = self._paused.get(key)
        if reason != old:
            if old is not None:
                self.paused_releases.labels(old).dec()
                del self._paused[key]
            if reason is not None:
                self.paused_releases.labels(reason).inc()
                self._paused[key] = reason
                if reason == "Inconclusive":
                    self.inconclusive_pauses.inc()

    def on_final(self, ref: ReleaseRef, status: ReleaseStatus) -> None:
        """The Release reached a final state (the loop reports this once, when it returns)."""
        self._first_breach.pop(_key(ref), None)
        if status.phase in FINAL:
            self.releases.labels(status.phase).inc()

    def reconcile_error(self, kind: str) -> None:
        """A reconcile loop of ``kind`` (Release, Track, Experiment) crashed or an action failed."""
        self.reconcile_errors.labels(kind).inc()

    def hooks(self, emit: Emit | None = None) -> Hooks:
        """Hooks for :func:`controller.release.runner.run_release` reporting here (and events to ``emit``)."""
        hooks = Hooks(
            on_action=self.on_action,
            on_step=self.on_step,
            on_final=self.on_final,
            on_persist_error=self.status_write_error,
            on_persist=self.status_written,
        )
        if emit is not None:
            hooks.emit = emit
        return hooks

    @contextmanager
    def running(self, ref: ReleaseRef) -> Iterator[None]:
        """Count the Release as active while its loop runs; record a crash as a reconcile error."""
        self.active_releases.inc()
        try:
            yield
        except Exception:
            self.reconcile_error("Release")
            raise
        finally:
            self.active_releases.dec()
            self._first_breach.pop(_key(ref), None)
            key = _key(ref)
            self.outbox(("Release", *key), None)
            self._pending_reverts.discard(key)
            self.reverts_pending.set(len(self._pending_reverts))
            old = self._paused.pop(key, None)
            if old is not None:
                self.paused_releases.labels(old).dec()

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # ---------------------------------------------------------------- internals
    def _readings(self, ref: ReleaseRef, before: ReleaseStatus, after: ReleaseStatus) -> None:
        old = {(g.gate, g.phase): g for g in before.gauges}
        streaks = self._first_breach.setdefault(_key(ref), {})
        for row in after.gauges:
            prev: GaugeRow | None = old.get((row.gate, row.phase))
            if row.readings <= (prev.readings if prev is not None else 0):
                continue  # not read this round
            self.gate_evaluations.labels(row.verdict).inc()
            self.gate_verdicts.labels(row.kind, row.verdict).inc()
            where = (row.gate, row.phase)
            if row.breaches > 0 and where not in streaks and row.at is not None:
                streaks[where] = row.at
            elif row.breaches == 0 and row.verdict == "Pass":
                streaks.pop(where, None)

    def _undone(self, ref: ReleaseRef, action: Undo, outcome: Undone, after: ReleaseStatus) -> None:
        if not (action.restore or action.delete) or outcome.restore_error:
            return
        self.rollbacks.inc()
        failure = after.failure
        done = after.undo.at if after.undo is not None else None
        if failure is None or failure.gate is None or done is None:
            return  # aborted by hand or not a gate failure: nothing was "detected"
        streaks = self._first_breach.get(_key(ref), {})
        detected = streaks.get((failure.gate, failure.phase or "")) or failure.at
        if detected is not None:
            self.detect_to_rollback.observe(max(0.0, (done - detected).total_seconds()))


_default: ControllerMetrics | None = None


def default_metrics() -> ControllerMetrics:
    """The controller process's metrics (created on first use, with process/GC/platform collectors)."""
    global _default
    if _default is None:
        _default = ControllerMetrics(process=True)
    return _default
