"""Webhooks, the pure part: which events, the signature, the redelivery backoff.

A delivery is a JSON POST with the header ``Sequencer-Signature: t=UNIX,v1=HEX`` where HEX
is HMAC-SHA256, keyed with the webhook's secret, over ``f"{t}.{body}"`` (as Stripe signs);
the body's ``id`` (also the ``Sequencer-Event-Id`` header) is the event's id for dedupe.
"""

from __future__ import annotations

import hashlib
import hmac

#: The events a webhook may subscribe to.
WEBHOOK_EVENTS = ("replied", "bounced", "unsubscribed", "complained", "auto_reply",
                  "completed", "unknown", "paused")

SIGNATURE_HEADER = "Sequencer-Signature"
EVENT_ID_HEADER = "Sequencer-Event-Id"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Sequencer-Signature`` header value for ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff(attempts: int, base_s: float, cap_s: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base, 2x, 4x, ... capped."""
    return float(min(cap_s, base_s * 2 ** min(max(attempts - 1, 0), 40)))
