"""Notifications: where stopline tells people what happened to a push, and the durable outbox in status.

A Release (or a Track's template) lists sinks under ``notify``; the controller adds its own defaults from
the chart (``notify:`` values). Every event that a sink wants becomes one outbox entry per sink in the
object's status, sent from there by a delivery task beside the loop (never in the way of a rollback) and
marked Sent only after the receiver accepted it. Pure pydantic: no I/O here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from controller.models.common import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, Model, StatusModel, cel

NotifyEvent = Literal["PushStarted", "Succeeded", "RolledBack", "RevertFailed", "Locked", "Unlocked"]
#: Every event name, in the order a push meets them.
NOTIFY_EVENTS: tuple[str, ...] = ("PushStarted", "Succeeded", "RolledBack", "RevertFailed", "Locked", "Unlocked")
#: What a sink gets when it lists no events: failures only.
DEFAULT_EVENTS: tuple[str, ...] = ("RolledBack", "RevertFailed")
#: Events of a Track (its commit lock); the others are a Release's.
TRACK_EVENTS: frozenset[str] = frozenset({"Locked", "Unlocked"})

SinkType = Literal["slack", "webhook", "email"]
SINK_TYPES: tuple[str, ...] = ("slack", "webhook", "email")


class SecretKeyRef(Model):
    """One key of a Secret: in the Release's (or Track's) namespace, or for the controller's defaults in the
    controller's namespace. Its value is read when a message is sent and never logged or written anywhere."""

    name: str = Field(description="Name of the Secret.", pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = Field(description="Key in the Secret's data.", min_length=1, max_length=253)


class SlackSink(Model):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): a JSON body with ``text`` and
    ``blocks``."""

    url_secret_ref: SecretKeyRef = Field(description="Secret key holding the webhook URL (the URL is the credential).")


class WebhookSink(Model):
    """A generic JSON webhook: the event as a JSON document, POSTed with a delivery id and, when a key is set,
    an HMAC-SHA256 signature (``X-Stopline-Signature: sha256=<hex>`` of ``<X-Stopline-Timestamp>.<body>``)."""

    model_config = ConfigDict(
        json_schema_extra=cel(("has(self.url) != has(self.urlSecretRef)", "set exactly one of url or urlSecretRef"))
    )

    url: str | None = Field(
        default=None,
        description="Where to POST (http or https). Use urlSecretRef when the URL carries a token.",
        pattern=r"^https?://.+",
        max_length=2048,
    )
    url_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the URL.")
    signing_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the HMAC-SHA256 signing key (recommended)."
    )

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSink:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("webhook: set exactly one of url or urlSecretRef")
        return self


class EmailSink(Model):
    """Email over SMTP: plain text, one message per event to the fixed addresses and, opt-in, the commit author."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "(has(self.to) && size(self.to) > 0) || (has(self.toAuthor) && self.toAuthor)",
                "email needs at least one address in to, or toAuthor: true",
            ),
            (
                "!(has(self.startTLS) && self.startTLS && has(self.tls) && self.tls)",
                "set at most one of startTLS or tls",
            ),
            ("!has(self.passwordSecretRef) || has(self.username)", "passwordSecretRef needs username"),
        )
    )

    host: str = Field(description="SMTP server host name.", min_length=1, max_length=253)
    port: int = Field(default=587, description="SMTP port (587 submission, 465 with tls, 25 plain).", ge=1, le=65535)
    start_tls: bool = Field(
        default=False, alias="startTLS", description="Upgrade the connection with STARTTLS before AUTH."
    )
    tls: bool = Field(default=False, description="Implicit TLS from the first byte (SMTPS, usually port 465).")
    username: str | None = Field(default=None, description="SMTP AUTH user (AUTH is used only when set).")
    password_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the password.")
    from_: str = Field(
        alias="from",
        description="Sender address, e.g. 'stopline <stopline@example.com>'.",
        min_length=3,
        max_length=320,
    )
    to: list[str] = Field(default_factory=list, description="Fixed recipient addresses.", max_length=50)
    to_author: bool = Field(default=False, description="Also send to the commit author's email address (opt-in).")

    @model_validator(mode="after")
    def _recipients(self) -> EmailSink:
        if not self.to and not self.to_author:
            raise ValueError("email: list at least one address in to, or set toAuthor: true")
        if self.start_tls and self.tls:
            raise ValueError("email: set at most one of startTLS or tls")
        if self.password_secret_ref is not None and not self.username:
            raise ValueError("email: passwordSecretRef needs username")
        return self


