"""Automatic mail (K2): out-of-office replies, with and without RFC 3834 headers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from sequencer.core.classify import Kind, classify
from tests.core.classify.mails import NOW, OWN, mail, read, reply_with

DATA = Path(__file__).resolve().parents[2] / "data"

AUTO_REPLIES = {
    "gmail_vacation.eml": date(2025, 12, 1),
    "outlook_automatic_reply.eml": date(2025, 12, 1),
    "outlook_no_rfc3834.eml": date(2025, 12, 1),
    "exchange_out_of_office.eml": date(2026, 1, 5),
    "german_abwesenheitsnotiz.eml": date(2025, 12, 15),
    "french_reponse_automatique.eml": date(2025, 12, 3),
    "precedence_auto_reply.eml": date(2026, 1, 9),
    "x_autoreply_no_date.eml": None,
}


@pytest.mark.parametrize(("name", "back"), sorted(AUTO_REPLIES.items()))
def test_out_of_office_sample_is_an_auto_reply_with_its_return_date(
        name: str, back: date | None) -> None:
    verdict = classify((DATA / "autoreplies" / name).read_bytes(), own_addresses=OWN, now=NOW)
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "out_of_office")
    assert verdict.return_date == back


def test_every_auto_reply_sample_is_checked() -> None:
    assert {p.name for p in (DATA / "autoreplies").glob("*.eml")} == set(AUTO_REPLIES)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
        ("X-Autorespond: yes", "X-Autorespond header"),
        ("Precedence: junk", "Precedence: junk"),
        ("Subject: Abwesenheitsnotiz", "out-of-office subject 'Abwesenheitsnotiz'"),
    ],
)
def test_auto_reply_markers(headers: str, reason: str) -> None:
    verdict = read(mail(f"From: sam@prospect.example\n{headers}", "Away.\n"))
    assert (verdict.kind, verdict.reason) == (Kind.AUTO_REPLY, reason)


@pytest.mark.parametrize(
    "subject", ["Re: Vacation plans", "Re: Out of office next week?", "Re: Away from desk"])
def test_reply_whose_subject_mentions_absence_is_still_a_reply(subject: str) -> None:
    assert reply_with("Let's meet after that.", subject).kind is Kind.REPLY


def test_auto_submitted_no_is_not_an_auto_reply() -> None:
    verdict = read(mail("From: sam@prospect.example\nAuto-Submitted: no", "Sure.\n"))
    assert verdict.kind is Kind.REPLY


OOO_SUBJECTS = {
    "en": "Automatic reply: Thanks for stopping by", "de": "Abwesend: Thanks for stopping by",
    "fr": "Réponse automatique : Thanks for stopping by", "es": "Fuera de la oficina: Thanks",
    "it": "Risposta automatica: Thanks", "pt": "Resposta automática: Thanks",
    "nl": "Automatisch antwoord: Thanks", "sv": "Autosvar: Thanks", "da": "Automatisk svar: Thanks",
    "no": "Fravær: Thanks", "fi": "Automaattinen vastaus: Thanks",
    "pl": "Odpowiedź automatyczna: Thanks", "cs": "Automatická odpověď: Thanks",
    "sk": "Automatická odpoveď: Thanks", "hu": "Automatikus válasz: Thanks",
    "ro": "Răspuns automat: Thanks", "ru": "Автоответ: Thanks", "uk": "Автовідповідь: Thanks",
    "el": "Αυτόματη απάντηση: Thanks", "tr": "Otomatik yanıt: Thanks", "zh": "自动回复: Thanks",
    "zh-tw": "自動回覆: Thanks", "ja": "自動応答: Thanks", "ko": "자동 응답: Thanks",
    "ar": "رد تلقائي: Thanks", "he": "תשובה אוטומטית: Thanks", "hi": "स्वचालित उत्तर: Thanks",
    "th": "ตอบกลับอัตโนมัติ: Thanks", "vi": "Trả lời tự động: Thanks",
    "id": "Balasan otomatis: Thanks", "ms": "Balasan automatik: Thanks",
    "lotus-notes": "AUTO: Sam Lee is out of the office (returning 01.12.2025)",
    "exchange-2003": "Out of Office AutoReply: Thanks",
}


@pytest.mark.parametrize(("language", "subject"), sorted(OOO_SUBJECTS.items()))
def test_out_of_office_subject_without_rfc3834_headers_is_an_auto_reply(
        language: str, subject: str) -> None:
    verdict = read(mail(f"From: Sam <sam@prospect.example>\nSubject: {subject}",
                        "Danke, ich melde mich.\n"))
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "out_of_office"), language


OOO_BODIES = {
    "en": "I am currently out of the office with limited access to email. For urgent matters "
          "please contact Jo.",
    "de": "Ich bin bis zum 1.12. nicht im Büro. In dringenden Fällen wenden Sie sich an Jo.",
    "fr": "Je suis absente du bureau. En cas d'urgence, contactez Jo.",
    "es": "Estoy fuera de la oficina. En caso de urgencia, contacte con Jo.",
    "it": "Sono fuori ufficio. Per urgenze contattare Jo.",
    "pt": "Estou de férias. Em caso de urgência, contacte o Jo.",
    "nl": "Ik ben afwezig. In dringende gevallen kunt u contact opnemen met Jo.",
    "sv": "Jag är på semester. I brådskande ärenden, kontakta Jo.",
    "da": "Jeg er på ferie. I hastende tilfælde kontakt Jo.",
    "no": "Jeg er på ferie. I hastesaker, kontakt Jo.",
    "fi": "Olen lomalla. Kiireellisissä asioissa ota yhteyttä Jo.",
    "pl": "Jestem na urlopie. W pilnych sprawach proszę kontaktować się z Jo.",
    "cs": "Jsem na dovolené. V naléhavých případech kontaktujte Jo.",
    "ru": "Я в отпуске. В срочных случаях обращайтесь к Jo.",
    "uk": "Я у відпустці. З термінових питань звертайтеся до Jo.",
    "el": "Είμαι εκτός γραφείου. Για επείγοντα επικοινωνήστε με τον Jo.",
    "tr": "Şu anda izindeyim. Acil durumlarda Jo ile iletişime geçin.",
    "zh": "我目前休假。如有急事请联系 Jo。",
    "ja": "ただいま不在にしております。急ぎの場合は Jo までご連絡ください。",
    "ko": "현재 휴가 중입니다. 급한 용무는 Jo에게 연락 주세요.",
    "ar": "أنا خارج المكتب. للأمور العاجلة يرجى الاتصال بـ Jo.",
    "he": "אני מחוץ למשרד. לעניינים דחופים פנו אל Jo.",
    "hi": "मैं कार्यालय से बाहर हूँ। तत्काल मामलों के लिए Jo से संपर्क करें।",
    "th": "ฉันไม่อยู่ที่สำนักงาน หากมีเรื่องด่วนกรุณาติดต่อ Jo",
    "vi": "Tôi đang nghỉ phép. Trường hợp khẩn cấp xin liên hệ Jo.",
    "id": "Saya sedang cuti. Untuk hal mendesak silakan hubungi Jo.",
}


@pytest.mark.parametrize(("language", "text"), sorted(OOO_BODIES.items()))
def test_out_of_office_body_without_headers_or_subject_is_an_auto_reply(
        language: str, text: str) -> None:
    verdict = reply_with(text)
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "out_of_office"), language


def test_there_are_out_of_office_samples_in_at_least_twenty_languages() -> None:
    assert len(OOO_BODIES) >= 20 and len(OOO_SUBJECTS) >= 20


@pytest.mark.parametrize(
    "text",
    ["I'm out of the office until Monday, let's talk then.",
     "Ich bin nächste Woche im Urlaub, können wir danach telefonieren?",
     "Thanks! I was on vacation last week, sorry for the late answer. Yes, send the quote.",
     "Your automatic reply system is great, how much does it cost?"],
)
def test_a_person_who_mentions_an_absence_is_still_a_reply(text: str) -> None:
    assert reply_with(text).kind is Kind.REPLY


MDN = """From: Sam <sam@prospect.example>
To: dana@example.com
Subject: Read: Thanks for stopping by
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="B"

