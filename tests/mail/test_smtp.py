"""The SMTP sender against a real aiosmtpd server: every test asserts on the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sequencer.errors import (
    AuthenticationError,
    DeliveryAborted,
    OutcomeUnknownError,
    PermanentDeliveryError,
    TLSRequiredError,
    TransientDeliveryError,
)
from sequencer.mail.smtp import Accepted, SmtpAccount, SmtpSender
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.smtp import SmtpServer, TlsCert

SENDER = "dana@example.com"
PROSPECT = "pat@prospect.test"
CLIENT_NAME = "client.test"


def message(subject: str = "Thanks for stopping by", to: str = PROSPECT) -> bytes:
    return (
        f"From: Dana Reyes <{SENDER}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{abs(hash(subject))}@example.com>\r\n"
        "\r\n"
        "Hi Pat,\r\n"
        ".a line that starts with a dot survives dot-stuffing\r\n"
        "thanks for stopping by.\r\n"
    ).encode()


def account(host: str, port: int, **overrides: object) -> SmtpAccount:
    settings: dict[str, object] = {
        "tls": "none",
        "timeout_s": 5.0,
        "local_hostname": CLIENT_NAME,
    }
    settings.update(overrides)
    return SmtpAccount(host, port, **settings)  # type: ignore[arg-type]


def verbs(server: SmtpServer) -> list[str]:
    return [verb for _, verb in server.commands]


# -- the plain path --------------------------------------------------------------------


async def test_a_send_delivers_the_exact_bytes_once_to_the_envelope_recipient_only(
    smtp_server: SmtpServer,
) -> None:
    data = message(to="someone-else@example.org")
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        accepted = await sender.send(SENDER, PROSPECT, data)

    assert accepted == Accepted(250, "2.0.0 Message accepted for delivery")
    [delivery] = smtp_server.deliveries
    assert delivery.mail_from == SENDER
    assert delivery.rcpt_tos == [PROSPECT]
    assert delivery.raw == data
    assert delivery.message["Subject"] == "Thanks for stopping by"


async def test_one_connection_is_reused_for_three_sends(smtp_server: SmtpServer) -> None:
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        for n in range(3):
            await sender.send(SENDER, PROSPECT, message(f"step {n}"))

    assert [d.message["Subject"] for d in smtp_server.deliveries] == ["step 0", "step 1", "step 2"]
    assert smtp_server.connection_count == 1
    assert verbs(smtp_server).count("EHLO") == 1


async def test_concurrent_sends_on_one_sender_take_turns_on_its_one_connection(
    smtp_server: SmtpServer,
) -> None:
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        await asyncio.gather(*(sender.send(SENDER, PROSPECT, message(f"m{n}")) for n in range(4)))

    assert sorted(d.message["Subject"] for d in smtp_server.deliveries) == ["m0", "m1", "m2", "m3"]
    assert smtp_server.connection_count == 1


async def test_closing_the_sender_says_quit(smtp_server: SmtpServer) -> None:
    sender = SmtpSender(account(smtp_server.host, smtp_server.port))
    await sender.send(SENDER, PROSPECT, message())
    await sender.close()

    await smtp_server.wait_for_closed_async(1)
    assert verbs(smtp_server)[-1] == "QUIT"


# -- S1, S2: the server refuses --------------------------------------------------------


async def test_550_5_1_1_at_rcpt_is_a_permanent_recipient_rejection_and_nothing_is_delivered(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.reject_rcpt(PROSPECT, "550 5.1.1 No such user")
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        with pytest.raises(PermanentDeliveryError) as caught:
            await sender.send(SENDER, PROSPECT, message())

    assert caught.value.code == 550
    assert caught.value.recipient == PROSPECT
    assert caught.value.recipient_rejected
    assert "DATA" not in verbs(smtp_server)
    assert smtp_server.deliveries == []


async def test_a_policy_rejection_at_rcpt_is_permanent_but_not_a_bad_recipient(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.reject_rcpt(PROSPECT, "550 5.7.1 Message refused by policy")
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        with pytest.raises(PermanentDeliveryError) as caught:
            await sender.send(SENDER, PROSPECT, message())

    assert not caught.value.recipient_rejected
    assert smtp_server.deliveries == []


@pytest.mark.parametrize(
    ("reply", "stage"),
    [
        ("451 4.7.1 Greylisted, try again later", "RCPT"),
        ("452 4.2.2 Mailbox full", "RCPT"),
        ("451 4.3.0 Temporary failure", "MAIL"),
        ("451 4.3.0 Queue write failed", "DATA"),
    ],
)
async def test_a_4xx_reply_is_transient_and_the_send_after_it_clears_delivers_once(
    smtp_server: SmtpServer, reply: str, stage: str
) -> None:
    smtp_server.fail_next(1, reply, stage)  # type: ignore[arg-type]
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        with pytest.raises(TransientDeliveryError) as caught:
            await sender.send(SENDER, PROSPECT, message())
        assert caught.value.code == int(reply[:3])
        assert smtp_server.deliveries == []

        await sender.send(SENDER, PROSPECT, message())

    assert len(smtp_server.deliveries) == 1


# -- S3: the link fails before MAIL ----------------------------------------------------


async def test_a_421_greeting_is_retried_on_a_new_connection_and_delivers_once(
    smtp_server: SmtpServer, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy(smtp_server.host, smtp_server.port)
    proxy.reply_421()
    async with SmtpSender(account(proxy.host, proxy.port)) as sender:
        await sender.send(SENDER, PROSPECT, message())

    assert proxy.accepted == 2
    assert len(smtp_server.deliveries) == 1


async def test_a_connection_dropped_at_accept_is_retried_and_delivers_once(
    smtp_server: SmtpServer, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy(smtp_server.host, smtp_server.port)
    proxy.drop_next_connection()
    async with SmtpSender(account(proxy.host, proxy.port)) as sender:
        await sender.send(SENDER, PROSPECT, message())

    assert proxy.accepted == 2
    assert len(smtp_server.deliveries) == 1


async def test_a_reused_connection_the_peer_closed_unnoticed_is_replaced_at_mail(
    smtp_server: SmtpServer, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy(smtp_server.host, smtp_server.port)
    async with SmtpSender(account(proxy.host, proxy.port)) as sender:
        await sender.send(SENDER, PROSPECT, message("first"))
        proxy.close_all()
        # No await in between: the client's loop has not seen the FIN, so the sender
        # still believes in the connection and meets the EOF at MAIL.
        await sender.send(SENDER, PROSPECT, message("second"))

    assert [d.message["Subject"] for d in smtp_server.deliveries] == ["first", "second"]
    assert smtp_server.connection_count == 2


async def test_a_421_reply_to_mail_on_a_reused_connection_reconnects_and_delivers_once(
    smtp_server: SmtpServer,
) -> None:
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        await sender.send(SENDER, PROSPECT, message("first"))
        smtp_server.fail_next(1, "421 4.3.2 Service shutting down", "MAIL")
        await sender.send(SENDER, PROSPECT, message("second"))

    assert [d.message["Subject"] for d in smtp_server.deliveries] == ["first", "second"]
    assert smtp_server.connection_count == 2


async def test_a_connection_lost_while_waiting_for_the_reply_to_mail_is_retried_once(
    smtp_server: SmtpServer, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy(smtp_server.host, smtp_server.port)
    proxy.cut_after(len(f"EHLO {CLIENT_NAME}\r\nMAIL FROM:<{SENDER}>\r\n"))
    async with SmtpSender(account(proxy.host, proxy.port)) as sender:
        await sender.send(SENDER, PROSPECT, message())

    assert proxy.accepted == 2
    assert [v for v in verbs(smtp_server) if v == "MAIL"] == ["MAIL", "MAIL"]
    assert len(smtp_server.deliveries) == 1


async def test_the_link_failing_twice_before_mail_is_transient_and_delivers_nothing(
    smtp_server: SmtpServer, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy(smtp_server.host, smtp_server.port)
    proxy.refuse_next(2)
    async with SmtpSender(account(proxy.host, proxy.port)) as sender:
        with pytest.raises(TransientDeliveryError):
            await sender.send(SENDER, PROSPECT, message())

    assert proxy.accepted == 2
    assert smtp_server.deliveries == []


# -- S4: credentials -------------------------------------------------------------------


async def test_refused_credentials_raise_authentication_error_with_535_and_send_nothing(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.require_auth("dana", "right-password")
    bad = account(smtp_server.host, smtp_server.port, username="dana", password="hunter2-wrong")
    async with SmtpSender(bad) as sender:
        with pytest.raises(AuthenticationError) as caught:
            await sender.send(SENDER, PROSPECT, message())

    assert caught.value.code == 535
    assert "hunter2-wrong" not in f"{caught.value} {bad!r} {sender!r}"
    assert "MAIL" not in verbs(smtp_server)
    assert smtp_server.deliveries == []


async def test_accepted_credentials_send(smtp_server: SmtpServer) -> None:
    smtp_server.require_auth("dana", "right-password")
    good = account(smtp_server.host, smtp_server.port, username="dana", password="right-password")
    async with SmtpSender(good) as sender:
        await sender.send(SENDER, PROSPECT, message())

    assert "AUTH" in verbs(smtp_server)
    assert len(smtp_server.deliveries) == 1


# -- S5: idle timeout ------------------------------------------------------------------


async def test_a_connection_the_server_closed_when_idle_is_replaced_cleanly(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.idle_timeout(1.0)
    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        await sender.send(SENDER, PROSPECT, message("before the timeout"))
        await smtp_server.wait_for_closed_async(1)  # the server hung up after 1 s idle
        await sender.send(SENDER, PROSPECT, message("after the timeout"))

    subjects = [d.message["Subject"] for d in smtp_server.deliveries]
    assert subjects == ["before the timeout", "after the timeout"]
    assert smtp_server.connection_count == 2


# -- R3, R4: faults in and after DATA --------------------------------------------------


async def test_a_connection_cut_in_the_middle_of_data_is_transient_and_delivers_once_on_retry(
    smtp_server: SmtpServer, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    data = message() + b"padding line\r\n" * 200
    commands = (
        f"EHLO {CLIENT_NAME}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{PROSPECT}>\r\nDATA\r\n"
    ).encode()
    proxy = tcp_proxy(smtp_server.host, smtp_server.port)
    proxy.cut_after(len(commands) + len(data) // 2)
    async with SmtpSender(account(proxy.host, proxy.port)) as sender:
        with pytest.raises(TransientDeliveryError):
            await sender.send(SENDER, PROSPECT, data)
        await smtp_server.wait_for_closed_async(1)
        assert verbs(smtp_server) == ["EHLO", "MAIL", "RCPT", "DATA"]
        assert smtp_server.deliveries == []

        await sender.send(SENDER, PROSPECT, data)

    [delivery] = smtp_server.deliveries
    assert delivery.raw == data


async def test_a_server_that_takes_the_dot_and_never_answers_gives_an_unknown_outcome(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.stall_after_data(30.0)
    async with SmtpSender(account(smtp_server.host, smtp_server.port, timeout_s=0.5)) as sender:
        with pytest.raises(OutcomeUnknownError) as caught:
            await sender.send(SENDER, PROSPECT, message())

    assert not isinstance(caught.value, TransientDeliveryError)
    assert caught.value.recipient == PROSPECT
    assert len(await smtp_server.wait_for_async(1)) == 1


# -- before_data -----------------------------------------------------------------------


async def test_before_data_returning_false_aborts_with_nothing_sent(
    smtp_server: SmtpServer,
) -> None:
    async def halted() -> bool:
        return False

    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        with pytest.raises(DeliveryAborted):
            await sender.send(SENDER, PROSPECT, message(), before_data=halted)

    assert "RCPT" in verbs(smtp_server)
    assert "DATA" not in verbs(smtp_server)
    assert smtp_server.deliveries == []


async def test_before_data_runs_after_rcpt_and_before_data_then_the_send_goes_through(
    smtp_server: SmtpServer,
) -> None:
    seen_at_check: list[list[str]] = []

    async def still_due() -> bool:
        seen_at_check.append(verbs(smtp_server))
        return True

    async with SmtpSender(account(smtp_server.host, smtp_server.port)) as sender:
        await sender.send(SENDER, PROSPECT, message(), before_data=still_due)

    assert seen_at_check == [["EHLO", "MAIL", "RCPT"]]
    assert len(smtp_server.deliveries) == 1


# -- TLS -------------------------------------------------------------------------------


async def test_starttls_required_but_not_offered_fails_before_auth_and_mail(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.require_auth("dana", "right-password")
    wants_tls = account(
        smtp_server.host, smtp_server.port, tls="starttls", username="dana", password="x"
    )
    async with SmtpSender(wants_tls) as sender:
        with pytest.raises(TLSRequiredError):
            await sender.send(SENDER, PROSPECT, message())
    await smtp_server.wait_for_closed_async(1)

    assert verbs(smtp_server) == ["EHLO"]
    assert smtp_server.deliveries == []


async def test_starttls_with_a_trusted_certificate_authenticates_and_delivers(
    smtp_server: SmtpServer, tls_cert: TlsCert
) -> None:
    smtp_server.enable_starttls(tls_cert)
    smtp_server.require_auth("dana", "right-password")
    wants_tls = account(
        smtp_server.host,
        smtp_server.port,
        tls="starttls",
        username="dana",
        password="right-password",
    )
    async with SmtpSender(wants_tls, tls_context=tls_cert.client_context()) as sender:
        await sender.send(SENDER, PROSPECT, message())

    assert verbs(smtp_server)[:5] == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL"]
    assert len(smtp_server.deliveries) == 1


async def test_starttls_with_an_untrusted_certificate_is_refused_before_mail(
    smtp_server: SmtpServer, tls_cert: TlsCert
) -> None:
    smtp_server.enable_starttls(tls_cert)
    async with SmtpSender(account(smtp_server.host, smtp_server.port, tls="starttls")) as sender:
        with pytest.raises(TLSRequiredError):
            await sender.send(SENDER, PROSPECT, message())

    assert "MAIL" not in verbs(smtp_server)
    assert smtp_server.deliveries == []


async def test_implicit_tls_delivers(
    make_smtp_server: Callable[..., SmtpServer], tls_cert: TlsCert
) -> None:
    server = make_smtp_server(implicit_tls=tls_cert)
    async with SmtpSender(
        account(server.host, server.port, tls="ssl"), tls_context=tls_cert.client_context()
    ) as sender:
        await sender.send(SENDER, PROSPECT, message())

    assert len(server.deliveries) == 1
