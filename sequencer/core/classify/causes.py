"""Why a delivery failed, and whether that makes the address bad for good.

The causes are sisimai's reason names (https://libsisimai.org/en/reason/), the public
taxonomy the corpus labels cite. A bounce is **hard** only when the address itself is
bad: ``userunknown`` (no such mailbox), ``hostunknown`` (no such domain), ``hasmoved``,
and ``notaccept`` (the domain takes no mail: null MX), each reported as a permanent
failure. Everything else is **soft**: the sender's side (blocked IP or domain, SPF, DKIM
and DMARC, reputation, rate limits, content called spam, policy), the mailbox's state
(full, disabled, filtered) and passing faults (network, system, expired in the queue).
That is the line sisimai's hard-bounce flag draws; a 4.x.x or 4xx is never hard.

The cause comes from the words of the diagnostic first (they say more than the code: a
``550 5.1.1`` that says "mailbox full" is full), then from the RFC 3463 status, then
from the SMTP command that was refused (see ``cause_of``).
"""

from __future__ import annotations

import re
from typing import Literal

Severity = Literal["hard", "soft"]

MAX_WORDS = 6_000   # a failure is said near the top of a notice; reading further costs time

HARD_CAUSES = frozenset({"userunknown", "hostunknown", "hasmoved"})

