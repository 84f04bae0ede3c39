"""HMAC-SHA256 signatures of JSON webhook deliveries. Pure (stdlib only).

The receiver checks::

    expected = "sha256=" + hex(HMAC-SHA256(key, X-Stopline-Timestamp + "." + raw body))
    hmac.compare_digest(expected, X-Stopline-Signature)  and  |now - X-Stopline-Timestamp| < 5 minutes

The timestamp (Unix seconds, the attempt's own) is signed with the body so a captured request cannot be
replayed later; the body is the exact bytes received (never re-serialised JSON).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Stopline-Signature"
TIMESTAMP_HEADER = "X-Stopline-Timestamp"
DELIVERY_HEADER = "X-Stopline-Delivery"
EVENT_HEADER = "X-Stopline-Event"
#: A receiver should refuse deliveries whose timestamp is further off than this (seconds).
TOLERANCE_SECONDS = 300


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of ``<timestamp>.<body>`` under ``key``."""
    mac = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(key: bytes, timestamp: str, body: bytes, header: str, now: float | None = None) -> bool:
    """What a receiver does: the signature matches and (when ``now`` is given) the timestamp is recent."""
    if now is not None:
        try:
            if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
                return False
        except ValueError:
            return False
    return hmac.compare_digest(signature(key, timestamp, body), header)
