"""Reading the suppression list (who asked never to be mailed again)."""

from __future__ import annotations

from sqlalchemy import select

from sequencer.store.db import Store
from sequencer.store.schema import suppressions


def suppressed(store: Store, email: str) -> bool:
    """True when ``email`` is on the suppression list."""
    with store.read() as conn:
        return conn.scalar(select(suppressions.c.email)
                           .where(suppressions.c.email == email)) is not None
