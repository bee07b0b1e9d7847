"""Inbound mail -> reply | auto_reply | bounce | complaint | unsubscribe | unrelated.

Pure: no I/O, no logging, no clock (``now`` is an argument), and ``classify`` never
raises: a message it cannot read comes back ``unrelated`` with the reason. One module
per job: ``message`` (bounded MIME reading), ``bounce`` (RFC 3464 reports and vendor
notices) with ``causes`` (hard or soft by cause), ``complaint`` (ARF), ``ses`` (Amazon
SES via SNS), ``automail`` (auto-replies and lists), ``replytext`` (the new text of a
reply, unsubscribe requests), ``dates`` (return dates) and ``verdict`` (the order).
"""

from sequencer.core.classify.dates import return_date
from sequencer.core.classify.replytext import new_text
from sequencer.core.classify.verdict import Kind, Verdict, classify

__all__ = ["Kind", "Verdict", "classify", "new_text", "return_date"]
