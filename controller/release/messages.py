"""Texts a human reads: the revert commit message and event messages. Pure."""

from __future__ import annotations

from controller.models.common import REVERT_TRAILER, person_name
from controller.models.release import GaugeRow, ReleaseSpec, ReleaseStatus

TRAILER_RELEASE = "Stopline-Release"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def gauge_line(row: GaugeRow) -> str:
    """One gauges row as text: gate, phase, pre, post, delta, delta %, threshold, verdict."""
    pct = "-" if row.delta_percent is None else f"{row.delta_percent:+.2f}%"
    return (
        f"{row.gate:<20} {row.phase:<14} pre {_num(row.pre_push):>10}  post {_num(row.post_push):>10}  "
        f"delta {_num(row.delta):>9} {pct:>9}  threshold {row.threshold:<16} {row.verdict}"
    )


def revert_message(spec: ReleaseSpec, status: ReleaseStatus, namespace: str, name: str) -> tuple[str, dict[str, str]]:
    """The revert commit message and its trailers.

    Subject: ``stopline: revert 3f9c2e1 — gate chat-loadavg 7.20 > 6 in phase chat``.
    """
    short = spec.source.revision[:7]
    failure = status.failure
    if failure is not None and failure.gate:
        row = next((r for r in status.gauges if r.gate == failure.gate and r.phase == failure.phase), None)
        detail = row.message.split(";")[0].strip() if row is not None else failure.message
        if "inconclusive" in detail and row is not None:
            detail = f"inconclusive ({row.inconclusive} readings)"
        subject = f"stopline: revert {short} — gate {failure.gate} {detail} in phase {failure.phase}"
    elif failure is not None:
        subject = f"stopline: revert {short} — {failure.reason}: {failure.message}"
    else:
        subject = f"stopline: revert {short}"
    if status.author:  # as IMVU's immune system did: "reverting r107657 for mey"
        subject = f"{subject} for {person_name(status.author)}" if len(subject) < 170 else subject
    lines = [
        subject[:200],
        "",
        f"Release {namespace}/{name} pushed {spec.source.revision} to {spec.source.branch}; stopline rolled it back.",
    ]
    if status.author:
        lines.append(
            f"Pushed by {status.author}"
            + (f", committed by {status.committer}" if status.committer and status.committer != status.author else "")
            + "."
        )
    if failure is not None:
        lines += ["", f"Reason: {failure.reason}: {failure.message}"]
    rows = [r for r in status.gauges if failure is None or r.phase == failure.phase]
    if rows:
        lines += ["", "Gauges:", *(f"  {gauge_line(r)}" for r in rows)]
    trailers = {REVERT_TRAILER: spec.source.revision, TRAILER_RELEASE: f"{namespace}/{name}"}
    return "\n".join(lines), trailers