--B
Content-Type: text/plain

Your message was read on Thursday, 20 November 2025 12:00.

--B
Content-Type: message/disposition-notification

Reporting-UA: prospect.example; Microsoft Outlook 16.0
Final-Recipient: rfc822;sam@prospect.example
Original-Message-ID: <seq-1-step-1@example.com>
Disposition: manual-action/MDN-sent-manually; displayed

--B--
"""


def test_an_rfc3798_read_receipt_is_an_mdn_not_a_reply() -> None:
    verdict = read(MDN.encode())
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "mdn")


def test_an_outlook_read_receipt_without_a_report_is_an_mdn() -> None:
    raw = mail("From: Sam <sam@prospect.example>\nSubject: Read: Thanks for stopping by",
               "Your message\n\n  To: Sam\n  Subject: Thanks for stopping by\n\n"
               "was read on 20/11/2025 12:00.\n")
    assert read(raw).subkind == "mdn"


@pytest.mark.parametrize(
    "text",
    ["I use a challenge-response system. Please click the link below to be added to my "
     "allowed list: https://verify.example/x",
     "Hi, your message to sam@prospect.example is being held pending verification. To verify "
     "that you are a human, click https://boxbe.example/approve",
     "This address is protected by SpamArrest. Please verify you are a real person."],
)
def test_challenge_response_is_an_auto_reply_never_a_reply_or_a_bounce(text: str) -> None:
    verdict = read(mail("From: Sam <sam@prospect.example>\nSubject: Re: Thanks for stopping by",
                        text))
    assert (verdict.kind, verdict.subkind, verdict.bounce) == (
        Kind.AUTO_REPLY, "challenge_response", None)


@pytest.mark.parametrize(
    ("subject", "text"),
    [("[Ticket #48213] Re: Thanks for stopping by",
      "Thank you for contacting Prospect Support. We have received your request and a member "
      "of our team will respond within 24 hours. Ticket #48213."),
     ("Re: Thanks for stopping by",
      "This is an automated message. Your request (#48213) has been received and logged."),
     ("[AUTO GENERATED] Your message was received", "Please do not reply to this email."),
     ("Request received: Thanks for stopping by", "We've received your email.")],
)
def test_helpdesk_acknowledgements_and_notifications_are_auto_generated(
        subject: str, text: str) -> None:
    verdict = read(mail(f"From: Support <support@prospect.example>\nSubject: {subject}", text))
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "auto_generated")


def test_auto_generated_header_without_out_of_office_words_is_auto_generated() -> None:
    verdict = read(mail("From: robot@prospect.example\nAuto-Submitted: auto-generated\n"
                        "Subject: Your order has shipped", "It ships today.\n"))
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "auto_generated")


def test_apple_mail_one_tap_unsubscribe_with_auto_submitted_is_an_unsubscribe() -> None:
    raw = mail("From: Sam <sam@prospect.example>\nTo: dana@example.com\nSubject: unsubscribe\n"
               "Auto-Submitted: auto-generated", "")
    verdict = read(raw)
    assert verdict.kind is Kind.UNSUBSCRIBE
    assert "Auto-Submitted" in verdict.reason


def test_an_out_of_office_keeps_its_return_date_from_the_body() -> None:
    verdict = reply_with("I am out of the office until 1 December with no access to email.")
    assert verdict.return_date == date(2025, 12, 1)