_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_SAID_STATUS_RE = re.compile(
    r"(?<![\d.])([245]\d\d)[ -]['\"]?([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_REPLY_RE = re.compile(r"(?<![\w.-])([245])(\d\d)(?=[\s\-:;,.)\]'\"]|$)")
_COMMAND_RE = re.compile(
    r"in reply to (?P<p>rcpt to|end of data|data|mail from|helo|ehlo)\b"
    r"|>>> (?P<s>rcpt to|data|mail from|helo|ehlo)\b"
    r"|after (?P<e>rcpt(?: to)?|end of data|data|mail(?: from)?|helo|ehlo|initial connection)\b"
    r"|(?P<q>rcpt to|mail from) response"
    r"|smtp:(?P<x>rcpt|data|mail) host",
    re.IGNORECASE,
)
_ADDRESS_LINE_RE = re.compile(
    r"^[ \t]*[\"<(\[]?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})[\">)\]]?"
    r"(?:[ \t]*[:;,(\[]|[ \t]*$|[ \t]+(?:on|said|\.\.\.))", re.MULTILINE)

# Status codes whose meaning RFC 3463 fixes (subject.detail); others fall back to the
# subject alone (x.6.x content, x.7.x security).
_STATUS_CAUSE = {
    "1.0": "userunknown", "1.1": "userunknown", "1.2": "hostunknown",
    "1.3": "userunknown", "1.4": "filtered", "1.6": "hasmoved", "1.7": "rejected",
    "1.8": "rejected", "1.9": "systemerror", "1.10": "notaccept",
    "2.0": "filtered", "2.1": "filtered", "2.2": "mailboxfull", "2.3": "exceedlimit",
    "2.4": "filtered",
    "3.0": "systemerror", "3.1": "systemfull", "3.2": "notaccept", "3.3": "systemerror",
    "3.4": "mesgtoobig", "3.5": "systemerror",
    "4.0": "networkerror", "4.1": "networkerror", "4.2": "networkerror",
    "4.3": "systemerror", "4.4": "hostunknown", "4.5": "systemfull", "4.6": "networkerror",
    "4.7": "expired",
    "5.2": "syntaxerror", "5.3": "toomanyconn", "5.4": "systemerror", "5.5": "systemerror",
    "5.6": "syntaxerror",
    "7.13": "suspend", "7.17": "hasmoved", "7.18": "hasmoved", "7.20": "authfailure",
    "7.21": "authfailure", "7.22": "authfailure", "7.23": "authfailure",
    "7.24": "authfailure", "7.25": "requireptr", "7.26": "authfailure",
    "7.27": "notaccept",
}
_SUBJECT_CAUSE = {"6": "contenterror", "7": "securityerror"}


def _words(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(phrases))


# Tier 1: words that decide whatever the status says (a 5.1.1 "mailbox full" is full).
_DECISIVE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("notaccept", _words(
        r"null mx", r"does not accept (?:any )?mail", r"doesn'?t receive e?-?mail",
        r"indicated no smtp service", r"no mx record", r"not accepting (?:any )?(?:network )?"
        r"(?:mail|messages)", r"host does not accept", r"accepts no mail")),
    ("mailboxfull", _words(
        r"mail ?box (?:is |was )?(?:full|over)", r"over ?quota", r"quota (?:exceed|full|violation)",
        r"(?:exceeded|exceeds|over) (?:the |its |his |her )?(?:storage|quota|mailbox)",
        r"disk quota", r"out of (?:storage|space)", r"inbox is full", r"mailbox (?:size )?limit",
        r"(?:mailbox|inbox) is (?:full|over)", r"account is full", r"mail ?box full",
        r"too much mail", r"storage (?:space|allocation|quota)", r"postfach (?:ist )?voll",
        r"boîte (?:aux lettres )?pleine", r"boite pleine")),
    ("mesgtoobig", _words(
        r"message (?:is |was )?too (?:big|large|long)", r"(?:message|mail) size",
        r"size (?:exceeds|limit)", r"exceeds (?:the |fixed )?(?:maximum|size|message size)",
        r"too large for", r"message length exceeds", r"recipsizelimit")),
    ("suspend", _words(
        r"account (?:has been |is |was )?(?:disabled|suspended|deactivated|locked|blocked|frozen|"
        r"inactive|expired|closed|terminated)", r"mailbox (?:is |has been )?(?:disabled|suspended|"
        r"frozen|inactive|locked|closed)", r"(?:disabled|suspended|inactive|locked) (?:recipient|"
        r"account|mailbox|user)", r"(?:temporar(?:y|ily)|currently) (?:locked|disabled|suspended)",
        r"(?:is|been) (?:disabled|suspended|deactivated)", r"compte du destinataire est bloque",
        r"is inactive")),
    ("hasmoved", _words(
        r"has (?:been )?moved", r"no longer (?:on (?:this )?server|with|at|in use|active)",
        r"not our user", r"owner has changed", r"has been replaced by",
        r"changed (?:his|her|their) (?:e-?mail )?address")),
    ("filtered", _words(
        r"message filtered", r"user reject", r"recipient preferences", r"refuses? to receive",
        r"only accepting mail from specific", r"blocked by the recipient",
        r"restricted sms e-?mail", r"rejected due to user rules", r"is not accepting any mail")),
    ("rejected", _words(
        r"sender (?:address |domain )?(?:rejected|denied|refused|unknown|verify|invalid|"
        r"is not allowed)", r"domain of sender", r"(?:bad|invalid|unknown) sender",
        r"sender address", r"group (?:owner|moderator)", r"permission to post",
        r"not a registered gateway user", r"only accepts mail from", r"sender is not",
        r"senders? not allowed")),
    ("norelaying", _words(
        r"relay(?:ing)? (?:access )?(?:denied|not permitted|not allowed|prohibited|refused)",
        r"not (?:permitted|allowed|authorized) to relay", r"unable to relay", r"we do not relay",
        r"no relaying", r"cannot relay", r"relay access", r"address is not verified",
        r"identities failed the check", r"not a gateway", r"rcpthosts")),
    ("speeding", _words(
        r"rate limit", r"too many (?:connections|messages|recipients|sessions|concurrent|mails)",
        r"frequency limit", r"sending rate", r"sent to too many", r"connection rate",
        r"receiving mail at a rate", r"throttl", r"too fast", r"too many smtp")),
    ("authfailure", _words(
        r"\bspf\b", r"\bdkim\b", r"\bdmarc\b", r"sender policy framework",
        r"authentication (?:information|results?|check)", r"fails? to pass (?:authentication|"
        r"spf|dkim)")),
    ("requireptr", _words(
        r"reverse dns", r"\bptr\b", r"\brdns\b", r"reverse (?:lookup|name|address)",
        r"no reverse", r"requires? that all mail servers", r"mismatches client ip",
        r"cannot find your hostname", r"hostname (?:does not|doesn'?t) match")),
    ("notcompliantrfc", _words(
        r"multiple addresses in from", r"rfc ?5322", r"rfc ?2822", r"not (?:rfc|standards)"
        r"[ -]?compliant", r"duplicate header", r"header (?:syntax|is malformed)")),
    ("badreputation", _words(r"reputation")),
    ("virusdetected", _words(r"virus", r"malware", r"infected", r"malicious")),
    ("spamdetected", _words(
        r"\bspam\b", r"\bube\b", r"\buce\b", r"\bjunk\b", r"unsolicited", r"bulk (?:e-?mail|mail)",
        r"content rejected", r"scored as", r"classified as", r"phish")),
)
# Tier 2: the address is unknown. Strong phrases decide alone; the plain "user unknown"
# words need a status or the RCPT stage (after DATA they are a content filter's words).
_USER_STRONG = _words(
    r"not listed in", r"(?:adresse|destinataire|utilisateur|compte|bo[îi]te)[^.]{0,60}n'existe pas",
    r"(?:direcci[oó]n|usuario|cuenta|destinatario|buz[oó]n)[^.]{0,60}no existe",
    r"(?:indirizzo|utente|casella|destinatario)[^.]{0,60}non esiste",
    r"(?:adres|gebruiker|mailbox|postbus)[^.]{0,60}bestaat niet",
    r"(?:adresse|empf[äa]nger|benutzer|postfach|konto)[^.]{0,60}(?:existiert nicht|gibt es nicht)",
    r"did not (?:exactly )?match (?:an? |any )?\S+ (?:e-?mail )?address",
    r"no match(?:es)? (?:to|for|in) (?:the )?(?:nameserver|directory|name)",
    r"recipient name is not recognized", r"no valid recipients",
    r"invalid .{0,20}user ?id", r"doesn'?t have an? \S+ account", r"recip(?:ient)?notfound",
    r"account that you tried to reach does not exist", r"address (?:could ?n[o']t be|cannot be) "
    r"found", r"address not found", r"no such person", r"there is no one at this address",
    r"no longer accepts mail", r"is not an active address")
