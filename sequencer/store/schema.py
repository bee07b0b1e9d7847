"""The tables. The database is the source of truth for what is due and who owns it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    literal_column,
)
from sqlalchemy.engine import Dialect


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# ``email`` columns keep the spelling a CSV or a command gave (for display and sending);
# ``email_key`` is ``sequencer.core.addresses.address_key`` of it: what every lookup compares.
prospects = Table(
    "prospects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),  # the first spelling seen
    Column("email_key", String(320), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("email_key", name="uq_prospects_email_key"),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prospect_id", Integer, ForeignKey("prospects.id"), nullable=False),
    Column("email", String(320), nullable=False),  # this enrollment's spelling
    Column("email_key", String(320), nullable=False),
    Column("sequence", String(200), nullable=False),
    Column("mailbox", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("step_index", Integer, nullable=False, default=0),  # the next step to send
    Column("next_due", UTCDateTime()),
    Column("claim_token", String(32)),
    Column("lease_until", UTCDateTime()),
    Column("attempts", Integer, nullable=False, default=0),  # for the current step
    Column("not_before", UTCDateTime()),  # an out-of-office return
    Column("flag", Text),  # needs a human: e.g. a step whose outcome is unknown
    Column("timezone", String(64), nullable=False),
    Column("follow_up_by", Date),
    Column("vars", JSON, nullable=False),
    Column("enrolled_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("prospect_id", "sequence", name="uq_enrollment_prospect_sequence"),
)
Index("ix_enrollments_due", enrollments.c.state, enrollments.c.next_due)
Index("ix_enrollments_email_key", enrollments.c.email_key)

sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id"), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("step_name", String(200), nullable=False),
    Column("mailbox", String(200), nullable=False),
    Column("message_id", String(400), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("data_at", UTCDateTime()),  # DATA is about to go out: no blind resend
    Column("done_at", UTCDateTime()),
    Column("smtp_code", Integer),
    Column("detail", Text),
    Column("subject", Text),  # what a threaded step replies to
    UniqueConstraint("enrollment_id", "step_index", name="uq_send_enrollment_step"),
)
Index("ix_sends_mailbox_created", sends.c.mailbox, sends.c.created_at)
# The open sends (the sweep's orphans): partial, so a finished send leaves it. A query
# uses it only when it says ``status = 'claimed'`` as a literal (``OPEN_SEND``).
OPEN_SEND = sends.c.status == literal_column("'claimed'")
Index("ix_sends_open", sends.c.data_at, sqlite_where=OPEN_SEND, postgresql_where=OPEN_SEND)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("event", String(20), nullable=False),
    Column("enrollment_id", Integer),
    Column("mailbox", String(200)),
    Column("sequence", String(200)),
    Column("step", String(200)),
    Column("email", String(320)),
    Column("message_id", String(400)),
    Column("detail", Text),
    Column("uid", String(32)),  # the webhook event id (events a webhook subscribes to)
)
Index("ix_events_enrollment", events.c.enrollment_id)

# What each configured webhook wants, as the settings said when a process last opened the
# store (store.webhooks.subscribe): events.add reads it in the event's own transaction.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("url", String(2000), primary_key=True),
    Column("event", String(20), primary_key=True),
)

# The durable outbox: one row per (event, webhook), written with the event; a delivered
# row keeps its delivered_at. Never dropped: retried with capped backoff until a 2xx.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_uid", String(32), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("event", String(20), nullable=False),
    Column("body", Text, nullable=False),  # the exact JSON POSTed, the same on every try
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", UTCDateTime()),  # None: now; also a claim's lease while delivering
    Column("delivered_at", UTCDateTime()),
    Column("last_error", Text),
    UniqueConstraint("event_uid", "url", name="uq_webhook_outbox_event_url"),
)
Index("ix_webhook_outbox_pending", webhook_outbox.c.delivered_at, webhook_outbox.c.next_at)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email_key", String(320), primary_key=True),
    Column("email", String(320), nullable=False),  # as first suppressed
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

# Sends that migration 0004 could not keep in ``sends`` when it merged two spellings'
# enrollments in one sequence: both had sent the same step, and a step has one send row.
# Their Message-IDs still identify the (surviving) enrollment when mail refers to them.
merged_sends = Table(
    "merged_sends",
    metadata,
    Column("message_id", String(400), primary_key=True),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id"), nullable=False),
    Column("merged_from", Integer, nullable=False),  # the enrollment id it was sent under
    Column("step_index", Integer, nullable=False),
    Column("step_name", String(200), nullable=False),
    Column("mailbox", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("data_at", UTCDateTime()),
    Column("done_at", UTCDateTime()),
    Column("smtp_code", Integer),
    Column("detail", Text),
    Column("subject", Text),
)
Index("ix_merged_sends_enrollment", merged_sends.c.enrollment_id)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("uidvalidity", Integer),
    Column("last_uid", Integer, nullable=False, default=0),
    Column("paused", Boolean, nullable=False, default=False),
    Column("pause_reason", Text),
    Column("pause_kind", String(20)),  # "auth": its credentials or OAuth2 grant were refused
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime()),
    # min_spacing (store.limits): no send from this mailbox before next_send_at, unless
    # the claim holding the turn (send_holder) sends it
    Column("next_send_at", UTCDateTime()),
    Column("send_holder", String(32)),
)

# What each mailbox's inbox watcher last reported (store.health): written by the watcher
# every few seconds and on every change of state, read by `status --mailboxes`.
mailbox_health = Table(
    "mailbox_health",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("state", String(20), nullable=False),  # mail.watching.Health.state
    Column("since", UTCDateTime(), nullable=False),  # in this state since
    Column("last_answer_at", UTCDateTime()),  # the server last answered anything
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime()),
    Column("cursor_lag", Integer),  # UIDs on the server past our cursor; None: unknown
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Each inbound message handled, once per mailbox, with what it proved and what it changed
# (docs/trust.md). Rows from before migration 0005 have only the first five columns.
inbound = Table(
    "inbound",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(200), nullable=False),
    Column("message_id", String(400), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("email_key", String(320)),  # the prospect it was about
    Column("enrollment_id", Integer),
    Column("meaning", String(20)),  # core.machine.Inbound: reply, hard_bounce, soft_bounce …
    Column("proof", String(20)),  # core.trust.Proof: message-id, dmarc, none
    Column("action", String(20)),  # core.trust.Action: halt, suppress, count, review, delay
    Column("review", Boolean),  # listed by `status` for a human to look at
    Column("about", String(400)),  # our Message-ID it quoted, if any
    Column("detail", Text),
    UniqueConstraint("mailbox", "message_id", name="uq_inbound_mailbox_message"),
)
Index("ix_inbound_email_key_at", inbound.c.email_key, inbound.c.at)
Index("ix_inbound_review", inbound.c.review, inbound.c.enrollment_id)

oauth_grants = Table(
    "oauth_grants",
    metadata,
    Column("mailbox", String(200), primary_key=True),
    Column("sealed", Text, nullable=False),  # Fernet token of the grant's JSON
    Column("updated_at", UTCDateTime(), nullable=False),
)
