"""The Track resource: a branch that pushes itself, one Release at a time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from controller.models.common import (
    REVISION_PATTERN,
    Condition,
    Duration,
    Model,
    SecretRef,
    StatusModel,
    cel,
)
from controller.models.notify import NotificationsStatus
from controller.models.release import GitSource, ReleaseTemplate


class Webhook(Model):
    """Push webhook settings for this Track."""

    secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret whose 'secret' key signs payloads (HMAC-SHA256, X-Hub-Signature-256).",
    )


class TrackSpec(Model):
    """Desired state of a Track."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.pollInterval) || duration(self.pollInterval) >= duration('1s')",
                "pollInterval must be at least 1s",
            ),
        )
    )

    source: GitSource = Field(description="Repository, branch and manifest path to follow.")
    poll_interval: Duration = Field(default=timedelta(seconds=15), description="How often the branch tip is read.")
    webhook: Webhook | None = Field(default=None, description="Accept push webhooks (in addition to polling).")
    history_limit: int = Field(default=50, description="How many pushes status.history keeps.", ge=1, le=1000)
    suspend: bool = Field(default=False, description="Stop creating Releases (the tip is still observed).")
    template: ReleaseTemplate = Field(description="Release spec without source; every push uses it.")

    @field_validator("poll_interval")
    @classmethod
    def _min_poll(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("pollInterval must be at least 1s")
        return v


class CommitLock(StatusModel):
    """The commit lock: while held, new commits are not pushed."""

    locked: bool = Field(default=False, description="Whether the line is stopped.")
    reason: str | None = Field(default=None, description="Why it is locked, with the numbers.")
    since: datetime | None = Field(default=None, description="When it was locked.")
    release: str | None = Field(default=None, description="The Release that caused the lock.")
    revision: str | None = Field(default=None, description="The revision that was rolled back.")
    by: str | None = Field(default=None, description="Who locked or last unlocked it.")
    unlocked_at: datetime | None = Field(default=None, description="When it was last unlocked.")
    unlock_reason: str | None = Field(default=None, description="Why it was unlocked.")
    last_unlock: str | None = Field(default=None, description="Last stopline.dev/unlock annotation acted on.")
    last_lock: str | None = Field(default=None, description="Last stopline.dev/lock annotation acted on.")


class MissingRevert(StatusModel):
    """A rolled-back revision still on the branch: its revert has not landed yet."""

    revision: str = Field(description="The rolled-back revision.")
    release: str = Field(description="The Release that rolled it back (and keeps retrying the revert).")
    since: datetime | None = Field(default=None, description="When the Track learned the revert was missing.")
    reason: str | None = Field(default=None, description="Why the revert is not on the branch yet.")


class PushLock(StatusModel):
    """The push lock: one Release in flight per Track."""

    held: bool = Field(default=False, description="Whether a Release is in flight.")
    release: str | None = Field(default=None, description="The Release holding the lock.")
    since: datetime | None = Field(default=None, description="When it was taken.")


HistoryResult = Literal["Succeeded", "RolledBack", "Failed", "Superseded", "InProgress"]


class HistoryEntry(StatusModel):
    """One push of the Track."""

    revision: str = Field(description="Revision pushed.")
    release: str = Field(description="Release name.")
    result: HistoryResult = Field(description="Outcome.")
    at: datetime | None = Field(default=None, description="When the push finished (or started, if in progress).")
    started_at: datetime | None = Field(default=None, description="When the push started.")
    duration_seconds: float | None = Field(default=None, description="How long the push took.")
    skipped: list[str] = Field(default_factory=list, description="Commits batched into this push.")
    failed_gate: str | None = Field(default=None, description="Gate that failed, if any.")
    revert_commit: str | None = Field(default=None, description="Revert commit pushed, if any.")
    revert_waived_by: str | None = Field(
        default=None, description="Who unlocked without the revert: the rolled-back commit stayed on the branch."
    )
    counted: bool = Field(
        default=False, description="The outcome is in status.daily (so observing it again never counts it twice)."
    )
    revert_counted: bool = Field(
        default=False,
        description="Its revert is in status.daily's reverts (with the outcome, or once when it landed later).",
    )


class DailyCount(StatusModel):
    """One UTC day of a Track's push outcomes: feeds the 30-day graph and `stopline history --days`."""

    day: str = Field(description="UTC day, YYYY-MM-DD.", pattern=r"^\d{4}-\d{2}-\d{2}$")
    pushes: int = Field(default=0, description="Pushes that finished this day (any result).", ge=0)
    succeeded: int = Field(default=0, description="Pushes that passed every gate.", ge=0)
    rollbacks: int = Field(default=0, description="Pushes rolled back (a gate failed, or aborted).", ge=0)
    failed: int = Field(default=0, description="Pushes that failed without a rollback.", ge=0)
    reverts: int = Field(default=0, description="Rolled-back pushes whose revert commit was on the branch.", ge=0)


class TrackStatus(StatusModel):
    """Observed state of a Track; written only by the controller."""

    last_seen: str | None = Field(default=None, description="Branch tip last observed.", pattern=REVISION_PATTERN)
    last_seen_at: datetime | None = Field(default=None, description="When the tip was last read.")
    current: str | None = Field(default=None, description="Release in flight.")
    last_good: str | None = Field(default=None, description="Last revision that passed every gate.")
    last_pushed: str | None = Field(default=None, description="Last revision a Release was created for.")
    pending: list[str] = Field(default_factory=list, description="Commits waiting for the next push (oldest first).")
    commit_lock: CommitLock = Field(default_factory=CommitLock, description="Commit lock status.")
    push_lock: PushLock = Field(default_factory=PushLock, description="Push lock status.")
    history: list[HistoryEntry] = Field(default_factory=list, description="Last pushes, newest first.")
    daily: list[DailyCount] = Field(
        default_factory=list,
        description="Push outcomes per UTC day, oldest first, for the last 40 days (independent of historyLimit).",
    )
    ignored_reverts: list[str] = Field(default_factory=list, description="Revert commits stopline pushed itself.")
    missing_reverts: list[MissingRevert] = Field(
        default_factory=list,
        description=(
            "Rolled-back revisions whose revert is not on the branch yet. While any is listed nothing is "
            "pushed (every new tip still contains the bad commit) and unlock needs --without-revert."
        ),
    )
    observed_generation: int | None = Field(default=None, description="Spec generation last acted on.")
    notifications: NotificationsStatus | None = Field(
        default=None, description="The notification outbox of the commit lock's events (Locked, Unlocked)."
    )
    message: str | None = Field(default=None, description="Latest human-readable message.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Locked, SourceReachable.")
