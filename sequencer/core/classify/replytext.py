"""What the sender wrote now, and whether it asks to unsubscribe.

``new_text`` drops the quoted history (``>`` lines, "On … wrote:", Outlook's
"From:/Sent:" block, "-----Original Message-----"), the signature and lines that carry
our own unsubscribe footer. ``unsubscribe_request`` reads only that new text.
"""

from __future__ import annotations

import html
import re

from sequencer.core.classify.message import MAX_TEXT_CHARS, Mail

_PREFIX_RE = re.compile(r"^(?:\s*(?:re|aw|sv|fwd?|wg|tr)\s*:\s*)+", re.IGNORECASE)

def body(mail: Mail) -> str:
    """The first plain-text part, else the first HTML part as text."""
    plain = mail.texts("text/plain")
    if plain:
        return plain[0]
    markup = mail.texts("text/html")
    return html_to_text(markup[0]) if markup else ""


def html_to_text(markup: str) -> str:
    """Rough text of an HTML body without its quoted history."""
    markup = re.sub(r"(?is)<(?:div|span)[^>]*(?:gmail_quote|divRplyFwdMsg|appendonsend|"
                    r"moz-cite-prefix)[^>]*>.*", "", markup)
    markup = re.sub(r"(?is)<blockquote.*?</blockquote>", "", markup)
    markup = re.sub(r"(?is)<(script|style)[^>]*>.*?</\1>", "", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(?:p|div|li|tr|h\d)>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]{0,2000}>", "", markup))


_WROTE_RE = re.compile(
    r"(?:wrote|schrieb|a écrit|escribió|ha scritto|skrev|schreef|napisał|написал|"
    r"のメッセージ|は書きました)\s*[:：]?\s*$|<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_RE = re.compile(r"^\s*(?:on|am|le|el|il|op|den)\s.*(?:\d|@)", re.IGNORECASE)
_ORIGINAL_RE = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|messaggio originale|forwarded message)\s*-{2,}|_{10,})\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM_RE = re.compile(r"^\s*\*?(?:from|von|de|da|van|差出人)\s*\*?\s*[:：]", re.IGNORECASE)
_OUTLOOK_SENT_RE = re.compile(
    r"^\s*\*?(?:sent|date|gesendet|datum|envoyé|enviado(?: el)?|fecha|inviato|"
    r"verzonden|送信日時)\s*\*?\s*[:：]", re.IGNORECASE)
_FOOTER_RE = re.compile(r"unsubscribe|opt[- ]out|abmelden|désinscri|darse de baja",
                        re.IGNORECASE)


def new_text(body: str) -> str:
    """What the sender wrote now: quoted history, signatures and our footer removed."""
    lines = body[:MAX_TEXT_CHARS].splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _starts_history(lines, index):
            kept = _drop_attribution(kept)
            break
        if line.rstrip() == "--":
            break
        if line.lstrip().startswith(">"):
            continue
        if _FOOTER_RE.search(line) and re.search(r"https?://|www\.|<mailto:", line, re.I):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _drop_attribution(kept: list[str]) -> list[str]:
    """Drop the first half of an "On <date>, <name> <addr>\nwrote:" line wrapped in two."""
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and _ATTRIBUTION_RE.match(kept[-1]):
        kept.pop()
    return kept


def _starts_history(lines: list[str], index: int) -> bool:
    line = lines[index]
    if _ORIGINAL_RE.match(line) or _WROTE_RE.search(line):
        return True
    if _OUTLOOK_FROM_RE.match(line):
        return any(_OUTLOOK_SENT_RE.match(after) for after in lines[index + 1:index + 4])
    return False


_UNSUBSCRIBE_RE = re.compile(
    r"\bunsubscribe\b|\bremove (?:me|my (?:e-?mail|address))\b|\btake me off\b|"
    r"\bopt(?:[- ])?(?:me )?out\b|"
    r"\bstop (?:e-?mailing|sending|contacting|writing)\b|\bdo not (?:e-?mail|contact) me\b|"
    r"\bdon'?t (?:e-?mail|contact) me\b|\bno more e-?mails?\b|\babmelden\b|\babbestellen\b|"
    r"d[ée]sabonner|d[ée]sinscri|\bdarme de baja\b|\bdar(?:me|se)? de baja\b|配信停止",
    re.IGNORECASE,
)
_STOP_RE = re.compile(r"^\W*(?:stop|unsubscribe|remove|remove me)\W*$", re.IGNORECASE)


def unsubscribe_request(mail: Mail) -> str | None:
    """Why ``mail`` asks to be taken off the list (the reason), or None."""
    subject = strip_prefixes(mail.subject)
    if _STOP_RE.match(subject):
        return f"unsubscribe request in the subject {subject!r}"
    text = new_text(body(mail))
    first = next((line for line in text.splitlines() if line.strip()), "")
    if _STOP_RE.match(first):
        return f"unsubscribe request {first.strip()[:40]!r}"
    match = _UNSUBSCRIBE_RE.search(text)
    if match is not None:
        return f"unsubscribe request {match.group(0)!r}"
    return None


def strip_prefixes(subject: str) -> str:
    """The subject without its ``Re:``/``Fwd:`` prefixes."""
    return _PREFIX_RE.sub("", subject)


# --- return dates ----------------------------------------------------------------------
