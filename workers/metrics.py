"""``--metrics-port``: Prometheus metrics over HTTP (``prometheus_client``), off unless
asked for.

* The engine's counters: ``sequencer_events_total{event}`` for every event the process
  logs (``sent``, ``replied``, ``bounced``, ``unknown`` …), counted by a logging handler
  on the event log, so they move exactly when the log line is written (after the commit).
* Gauges read at each scrape (``store.gauges``): ``sequencer_due_now`` (active steps due
  now), ``sequencer_oldest_due_age_seconds``, and per mailbox the reply-detection lag as
  the watcher last reported it: ``sequencer_mailbox_cursor_lag`` (messages on the server
  past its cursor) and ``sequencer_mailbox_answer_age_seconds`` (since its IMAP server
  last answered).
* dramatiq's message metrics (``dramatiq_messages_total`` and the rest, the names of
  dramatiq's own Prometheus middleware) from ``DramatiqMetrics``, a broker middleware.

dramatiq's own ``Prometheus`` middleware is not used as is: it serves from a process that
the ``dramatiq`` command forks, and keeps its counters in a multiprocess directory shared
by every dramatiq process on the host (``dramatiq_prom_db``, in /tmp by default). Our
processes are not started by that command, so this module uses ``prometheus_client`` (the
library it is built on) with one registry per process and the same metric names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sequencer.eventlog import EventRecord
from sequencer.eventlog import logger as event_logger
from sequencer.store import gauges
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)


class EventCounter(logging.Handler):
    """Counts each logged engine event by name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.events = Counter("sequencer_events", "Engine events logged, by event.",
                              ["event"], registry=registry)

    def emit(self, record: logging.LogRecord) -> None:
        event: EventRecord | None = getattr(record, "sequencer_event", None)
        if event is not None:
            self.events.labels(event.event.value).inc()


class StoreGauges(Collector):
    """The backlog and the mailboxes' lag, read from the database at each scrape."""

    def __init__(self, app: Workspace) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.app.clock()
        try:
            due = gauges.backlog(self.app.store, now)
            lags = gauges.mailbox_lags(self.app.store, now)
        except Exception:
            logger.warning("metrics: cannot read the backlog from the database", exc_info=True)
            return
        yield GaugeMetricFamily("sequencer_due_now", "Active steps due now.", value=due.due)
        yield GaugeMetricFamily("sequencer_oldest_due_age_seconds",
                                "How long the oldest due step has waited.", value=due.oldest_s)
        cursor = GaugeMetricFamily("sequencer_mailbox_cursor_lag",
                                   "Messages on the IMAP server past the watcher's cursor.",
                                   labels=["mailbox"])
        answer = GaugeMetricFamily("sequencer_mailbox_answer_age_seconds",
                                   "Seconds since the mailbox's IMAP server last answered.",
                                   labels=["mailbox"])
        for lag in lags:
            if lag.cursor_lag is not None:
                cursor.add_metric([lag.name], lag.cursor_lag)
            if lag.answer_age_s is not None:
                answer.add_metric([lag.name], lag.answer_age_s)
        yield cursor
        yield answer


class DramatiqMetrics(Middleware):
    """dramatiq's message metrics, in this process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["queue_name", "actor_name"]
        self.total = Counter("dramatiq_messages", "The total number of messages processed.",
                             labels, registry=registry)
        self.errors = Counter("dramatiq_message_errors", "The total number of errored "
                              "messages.", labels, registry=registry)
        self.in_progress = Gauge("dramatiq_messages_inprogress", "The number of messages in "
                                 "progress.", labels, registry=registry)
        self.duration = Histogram("dramatiq_message_duration_milliseconds", "The time spent "
                                  "processing messages.", labels, registry=registry,
                                  buckets=(5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500,
                                           5000, 7500, 10000, 30000, 60000, float("inf")))
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.in_progress.labels(message.queue_name, message.actor_name).inc()
        self._started[message.message_id] = time.monotonic()

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None
                              ) -> None:
        labels = (message.queue_name, message.actor_name)
        self.in_progress.labels(*labels).dec()
        self.total.labels(*labels).inc()
        if exception is not None:
            self.errors.labels(*labels).inc()
        started = self._started.pop(message.message_id, None)
        if started is not None:
            self.duration.labels(*labels).observe((time.monotonic() - started) * 1000)

    after_skip_message = after_process_message


def serve(app: Workspace, port: int, host: str = "127.0.0.1") -> CollectorRegistry:
    """Serve this process's metrics on ``host:port`` (a daemon thread); returns the registry
    that ``DramatiqMetrics`` joins."""
    registry = CollectorRegistry()
    event_logger.addHandler(EventCounter(registry))
    registry.register(StoreGauges(app))
    start_http_server(port, addr=host, registry=registry)
    logger.info("metrics on http://%s:%d/metrics", host, port)
    return registry