_USER = _words(
    r"user ?unknown", r"unknown (?:user|recipient|mailbox|address|local[- ]?part|e-?mail)",
    r"no such (?:user|mailbox|recipient|address|account|local user)",
    r"(?:user|recipient|mailbox|address|account|addressee)(?: \S+)? (?:does not|doesn'?t|"
    r"did not|does no longer) exist", r"(?:user|recipient|mailbox|address)(?: \S+)? not "
    r"(?:found|exist|known|present)", r"(?:recipient|user|mailbox) (?:name )?is not recognized",
    r"(?:invalid|bad|unknown) (?:recipient|mailbox|destination (?:mailbox|address)|"
    r"e-?mail address|address|user)", r"not a (?:valid|known) (?:mailbox|recipient|user|address)",
    r"not a valid user", r"mailbox (?:is )?unavail", r"mailbox not available", r"no mail ?box",
    r"no account by that", r"recipient not found", r"addressee unknown", r"unrouteable address",
    r"not our customer", r"user not active", r"recipient is not local",
    r"recipient (?:is )?not accepted", r"destinataire invalide", r"utilisateur inconnu",
    r"nessun utente", r"adresse (?:nicht gefunden|unbekannt)",
    r"benutzer unbekannt", r"unbekannte?r? (?:empfänger|benutzer)", r"bad address",
    r"address error", r"(?:recipient|user) is invalid", r"mailbox (?:name )?(?:is )?invalid")
# A notice quotes the returned message's subject: its words are not the failure's.
_SUBJECT_LINE_RE = re.compile(r"(?im)^[ \t]*(?:subject|betreff|objet|asunto|oggetto|onderwerp)"
                              r"[ \t]*:.*$")
