"""Mail that no person wrote for this thread: auto-replies, lists and newsletters.

None of it halts a sequence as a reply. Each finding carries its reason and a subkind
(``out_of_office`` …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sequencer.core.classify.message import Mail

_AUTO_SUBJECT_RE = re.compile(
    r"^\W*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response|antwort)|autoreply|"
    r"out of (?:the )?office|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|"
    r"respuesta autom[aá]tica|risposta automatica|automatisch antwoord|自動応答|自動返信)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class AutoMail:
    subkind: str
    reason: str


def mailing_list(mail: Mail) -> str | None:
    """Why ``mail`` is list traffic or a newsletter (the reason), or None."""
    for name in ("List-Id", "List-Post", "X-MLServer", "X-ML-Name", "X-Mailing-List"):
        if mail.msg.get(name) is not None:
            return f"mailing list ({name})"
    precedence = mail.header("Precedence").lower()
    if precedence == "list":
        return "mailing list (Precedence: list)"
    submitted = mail.header("Auto-Submitted").lower()
    if mail.msg.get("List-Unsubscribe") is not None and submitted in ("", "no"):
        return "newsletter (List-Unsubscribe)"
    return None


def auto_headers(mail: Mail) -> str | None:
    """The RFC 3834 (or vendor) header that marks ``mail`` as automatic, if any."""
    submitted = mail.header("Auto-Submitted").lower()
    if submitted and submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {submitted.split(';')[0].strip()}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if mail.header(name):
            return f"{name} header"
    precedence = mail.header("Precedence").lower()
    if precedence in ("auto_reply", "bulk", "junk"):
        return f"Precedence: {precedence}"
    return None


def auto_reply(mail: Mail) -> AutoMail | None:
    """What kind of automatic reply ``mail`` is, if it is one."""
    why = auto_headers(mail)
    if why is None and _AUTO_SUBJECT_RE.search(mail.subject):
        why = f"out-of-office subject {mail.subject[:60]!r}"
    if why is None:
        return None
    return AutoMail("out_of_office", why)
