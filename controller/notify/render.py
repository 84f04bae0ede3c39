"""Every sink's message, rendered from an outbox entry alone. Pure: no I/O (``email`` builds, never sends).

The same entry always renders to the same bytes (keys sorted, times from the entry), so a message retried
after a restart is the message first tried.
"""

from __future__ import annotations

import hashlib
import json
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any

from controller.models.notify import GaugeFacts, NotificationMessage, OutboxEntry

SCHEMA_VERSION = "stopline.dev/notification/v1"
_ICON = {
    "PushStarted": ":rocket:",
    "Succeeded": ":white_check_mark:",
    "RolledBack": ":rotating_light:",
    "RevertFailed": ":warning:",
    "Locked": ":lock:",
    "Unlocked": ":unlock:",
}


def num(x: float | None) -> str:
    """A reading as people read it: ``4.13``; ``-`` when there is none."""
    return "-" if x is None else f"{x:.2f}"


def gauge_text(g: GaugeFacts) -> str:
    """``chat-loadavg in phase chat: pre 4.13, post 7.20, delta +3.07 (+74.33%), threshold >6, verdict Fail``."""
    pct = "" if g.delta_percent is None else f" ({g.delta_percent:+.2f}%)"
    delta = "-" if g.delta is None else f"{g.delta:+.2f}"
    return (
        f"{g.gate} in phase {g.phase}: pre {num(g.pre_push)}, post {num(g.post_push)}, delta {delta}{pct}, "
        f"threshold {g.threshold or '-'}, verdict {g.verdict}"
    )


def lines(m: NotificationMessage) -> list[str]:
    """The message as plain text lines (the email body, Slack's fallback text)."""
    out = [m.title]
    if m.summary:
        out += m.summary.splitlines()
    if m.gauge is not None:
        out.append(f"Gate {gauge_text(m.gauge)}")
        if m.gauge.message:
            out.append(f"  {m.gauge.message}")
    if m.author:
        other = m.committer and m.committer != m.author
        out.append(f"Pushed by {m.author}" + (f", committed by {m.committer}" if other else ""))
    if m.revision:
        out.append(f"Revision {m.revision} on {m.branch} of {m.repo}")
    if m.release:
        out.append(f"Release {m.namespace}/{m.release}" + (f", revert {m.revert_commit}" if m.revert_commit else ""))
    if m.by:
        out.append(f"{lock_verb(m)} by {m.by}")
    what = f"{m.kind} {m.namespace}/{m.name}" + (f" (Track {m.track})" if m.track else "")
    out.append(f"{what}, {m.at.strftime('%Y-%m-%d %H:%M:%SZ')}")
    return out


def lock_verb(m: NotificationMessage) -> str:
    """``Locked`` or ``Unlocked``: what the person named in ``by`` did."""
    return "Unlocked" if m.event == "Unlocked" else "Locked"


def slack(entry: OutboxEntry) -> bytes:
    """A Slack incoming-webhook body: ``text`` (notifications, fallback) and ``blocks``."""
    m = entry.message
    fields = []
    if m.author:
        fields.append({"type": "mrkdwn", "text": f"*Pushed by*\n{m.author}"})
    if m.revision:
        fields.append({"type": "mrkdwn", "text": f"*Revision*\n`{m.revision[:12]}` on {m.branch}"})
    if m.phase:
        fields.append({"type": "mrkdwn", "text": f"*Phase*\n{m.phase}"})
    if m.revert_state:
        rev = f"`{m.revert_commit[:12]}` " if m.revert_commit else ""
        fields.append({"type": "mrkdwn", "text": f"*Revert*\n{rev}{m.revert_state}"})
    elif m.revert_commit:
        fields.append({"type": "mrkdwn", "text": f"*Revert*\n`{m.revert_commit[:12]}`"})
    if m.release:
        fields.append({"type": "mrkdwn", "text": f"*Release*\n{m.release}"})
    if m.by:
        fields.append({"type": "mrkdwn", "text": f"*{lock_verb(m)} by*\n{m.by}"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": m.title[:150], "emoji": True}},
    ]
    if m.summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": m.summary[:3000]}})
    if m.gauge is not None:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Gate* {gauge_text(m.gauge)}"}})
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": (f"{m.kind} `{m.namespace}/{m.name}` · {m.event} · {m.at.strftime('%Y-%m-%d %H:%M:%SZ')}"),
                }
            ],
        }
    )
    body = {"text": f"{_ICON.get(m.event, '')} {m.title}".strip(), "blocks": blocks}
    return _json(body)


def webhook(entry: OutboxEntry) -> bytes:
    """The generic JSON document (``schema`` names its version; ``deliveryId`` is the dedup key)."""
    m = entry.message
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "deliveryId": entry.key,
        "event": m.event,
        "text": "\n".join(lines(m)),
        **m.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    return _json(doc)


def message_id(key: str) -> str:
    """A Message-ID derived from the delivery key (the same for every attempt)."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@stopline.dev>"


def author_address(m: NotificationMessage) -> str | None:
    """The commit author's email address, when the status knows it."""
    if not m.author or "<" not in m.author:
        return None
    addrs = [a for _n, a in getaddresses([m.author]) if "@" in a]
    return addrs[0] if addrs else None


def recipients(entry: OutboxEntry, to: list[str], to_author: bool) -> list[str]:
    """The fixed addresses, plus the author's when ``toAuthor`` is set (each once, in order)."""
    out = list(dict.fromkeys(to))
    author = author_address(entry.message) if to_author else None
    if author and author not in out:
        out.append(author)
    return out


def email(entry: OutboxEntry, sender: str, to: list[str]) -> EmailMessage:
    """A plain-text email with headers derived from the entry (Message-ID, Date, X-Stopline-*)."""
    m = entry.message
    msg = EmailMessage()
    msg["Subject"] = f"[stopline] {m.title}"[:250]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(m.at)
    msg["Message-ID"] = message_id(entry.key)
    msg["X-Stopline-Delivery"] = entry.key
    msg["X-Stopline-Event"] = m.event
    msg.set_content("\n".join(lines(m)) + "\n")
    return msg


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
