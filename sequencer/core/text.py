"""Rules about text that several parts of the program apply: one each.

* A **control character** is C0 (``\\x00``-``\\x1f``, so tab, CR and LF too), DEL, NEL
  (``\\x85``) and the Unicode line and paragraph separators (U+2028, U+2029). None of them
  belongs in a header, an address, a subject or a CSV cell: each can end a line for some
  reader, which is how a header gets injected.
* A subject's **reply and forward prefixes** (``Re:``, ``AW:``, ``SV:``, ``Fwd:``, ``WG:``,
  ``TR:``, repeated, any case) are not part of what the subject says.
"""

from __future__ import annotations

import re

CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_REPLY_PREFIXES = re.compile(r"^(?:\s*(?:re|aw|sv|fwd?|wg|tr)\s*:\s*)+", re.IGNORECASE)


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character (see above)."""
    return CONTROL.search(text) is not None


def bare_subject(subject: str) -> str:
    """``subject`` without its leading reply and forward prefixes."""
    return _REPLY_PREFIXES.sub("", subject)
