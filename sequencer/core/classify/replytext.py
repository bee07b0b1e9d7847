"""What the sender wrote now, and whether it asks to unsubscribe.

``new_text`` drops the quoted history (``>`` lines, "On … wrote:", Outlook's
"From:/Sent:" block, "-----Original Message-----"), the signature and lines that carry
our own unsubscribe footer. ``unsubscribe_request`` reads only that new text.
"""

from __future__ import annotations

import html
import re

from sequencer.core.classify.message import MAX_TEXT_CHARS, Mail
from sequencer.core.text import bare_subject


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


# History flattened onto one line (an Outlook reply re-wrapped by a phone, a footer pasted
# inline): everything from the first of these on a line is quoted, not new.
_INLINE_HISTORY_RE = re.compile(
    r"\s(?:-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original)\s*-{2,}|\*?(?:from|von|de|van)\*?:\s.{1,200}?\s\*?(?:sent|date|gesendet|"
    r"datum|envoyé|enviado|verzonden)\*?:|on\s.{6,120}?\bwrote:|am\s.{6,120}?\bschrieb)",
    re.IGNORECASE,
)


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
        inline = _INLINE_HISTORY_RE.search(line)
        if inline is not None and inline.start() > 0:
            kept.append(line[:inline.start()])
            break
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


# A positive request, in the writer's own words. Mentions of the word ("to unsubscribe,
# click here", our own footer 'Reply "unsubscribe"') are not requests.
_REQUEST_RE = re.compile(
    r"\b(?:please\s+|pls\s+|kindly\s+|just\s+)?(?:unsubscribe|remove|delete|take|drop|strike)\s+"
    r"(?:me|us|my (?:e-?mail(?: address)?|address|name|details|contact))\b"
    r"(?:\s+(?:off|out|from)\s+(?:of\s+)?(?:the\s+|this\s+|your\s+|all\s+)?"
    r"(?P<what>[\w-]+(?:\s+[\w-]+)?))?|"
    r"\b(?:i|we)\s*(?:'d|would|want|wish|need|'m writing|am writing|'m asking|am asking)?"
    r"(?:\s+(?:like|want|wish|need|love))?\s+(?:to\s+)?(?:unsubscribe|opt[- ]?out|be (?:removed|"
    r"unsubscribed|taken off))\b|"
    r"\btake (?:me|us) off\b|\bopt (?:me|us) out\b|"
    r"\b(?:stop|quit|cease) (?:e-?mailing|emailing|sending (?:me|us|these|those|this)|"
    r"contacting|writing to|messaging|spamming) ?(?:me|us)?\b|"
    r"\b(?:do not|don'?t|never) (?:e-?mail|contact|write to|message) (?:me|us) (?:again|anymore|"
    r"any more)\b|\bno (?:more|further) (?:e-?mails?|messages|mails)\b|"
    r"(?:^|\n|[.!?]\s+)(?:please\s+)?unsubscribe(?:\s+(?:me|please|us))?\s*[.!]*\s*(?:$|\n)|"
    r"\bhow (?:do|can) i (?:unsubscribe|opt out)\b|"
    r"\bbitte\s+(?:abmelden|austragen|entfernen)\b|\b(?:melden|tragen)\s+sie\s+mich\b.{0,20}?"
    r"\b(?:ab|aus)\b|\bich\s+m(?:ö|oe)chte\s+(?:mich\s+)?(?:abmelden|austragen|keine)|"
    r"\bkeine\s+(?:weiteren\s+)?(?:e-?mails|nachrichten)\b|"
    r"\bd[ée]sinscrivez[- ]moi\b|\bme\s+d[ée]sinscrire\b|\bme\s+d[ée]sabonner\b|"
    r"\bd[ée]sabonnez[- ]moi\b|\bretirez[- ]moi\b|\bne plus recevoir\b|"
    r"\b(?:darme|dame|denme)\s+de\s+baja\b|\bquiero\s+darme\s+de\s+baja\b|"
    r"\bcancelar\s+(?:mi\s+)?suscripci[oó]n\b|\bno\s+me\s+env[ií]e(?:n)?\s+m[aá]s\b|"
    r"\bdej(?:en|e|a)\s+de\s+(?:enviarme|escribirme|mandarme)\b|\bparem\s+de\s+me\s+enviar\b|"
    r"\bsmettete\s+di\s+(?:inviarmi|scrivermi)\b|\barr[êe]tez\s+de\s+m'(?:envoyer|[ée]crire)\b|"
    r"\bh[öo]ren\s+sie\s+auf,?\s+mir\b|\bcancellatemi\b|\bcancellami\b|\brimuovetemi\b|"
    r"\bschrijf\s+me\s+uit\b|"
    r"\bverwijder\s+mij\b|\bremova[- ]me\b|\bdescadastr(?:e-me|ar)\b|配信停止|"
    r"отпишите|отписаться",
    re.IGNORECASE,
)
# "remove me from the cc" is about the thread, not the sequence.
_THREAD_WORDS = frozenset({"cc", "thread", "chain", "loop", "conversation", "copy", "reply",
                           "email-chain", "meeting", "invite", "call", "group", "bcc"})
_NEGATION_RE = re.compile(
    r"(?:\b(?:don'?t|do not|didn'?t|did not|never|not|no need to|no reason to|won'?t|wouldn'?t|"
    r"nicht|kein|ne|pas|no)\b|n't)[ \t]+(?:[\w']+[ \t]+){0,3}$", re.IGNORECASE)
_STOP_RE = re.compile(
    r"^\W*(?:stop|unsubscribe|remove|remove me|opt[- ]?out|take me off|abmelden|"
    r"d[ée]sinscription|baja|配信停止)\W*$", re.IGNORECASE)


def unsubscribe_request(mail: Mail) -> str | None:
    """Why ``mail`` asks to be taken off the list (the reason), or None."""
    subject = bare_subject(mail.subject)
    if _STOP_RE.match(subject):
        return f"unsubscribe request in the subject {subject!r}"
    text = new_text(body(mail))
    first = next((line for line in text.splitlines() if line.strip()), "")
    if _STOP_RE.match(first):
        return f"unsubscribe request {first.strip()[:40]!r}"
    for match in _REQUEST_RE.finditer(text[:10_000]):
        what = (match.group("what") or "").lower().split()
        if _THREAD_WORDS.intersection(what):
            continue
        before = text[max(0, match.start() - 40):match.start()]
        sentence = re.split(r"[.!?\n]", before)[-1]
        if _NEGATION_RE.search(sentence):
            continue
        return f"unsubscribe request {match.group(0).strip()[:40]!r}"
    return None


def one_tap_unsubscribe(mail: Mail) -> bool:
    """A client's one-tap unsubscribe (Apple Mail's sends the mailto: subject, no Re:)."""
    return bare_subject(mail.subject) == mail.subject and _STOP_RE.match(mail.subject) is not None