_NO_ADDRESS_USER = re.compile(r"\b5\d\d :\s*user unknown")  # Japanese carriers, after DATA
# Tier 3: words that say more than the status (a 5.1.1 that says "blacklisted" is a block).
_SPECIFIC: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("hostunknown", _words(
        r"host (?:or domain name )?(?:not found|unknown)", r"unknown (?:host|domain)",
        r"no such (?:domain|host)", r"domain (?:name )?(?:not found|does not exist|is not "
        r"reachable|unknown|invalid)", r"domain is not reachable", r"unrouteable (?:mail )?domain",
        r"nxdomain", r"host not found", r"could not be resolved", r"invalid domain",
        r"not a valid domain", r"couldn'?t find any host", r"bad destination system")),
    ("networkerror", _words(r"malformed or unexpected name server", r"routing loop",
                            r"name service error.{0,80}try again",
                            r"hop count", r"too many hops", r"loop detected")),
    ("blocked", _words(
        r"blocked", r"black ?list", r"block ?list", r"\bbanned\b", r"deny ?list", r"\brbl\b",
        r"dnsbl", r"spamhaus", r"spamcop", r"sorbs", r"listed (?:at|in|on|by)",
        r"client host (?:\S+ )?(?:rejected|blocked|refused)", r"access denied",
        r"not allowed to send", r"(?:ip|host|domain|server|sender|connection)(?: address)? "
        r"(?:\S+ )?(?:is )?(?:not allowed|refused|rejected|blocked|denied)",
        r"service refused", r"refused to talk", r"no access from", r"purported responsible",
        r"is redundant", r"connection refused")),
)
_BLOCKED = dict(_SPECIFIC)["blocked"]
# Tier 4: general words, used only when no status says more.
_GENERAL: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("policyviolation", _words(
        r"polic(?:y|ies)", r"protocol violation", r"network not allowed", r"header error",
        r"not accepted for", r"content presents")),
    ("contenterror", _words(r"8-?bit", r"\bmime\b", r"illegal character", r"header format")),
    ("expired", _words(
        r"expired", r"queue too long", r"too long in queue", r"retry time", r"timed? ?out",
        r"deferred", r"given up", r"gave up", r"unable to deliver in",
        r"could not be delivered for")),
    ("networkerror", _words(
        r"network", r"dns error", r"connection (?:lost|reset|closed|dropped)",
        r"lookup (?:failed|error)", r"no (?:mx|dns|route)", r"name service error")),
    ("systemfull", _words(r"insufficient (?:system )?(?:disk )?(?:space|storage)",
                          r"system (?:is )?full", r"disk (?:is )?full")),
    ("mailererror", _words(r"procmail", r"x-unix", r"mailer (?:error|program)", r"command died",
                           r"pipe to", r"lock failure")),
    ("securityerror", _words(r"authentication (?:required|failed)", r"unauthenticated",
                             r"smtp auth", r"\btls\b", r"starttls", r"encryption")),
    ("systemerror", _words(r"system error", r"internal (?:server |system )?error",
                           r"service (?:currently )?unavailable", r"not available",
                           r"temporary failure", r"transaction failed", r"server error",
                           r"upstream error", r"local error")),
    ("syntaxerror", _words(r"syntax", r"command (?:not|unrecognized)", r"improper sequence",
                           r"not implemented", r"bad sequence")),
    ("blocked", _words(r"\brejected\b")),
)


def status_code(text: str) -> str | None:
    """The most telling RFC 3463 code in ``text``: one a server said after its reply code
    (``550-'5.7.1``) first, then the first that is not ``x.0.0``."""
    text = text[:MAX_WORDS]
    said = [".".join(m.groups()[1:]) for m in _SAID_STATUS_RE.finditer(text)]
    found = [".".join(m.groups()) for m in _STATUS_RE.finditer(text)]
    for codes in (said, found):
        specific = [code for code in codes if not code.endswith(".0.0")]
        if specific:
            return specific[0]
    return next(iter(said or found), None)


def reply_code(text: str) -> str | None:
    """The first SMTP reply code (``550``) in ``text``."""
    match = _REPLY_RE.search(text[:MAX_WORDS])
    return match.group(0) if match else None