class Sink(Model):
    """One place notifications go: exactly one of slack, webhook or email.

    A sink named like one of the controller's default sinks replaces it for this Release (``disabled: true``
    switches that default off)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "(has(self.disabled) && self.disabled) ? [has(self.slack), has(self.webhook), has(self.email)]"
                ".filter(x, x).size() == 0 : [has(self.slack), has(self.webhook), has(self.email)]"
                ".filter(x, x).size() == 1",
                "set exactly one of slack, webhook or email (none with disabled: true)",
            ),
        )
    )

    name: str = Field(description="Sink name, unique in the list.", pattern=DNS_LABEL_PATTERN, max_length=63)
    events: list[NotifyEvent] | None = Field(
        default=None,
        description=(
            "Events to send: PushStarted, Succeeded, RolledBack, RevertFailed (a Release's), Locked, Unlocked "
            "(the Track's commit lock). Default: RolledBack and RevertFailed (failures only)."
        ),
        max_length=6,
    )
    slack: SlackSink | None = Field(default=None, description="Slack-compatible incoming webhook.")
    webhook: WebhookSink | None = Field(default=None, description="Generic JSON webhook, HMAC-signed.")
    email: EmailSink | None = Field(default=None, description="Email over SMTP.")
    disabled: bool = Field(default=False, description="Switch off the controller's default sink of this name.")

    @model_validator(mode="after")
    def _one_kind(self) -> Sink:
        kinds = [k for k in SINK_TYPES if getattr(self, k) is not None]
        if self.disabled and kinds:
            raise ValueError(f"sink {self.name!r}: a disabled sink takes no {', '.join(kinds)}")
        if not self.disabled and len(kinds) != 1:
            got = ", ".join(kinds) or "none"
            raise ValueError(f"sink {self.name!r}: set exactly one of slack, webhook or email (got {got})")
        return self

    @property
    def type(self) -> SinkType:
        """slack, webhook or email."""
        if self.webhook is not None:
            return "webhook"
        return "email" if self.email is not None else "slack"

    def wants(self, event: str) -> bool:
        """Whether this sink sends the event (failures only when it lists none)."""
        return not self.disabled and event in (self.events if self.events is not None else DEFAULT_EVENTS)


NOTIFY_RULES: tuple[tuple[str, str], ...] = (
    (
        "!has(self.notify) || self.notify.all(s, self.notify.exists_one(t, t.name == s.name))",
        "notify sink names must be unique",
    ),
)


OutboxState = Literal["Pending", "Sent", "Failed"]


class GaugeFacts(StatusModel):
    """The failing gauges row, as the message shows it."""

    gate: str = Field(description="Gate name.")
    phase: str = Field(description="Phase (or 'watch').")
    pre_push: float | None = Field(default=None, description="Pre-push value.")
    post_push: float | None = Field(default=None, description="Post-push value.")
    delta: float | None = Field(default=None, description="postPush - prePush.")
    delta_percent: float | None = Field(default=None, description="Delta in percent of |prePush|.")
    threshold: str = Field(default="", description="The bounds.")
    verdict: str = Field(default="", description="The verdict.")
    message: str = Field(default="", description="Why.")


class NotificationMessage(StatusModel):
    """What happened, in full: every sink renders its message from this alone (deterministically), so a
    restart sends the same bytes. Holds no credentials."""

    event: NotifyEvent = Field(description="The event.")
    kind: Literal["Release", "Track"] = Field(default="Release", description="The resource it is about.")
    namespace: str = Field(description="Namespace.")
    name: str = Field(description="Release (or Track) name.")
    at: datetime = Field(description="When the event happened.")
    title: str = Field(description="One line: what happened.")
    summary: str = Field(default="", description="A few lines of detail.")
    phase: str | None = Field(default=None, description="Release phase (Succeeded, RolledBack, ...).")
    repo: str | None = Field(default=None, description="Repository.")
    branch: str | None = Field(default=None, description="Branch.")
    revision: str | None = Field(default=None, description="The revision pushed.")
    author: str | None = Field(default=None, description="Who wrote the revision ('Name <email>').")
    committer: str | None = Field(default=None, description="Who committed it.")
    reason: str | None = Field(default=None, description="Machine reason of the failure (GateFailed, ...).")
    gauge: GaugeFacts | None = Field(default=None, description="The failing gauges row.")
    revert_state: str | None = Field(default=None, description="Revert state: Pending, Pushed, Conflict, ...")
    revert_commit: str | None = Field(default=None, description="The revert commit's SHA.")
    revert_reason: str | None = Field(default=None, description="Why the revert is not (yet) on the branch.")
    track: str | None = Field(default=None, description="The Track, when known.")
    release: str | None = Field(default=None, description="The Release whose rollback set the lock (Track events).")
    by: str | None = Field(default=None, description="Who locked or unlocked (Track events).")


class OutboxEntry(StatusModel):
    """One message to one sink, kept until sent (or given up) and for a while after."""

    key: str = Field(description="Deduplication key sent to the receiver (X-Stopline-Delivery, Message-ID).")
    event: NotifyEvent = Field(description="The event.")
    sink: str = Field(description="Sink name.")
    sink_type: SinkType = Field(description="slack, webhook or email.")
    default: bool = Field(default=False, description="A controller-wide default sink (Secrets in its namespace).")
    state: OutboxState = Field(default="Pending", description="Pending, Sent (accepted by the receiver) or Failed.")
    attempts: int = Field(default=0, description="Delivery attempts so far.")
    created_at: datetime | None = Field(default=None, description="When the event was recorded.")
    next_attempt_at: datetime | None = Field(default=None, description="When the next attempt is due (Pending).")
    sent_at: datetime | None = Field(default=None, description="When the receiver accepted it.")
    last_error: str | None = Field(default=None, description="Why the last attempt failed (never a credential).")
    message: NotificationMessage = Field(description="What to say.")


class NotificationsStatus(StatusModel):
    """The durable outbox: entries are written with the status that records the event, sent beside the loop."""

    outbox: list[OutboxEntry] = Field(default_factory=list, description="Messages, oldest first.")
    recorded: list[str] = Field(
        default_factory=list,
        description="Events already put in the outbox (kept when old Sent entries are trimmed, so none repeats).",
    )
