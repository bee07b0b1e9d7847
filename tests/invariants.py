"""The three invariants every fault test checks against the SMTP ledger and the database
(RELIABILITY.md): at most one delivery per (enrollment, step); no step stuck claimed past
its lease; no delivery after a halt was committed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy import create_engine, text


def check_invariants(ledger: list[Any], database_url: str, *,
                     now: datetime | None = None) -> dict[str, int]:
    """Raise AssertionError on any broken invariant; return counts for the test's own checks."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            sends = conn.execute(text(
                "select s.message_id, s.status, s.enrollment_id, s.step_index, e.lease_until,"
                " e.claim_token, s.data_at from sends s join enrollments e"
                " on e.id = s.enrollment_id")).all()
            halts = conn.execute(text(
                "select email, min(at) from events where event in"
                " ('replied', 'bounced', 'unsubscribed') and detail not like 'soft bounce%'"
                " group by email")).all()
    finally:
        engine.dispose()
    ids = Counter(d.message["Message-ID"] for d in ledger)
    twice = {mid: n for mid, n in ids.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    steps = Counter((s.enrollment_id, s.step_index) for s in sends)
    assert all(n == 1 for n in steps.values())
    known = {s.message_id for s in sends}
    strangers = set(ids) - known
    assert not strangers, f"delivered messages the database does not know: {strangers}"
    now = now or datetime.now(UTC)
    for s in sends:
        if s.status != "claimed":
            continue
        lease = _aware(s.lease_until)
        assert lease is not None and lease > now, (
            f"send {s.message_id} is stuck claimed past its lease ({lease})")
    halted_at = {email: _aware(at) for email, at in halts}
    for d in ledger:
        rcpt = d.rcpt_tos[0]
        if rcpt in halted_at and d.message["Date"]:
            sent = parsedate_to_datetime(d.message["Date"])
            halt = halted_at[rcpt]
            assert halt is None or sent <= halt, f"{rcpt} got mail after the halt at {halt}"
    return dict(Counter(s.status for s in sends))


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