def command_of(text: str) -> str:
    """The SMTP command the remote server refused: ``RCPT``, ``DATA``, ``MAIL``, ``EHLO``."""
    match = _COMMAND_RE.search(text[:MAX_WORDS])
    if match is None:
        return ""
    said = next(g for g in match.groups() if g).lower()
    if "rcpt" in said:
        return "RCPT"
    if "data" in said:
        return "DATA"
    if "mail" in said:
        return "MAIL"
    return "EHLO"


def about(text: str, recipient: str | None = None) -> str:
    """The part of a notice about one recipient (the first, or ``recipient``).

    Notices list failed addresses one per block (``<a@b>: 550 …``); the text between one
    address line and the next is what the server said about that address.
    """
    starts = [(m.start(), m.group(1).lower()) for m in _ADDRESS_LINE_RE.finditer(text)]
    if len({who for _, who in starts}) < 2:
        return text
    index = next((i for i, (_, who) in enumerate(starts) if who == recipient), 0)
    begin, who = starts[index]
    end = next((at for at, other in starts[index + 1:] if other != who), len(text))
    return text[begin:end]


def says_address_unknown(text: str) -> bool:
    """Do these words say the address does not exist ("not a valid user here")?"""
    words = re.sub(r"\s+", " ", text[:MAX_WORDS]).lower()
    return bool(_USER_STRONG.search(words) or _USER.search(words))


def cause_of(status: str, text: str, action: str = "", command: str = "",
             reported: bool = False) -> str:
    """sisimai's reason name for a failure, from its status, words and refused command.

    ``reported``: the failure comes from an RFC 3464 report, not from a notice's prose.
    """
    words = re.sub(r"\s+", " ", _SUBJECT_LINE_RE.sub("", text[:MAX_WORDS])).lower()
    code = _best_code(status, words)
    by_code = _by_status(code)
    if words.startswith("x-unix;"):
        return "mailererror"     # the local delivery program failed, not the address
    for cause, pattern in _DECISIVE:
        if pattern.search(words):
            return cause
    if command in ("MAIL", "EHLO"):  # refused before any recipient was named
        return "blocked" if _BLOCKED.search(words) or command == "EHLO" else "rejected"
    if _USER_STRONG.search(words):
        return "userunknown"
    policy_code = code[2:4] == "7." and command != "RCPT"   # x.7.x: refused by policy
    if _USER.search(words) and not policy_code:
        if by_code == "userunknown":
            return by_code
        if command == "DATA" or _NO_ADDRESS_USER.search(words):
            return "filtered"
        return "userunknown" if code or reported or command == "RCPT" else "filtered"
    for cause, pattern in _SPECIFIC:
        if pattern.search(words):
            return cause
    if by_code:
        return by_code
    for cause, pattern in _GENERAL:
        if pattern.search(words):
            return cause
    if action in ("delayed", "expired"):
        return "expired"
    if command == "EHLO":
        return "blocked"
    if command == "MAIL":
        return "rejected"
    return "onhold" if words.strip() else "undefined"


def _best_code(status: str, words: str) -> str:
    """The status field's code, unless it is a bare ``x.0.0`` and the words say more."""
    field = status_code(status) or ""
    said = status_code(words) or ""
    if said and (not field or field.endswith(".0.0")) and said[0] == (field or said)[0]:
        return said
    return field or said


def _by_status(code: str) -> str:
    if not code:
        return ""
    kind, subject, detail = code.split(".")
    if kind == "4" and f"{subject}.{detail}" in ("4.1", "4.2"):
        return "expired"    # no answer or a bad connection, retried until the queue gave up
    return _STATUS_CAUSE.get(f"{subject}.{detail}") or _SUBJECT_CAUSE.get(subject, "")


def severity_of(cause: str, status: str, text: str = "", action: str = "") -> Severity:
    """Hard only for a bad address reported as a permanent failure (never for a 4xx)."""
    if action in ("delayed", "relayed", "delivered", "expanded"):
        return "soft"
    code = _best_code(status, text) or reply_code(text) or ""
    if code.startswith("4"):
        return "soft"
    if cause in HARD_CAUSES or cause == "notaccept":
        return "hard"
    return "soft"
