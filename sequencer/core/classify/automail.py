"""Mail that no person wrote for this thread: auto-replies of every kind, lists, newsletters.

None of it halts a sequence as a reply. Each finding carries its reason and a subkind:

- ``mdn``: an RFC 3798 read receipt (``report-type=disposition-notification``), or an
  Outlook "Read:" receipt that says the message was read;
- ``challenge_response``: "click to be added to my allowed list" sender verification;
- ``auto_generated``: helpdesk acknowledgements ("we have received your request, ticket
  #123"), ``[AUTO GENERATED]`` notifications, ``Auto-Submitted: auto-generated``;
- ``out_of_office``: RFC 3834 headers (``Auto-Submitted: auto-replied``, ``X-Autoreply``,
  ``Precedence: auto_reply``), an out-of-office subject (30 languages, Lotus Notes
  ``AUTO:``), or a body that says so in its own words (``BODY``): a phrase only a machine
  writes ("this is an automatic reply"), or an absence phrase ("I am out of the office")
  together with a second hallmark (urgent matters go to someone else, limited access to
  e-mail, an answer on return). A person's reply that mentions being away ("I'm out until
  Monday, let's talk then") has neither, and stays a reply.

A subject is only read when it has no ``Re:``/``Fwd:`` prefix: "Re: Out of office next
week?" is a person writing about an absence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sequencer.core.classify.message import Mail
from sequencer.core.text import bare_subject

MAX_OPENING_CHARS = 4_000   # read receipts and challenges say what they are at the top

_END = r"(?=[\s:：\-–—(\[,.!]|$)"

# Subjects that an out-of-office system writes, at the start of the subject.
_OOO_SUBJECT_RE = re.compile(
    r"^\W*(?:\[[^\]]{1,20}\]\s*)?(?:"
    # en
    r"auto(?:matic|mated)?[- ]?(?:reply|response|answer)|autoreply|out[- ]of[- ](?:the[- ])?"
    r"office|ooo|away from (?:the |my )?(?:office|desk)|on (?:vacation|holiday|leave)|"
    r"(?:vacation|holiday|absence|away) (?:reply|notice|message)|annual leave|away:|"
    # de
    r"abwesenheitsnotiz|abwesend|abwesenheit|automatische (?:rück)?antwort|autom\. antwort|"
    r"nicht im büro|au(?:ß|ss)er haus|im urlaub|urlaub|"
    # fr es it pt
    r"r[ée]ponse automatique|message d'absence|absente?|absence|hors du bureau|en cong[ée]s?|"
    r"en vacances|respuesta autom[aá]tica|fuera de (?:la )?oficina|ausente|ausencia|"
    r"de vacaciones|risposta automatica|fuori (?:sede|ufficio)|assente|in ferie|"
    r"resposta autom[aá]tica|fora do escrit[oó]rio|aus[eê]ncia|de f[ée]rias|"
    # nl sv da no fi
    r"automatisch antwoord|afwezig(?:heid)?|niet aanwezig|buiten kantoor|met vakantie|"
    r"autosvar|automati(?:skt|sk) svar|frånvarande|(?:ej|inte|ikke) på kontoret|"
    r"fraværende|fravær|automaattinen vastaus|automaattivastaus|poissaolo(?:ilmoitus)?|"
    r"poissa|lomalla|"
    # pl cs sk hu ro
    r"odpowied[źz] automatyczna|automatyczna odpowied[źz]|autoodpowied[źz]|nieobecno[śs][ćc]|"
    r"poza biurem|automatick[áa] odpov[ěe][dď]|nep[řr][íi]tomnost|mimo kancel[áa][řr]|"
    r"automatick[áa] odpove[dď]|nepr[íi]tomnos[ťt]|automatikus v[áa]lasz|h[áa]zon k[íi]v[üu]l|"
    r"r[ăa]spuns automat|[îi]n afara biroului|"
    # ru uk el tr
    r"автоответ|автоматический ответ|нет на месте|вне офиса|отсутствую|в отпуске|"
    r"автовідповідь|автоматична відповідь|поза офісом|відсутн(?:ій|я)|у відпустці|"
    r"αυτόματη απάντηση|εκτός γραφείου|otomatik (?:yan[ıi]t|cevap)|ofis d[ıi][şs][ıi]nda|"
    r"izindeyim|"
    # zh ja ko
    r"自动回复|自動回覆|自动答复|自動回復|自動回复|不在办公室|不在辦公室|休假|外出|自動応答|"
    r"自動返信|不在|외出|자동 ?응답|자동 ?회신|부재 ?중|"
    # ar he hi th vi id/ms
    r"رد تلقائي|الرد التلقائي|رد آلي|خارج المكتب|תשובה אוטומטית|מענה אוטומטי|מחוץ למשרד|"
    r"स्वचालित (?:उत्तर|जवाब)|स्वतः उत्तर|कार्यालय से बाहर|การตอบกลับอัตโนมัติ|ตอบกลับอัตโนมัติ|"
    r"ไม่อยู่ที่สำนักงาน|tr[ảa] l[ờo]i t[ựu] [đd][ộo]ng|t[ựu] [đd][ộo]ng tr[ảa] l[ờo]i|"
    r"v[ắa]ng m[ặa]t|balasan (?:otomatis|automatik)|jawaban otomatis|di luar kantor|"
    r"sedang cuti|"
    # Lotus Notes
    r"auto:"
    rf"){_END}",
    re.IGNORECASE,
)

# Phrases only a machine writes.
_MACHINE_RE = re.compile(
    r"(?:this is an? |an? )?auto(?:matic(?:ally)?|mated)[- ](?:generated )?(?:reply|response|"
    r"answer|message|notification)|auto[- ]?reply|out[- ]of[- ]office (?:reply|message|notice)|"
    r"automatisch(?:e)? (?:antwort|nachricht|generiert)|diese (?:e-?mail|nachricht) wurde "
    r"automatisch|r[ée]ponse automatique|message automatique|respuesta autom[aá]tica|"
    r"mensaje autom[aá]tico|risposta automatica|messaggio automatico|resposta autom[aá]tica|"
    r"mensagem autom[aá]tica|automatisch (?:antwoord|bericht)|automatiskt svar|automatisk svar|"
    r"automaattinen vastaus|automatyczna odpowied[źz]|odpowied[źz] automatyczna|"
    r"wygenerowana automatycznie|automatick[áa] odpov[ěe][dď]|automatikus v[áa]lasz|"
    r"r[ăa]spuns automat|автоматический ответ|автоответ|автоматична відповідь|"
    r"автовідповідь|αυτόματη απάντηση|otomatik (?:yan[ıi]t|cevap|mesaj)|自动回复|自動回覆|"
    r"自动答复|自動応答|自動返信|자동 ?응답|자동 ?회신|رد تلقائي|رد آلي|תשובה אוטומטית|"
    r"מענה אוטומטי|स्वचालित (?:उत्तर|जवाब)|ตอบกลับอัตโนมัติ|tr[ảa] l[ờo]i t[ựu] [đd][ộo]ng|"
    r"balasan (?:otomatis|automatik)",
    re.IGNORECASE,
)
# The same, said of the message itself: enough on its own at the top of a message.
_DECLARED_RE = re.compile(
    r"\b(?:this|it) is an? auto(?:matic|mated)(?:ally generated)? (?:reply|response|answer|"
    r"message|notification)|\b(?:this|the) (?:message|e-?mail|reply|response) (?:is|was|has been)"
    r" (?:sent |generated )?automatic(?:ally)?|automatically (?:generated|sent)|"
    r"dies ist eine automatische|diese (?:e-?mail|nachricht) wurde automatisch|"
    r"(?:ceci est|il s'agit d')une? (?:r[ée]ponse|message) automatique|"
    r"(?:esta es una|este es un) (?:respuesta|mensaje) autom[aá]tic|"
    r"questa [èe] una risposta automatica|(?:esta [ée] uma|este [ée] um) (?:resposta|mensagem) "
    r"autom[aá]tic|dit is een automatisch|это автоматическ|це автоматичн|自动回复|自動回覆|"
    r"自動応答|自動返信|자동 ?응답|رد تلقائي|תשובה אוטומטית|ตอบกลับอัตโนมัติ",
    re.IGNORECASE,
)
# "I am away" in its many forms.
_ABSENT_RE = re.compile(
    r"\b(?:i am|i'm|i will be|i'll be|i shall be|i have been)\s+(?:currently\s+|now\s+)?"
    r"(?:out of (?:the )?office|away|out|on (?:annual |parental |maternity |sick |paternity )?"
    r"(?:leave|vacation|holiday)|travel?ling|off)\b|"
    r"ich bin\b.{0,60}?(?:nicht im büro|abwesend|im urlaub|au(?:ß|ss)er haus|nicht erreichbar|"
    r"nicht am arbeitsplatz)|"
    r"je (?:suis|serai)\b.{0,40}?(?:absente?|en cong[ée]s?|en vacances|hors du bureau|en "
    r"d[ée]placement)|"
    r"(?:estoy|estar[ée])\b.{0,40}?(?:fuera de la oficina|de vacaciones|ausente|fuera)|"
    r"(?:sono|sar[òo])\b.{0,40}?(?:fuori (?:sede|ufficio)|in ferie|assente)|"
    r"(?:estou|estarei)\b.{0,40}?(?:fora do escrit[oó]rio|de f[ée]rias|ausente|fora)|"
    r"ik ben\b.{0,40}?(?:afwezig|niet aanwezig|met vakantie|niet op kantoor|op vakantie)|"
    r"jag är\b.{0,40}?(?:ledig|frånvarande|på semester|inte på kontoret|borta)|"
    r"jeg er\b.{0,40}?(?:på ferie|fraværende|ikke på kontoret|ude af kontoret|borte|på reise)|"
    r"olen\b.{0,40}?(?:lomalla|poissa|matkoilla|työmatkalla)|"
    r"jestem\b.{0,40}?(?:na urlopie|poza biurem|nieobecn[ya])|"
    r"jsem\b.{0,40}?(?:na dovolen[ée]|mimo kancel[áa][řr]|nep[řr][íi]tomn[ýá])|"
    r"(?:я\s+)?(?:нахожусь\s+)?(?:в отпуске|отсутствую|вне офиса|в командировке)|"
    r"буду отсутствовать|у відпустці|відсутн(?:ій|я)|поза офісом|у відрядженні|"
    r"είμαι\b.{0,30}?(?:εκτός γραφείου|σε άδεια|σε διακοπές)|"
    r"ofis d[ıi][şs][ıi]nday[ıi]m|izindeyim|tatildeyim|"
    r"不在办公室|不在辦公室|休假|出差|外出|不在にしております|不在のため|休暇を|出張中|"
    r"부재중|부재 중|휴가 중|출장 중|خارج المكتب|في إجازة|מחוץ למשרד|בחופשה|"
    r"कार्यालय से बाहर|छुट्टी पर|ไม่อยู่ที่สำนักงาน|ลาพักร้อน|"
    r"t[ôo]i\b.{0,20}?(?:v[ắa]ng m[ặa]t|ngh[ỉi] ph[ée]p|[đd]i c[ôo]ng t[áa]c|"
    r"kh[ôo]ng c[óo] m[ặa]t)|"
    r"saya\b.{0,20}?(?:cuti|di luar kantor|tidak berada di kantor|tidak di kantor)",
    re.IGNORECASE,
)
# The second hallmark of an out-of-office: someone else for urgent matters, limited access
# to e-mail, an answer on return.
_HALLMARK_RE = re.compile(
    r"(?:inbox|mailbox|e-?mail|mails?) (?:is|are|will) not (?:be )?(?:monitored|checked|read|"
    r"forwarded)|please (?:write|send|contact|e-?mail|reach out|get in touch) (?:to|with) "
    r"\S+@|(?:urgent|immediate|pressing) (?:matters|assistance|issues|inquiries|enquiries|requests|"
    r"questions)|if (?:it is|it's|this is) urgent|in (?:case of )?(?:an )?(?:urgent|emergenc)|"
    r"(?:limited|no|without) (?:access to )?(?:my )?e-?mail(?: access)?|"
    r"(?:respond|reply|answer|get back to you|return your (?:e-?mail|message)).{0,40}"
    r"(?:when|upon|as soon as|after) (?:i|my) (?:return|am back|get back)|"
    r"in dringenden f[äa]llen|dringende(?:n)? anfragen|ihre (?:e-?mail|nachricht) wird nicht "
    r"weitergeleitet|nach meiner r[üu]ckkehr|en cas d'urgence|pour toute urgence|"
    r"[àa] mon retour|en caso de urgencia|para asuntos urgentes|a mi regreso|per urgenze|"
    r"al mio rientro|em caso de urg[êe]ncia|no meu regresso|in dringende gevallen|"
    r"voor dringende zaken|na mijn terugkomst|(?:i|vid) br[åa]dskande [äa]renden|"
    r"i hastende tilf[æa]lde|i hastesaker|kiireellisiss[äa] asioissa|w pilnych sprawach|"
    r"v nal[ée]hav[ýy]ch p[řr][íi]padech|в срочных случаях|по срочным вопросам|"
    r"з термінових питань|у термінових випадках|για επείγοντα|acil durumlarda|"
    r"如有急事|紧急事务|緊急の|急ぎの|급한 용무|للأمور العاجلة|לעניינים דחופים|तत्काल|"
    r"หากมีเรื่องด่วน|tr[ưu][ờo]ng h[ợo]p kh[ẩa]n c[ấa]p|(?:hal|keperluan) mendesak",
    re.IGNORECASE,
)

# Read receipts that are not RFC 3798 reports: Outlook's "Read:" with its sentence.
_READ_SUBJECT_RE = re.compile(
    r"^\W*(?:read|not read|gelesen|ungelesen|lu|non lu|le[íi]do|letto|gelezen|l[äa]st|"
    r"p[řr]e[čc]teno|odczytano|прочитано|已读|已讀|開封済み|읽음)\s*[:：]", re.IGNORECASE)
_READ_BODY_RE = re.compile(
    r"(?:your message|ihre nachricht|votre message|su mensaje|il tuo messaggio)\b.{0,200}?"
    r"\b(?:was read|was deleted without being read|wurde .{0,40}gelesen|a été lu|"
    r"fue le[íi]do|è stato letto)", re.IGNORECASE | re.DOTALL)

_CHALLENGE_RE = re.compile(
    r"(?:add(?:ed)?|adding you|put you) (?:to|on) (?:my|the|our) (?:allowed|approved|white|"
    r"safe|trusted|accepted|verified) ?(?:senders?'? )?list|white-?list|allow-?list|"
    r"verify (?:that )?you(?:'re| are) (?:a )?(?:human|real person|not a (?:robot|spammer))|"
    r"confirm (?:that )?you(?:'re| are) (?:a )?(?:human|real (?:person|sender))|"
    r"(?:your|the) (?:message|e-?mail) (?:is|has been) (?:being )?held (?:pending|until|for "
    r"(?:verification|confirmation))|sender verification|challenge[- ]response|spam ?arrest|"
    r"boxbe|mailinblack|(?:one[- ]time|single) (?:sender )?verification|"
    r"prove (?:that )?you(?:'re| are) (?:a )?(?:human|person)|"
    r"absender(?:bestätigung|verifizierung)|bestätigen sie, dass sie ein mensch sind|"
    r"confirmez que vous (?:êtes|etes) (?:un )?humain|liste blanche",
    re.IGNORECASE,
)

# Every challenge phrase holds one of these: a cheap test before the expression.
_CHALLENGE_KEYS = ("list", "verif", "human", "person", "real sender", "held", "challenge",
                   "spam", "boxbe", "mailinblack", "absender", "mensch", "humain",
                   "liste blanche")
_NOTIFICATION_SUBJECT_RE = re.compile(
    r"\[auto[- ]?generated\]|\bauto[- ]?generated\b|^\W*(?:request|ticket|case) (?:received|"
    r"created|opened|#)|\[(?:ticket|case|request|support)\s*#?\s*[\w-]+\]|"
    r"^\W*(?:we(?:'ve| have) received|thank you for contacting|thanks for contacting)|"
    r"(?:ticket|case|request) (?:#|no\.?|number|id)\s*:?\s*[\w-]*\d",
    re.IGNORECASE,
)
_NOTIFICATION_BODY_RE = re.compile(
    r"\[auto[- ]?generated\]|(?:this|it) is an? (?:automated|auto-?generated|automatic) "
    r"(?:message|notification|e-?mail|acknowledge?ment)|auto[- ]?generated (?:message|e-?mail|"
    r"notification)|(?:please )?do not (?:reply|respond) (?:directly )?to this "
    r"(?:e-?mail|message|notification)|(?:ticket|case|request|reference) (?:#|no\.?|number|id)"
    r"\s*:?\s*[\w-]*\d[\w-]*.{0,80}(?:received|created|opened|logged|assigned)|"
    r"(?:received|created|opened|logged)\b.{0,60}(?:ticket|case|request) (?:#|no\.?|number|id)|"
    r"we (?:have|'ve) received your (?:request|message|e-?mail|enquiry|inquiry)\b.{0,120}"
    r"(?:ticket|case|within \d+|business (?:hours|days)|as soon as possible|shortly)",
    re.IGNORECASE | re.DOTALL,
)

_BULK_RE = re.compile(
    r"view (?:this (?:e-?mail|message) )?in (?:your |a )?(?:web )?browser|you (?:are )?"
    r"receiv(?:e|ed|ing) this (?:e-?mail|message|newsletter) because|(?:manage|update) (?:your )?"
    r"(?:e-?mail )?(?:preferences|subscription)|(?:click|tap) here to unsubscribe|"
    r"to (?:stop receiving|unsubscribe)(?: from)? (?:these|this|our|future)|all rights reserved|"
    r"©|\bnewsletter\b|(?m:^[ \t]*unsubscribe[ \t]*(?:\||$))|shop now|"
    r"im browser (?:ansehen|anzeigen)|newsletter abbestellen|"
    r"se d[ée]sinscrire|darse de baja",
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


def newsletter(mail: Mail, text: str) -> str | None:
    """A bulk mailing without ``List-*`` fields: not in a thread, with a bulk footer."""
    if mail.msg.get("In-Reply-To") is not None or mail.msg.get("References") is not None:
        return None
    if bare_subject(mail.subject) != mail.subject:
        return None
    found = {m.group(0).lower() for m in _BULK_RE.finditer(text[:50_000])}
    if len(found) >= 2 or (found and mail.header("Precedence").lower() == "bulk"):
        return f"newsletter without List-* fields ({sorted(found)[0]!r})"
    return None


def read_receipt(mail: Mail, text: str) -> AutoMail | None:
    """An RFC 3798 disposition notification, or a "Read:" receipt that says so."""
    report = str(mail.msg.get_param("report-type", header="content-type") or "").lower()
    if report == "disposition-notification" or mail.attaches(
            "message/disposition-notification", "message/global-disposition-notification"):
        return AutoMail("mdn", "read receipt (RFC 3798 disposition-notification)")
    if _READ_SUBJECT_RE.search(mail.subject) and _READ_BODY_RE.search(text[:5_000]):
        return AutoMail("mdn", f"read receipt {mail.subject[:60]!r}")
    return None


def challenge(mail: Mail, text: str) -> AutoMail | None:
    """Challenge-response sender verification ("click to be added to my allowed list")."""
    words = f"{mail.subject}\n{text[:MAX_OPENING_CHARS]}".lower()
    if not any(key in words for key in _CHALLENGE_KEYS):
        return None
    match = _CHALLENGE_RE.search(words)
    if match is None:
        return None
    return AutoMail("challenge_response", f"challenge-response ({match.group(0)[:60]!r})")


def auto_headers(mail: Mail) -> str | None:
    """The RFC 3834 (or vendor) header that marks ``mail`` as automatic, if any."""
    submitted = mail.header("Auto-Submitted").lower()
    if submitted and submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {submitted.split(';')[0].strip()}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Response"):
        if mail.header(name):
            return f"{name} header"
    precedence = mail.header("Precedence").lower()
    if precedence in ("auto_reply", "bulk", "junk"):
        return f"Precedence: {precedence}"
    return None


def auto_reply(mail: Mail, text: str) -> AutoMail | None:
    """What kind of automatic reply ``mail`` is, if it is one (``text``: its new text)."""
    head = auto_headers(mail)
    words = text[:5_000]
    subject = _OOO_SUBJECT_RE.search(mail.subject)
    absent = _ABSENT_RE.search(words)
    second = _MACHINE_RE.search(f"{mail.subject}\n{words}") or _HALLMARK_RE.search(words)
    notice = (_NOTIFICATION_SUBJECT_RE.search(mail.subject)
              or _NOTIFICATION_BODY_RE.search(words))
    away = subject is not None or (absent is not None and second is not None)
    if head is not None:
        generated = notice is not None or head in ("Auto-Submitted: auto-generated",
                                                   "Precedence: bulk")
        return AutoMail("auto_generated" if generated and not away else "out_of_office", head)
    if subject is not None:
        return AutoMail("out_of_office", f"out-of-office subject {mail.subject[:60]!r}")
    if absent is not None and second is not None:
        return AutoMail("out_of_office", f"out-of-office text {absent.group(0)[:40]!r} + "
                        f"{second.group(0)[:40]!r}")
    if notice is not None:
        return AutoMail("auto_generated", f"automatic notification {notice.group(0)[:60]!r}")
    opening = _DECLARED_RE.search(words[:500])
    if opening is not None:
        return AutoMail("out_of_office", f"automatic reply text {opening.group(0)[:40]!r}")
    return None
