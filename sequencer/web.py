"""`sequencer serve`: the unsubscribe endpoint behind ``unsubscribe_url`` (Starlette + uvicorn).

- ``POST`` with the RFC 8058 body ``List-Unsubscribe=One-Click`` (form-encoded, or
  multipart as RFC 8058 prefers) halts and suppresses; a repeat is answered as done.
- ``GET`` (and ``HEAD``) only shows a page with a button, a form that POSTs the same body to
  the same URL: link scanners and previewers fetch URLs, and must never unsubscribe anyone.
- A token we did not mint for that message (forged, altered, swapped) gets 404 and changes
  nothing; a POST without the one-click body gets 400; a body over 4 KiB gets 413.

The page sends no referrer (the URL carries the token), is never cached, and loads nothing.
The access log is off: request lines would put tokens in the log.
"""

from __future__ import annotations

import html
import logging
import signal
from collections.abc import AsyncGenerator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from sequencer.core.unsubscribe import ONE_CLICK, LinkPattern, Tokens, link_pattern
from sequencer.errors import SequencerError
from sequencer.usecases.sending import sender_name
from sequencer.usecases.unsubscribing import Link, Outcome, done, resolve, unsubscribe
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

MAX_BODY = 4096
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
}


class _TooLarge(Exception):
    pass


def make_app(app: Workspace, tokens: Tokens, template: str) -> Starlette:
    """The ASGI application answering the links made from ``template``."""
    pattern = link_pattern(template)

    async def endpoint(request: Request) -> Response:
        return await _handle(app, tokens, pattern, request)

    return Starlette(routes=[
        Route("/{path:path}", endpoint, methods=["GET", "HEAD", "POST"]),
    ])


async def _handle(app: Workspace, tokens: Tokens, pattern: LinkPattern,
                  request: Request) -> Response:
    token = pattern.token(request.url.path, request.url.query)
    if token is None:
        return _page(404, "Not found", "There is nothing here.")
    try:
        link = await run_in_threadpool(resolve, app, tokens, token)
        if link is None:
            return _invalid()
        if request.method != "POST":
            if await run_in_threadpool(done, app, link):
                return _unsubscribed(app, link)
            return _confirm(app, link)
        try:
            form = await _form(request)
        except _TooLarge:
            return _page(413, "Too large", "That request was too large.")
        if form is None or form.get("List-Unsubscribe") != "One-Click":
            return _page(400, "Bad request",
                         f"An unsubscribe request carries {html.escape(ONE_CLICK)}.")
        via = "unsubscribe page" if form.get("via") == "page" else "one-click POST"
        outcome = await run_in_threadpool(unsubscribe, app, link, via)
    except SequencerError as err:  # the database is away: the sender may retry later
        logger.warning("unsubscribe link not handled: %s", err)
        return _page(503, "Try again later", "We could not record that just now. "
                     "Please try again in a few minutes.")
    if outcome is Outcome.ALREADY:
        logger.info("unsubscribe link for %s used again: nothing to change",
                    link.target.email)
    return _unsubscribed(app, link)


async def _form(request: Request) -> FormData | None:
    """The request's form (URL-encoded or multipart), read to at most ``MAX_BODY`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _TooLarge
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()

    async def once() -> AsyncGenerator[bytes, None]:
        yield bytes(body)

    try:
        if kind == "application/x-www-form-urlencoded":
            return await FormParser(request.headers, once(), max_fields=8,
                                    max_part_size=MAX_BODY).parse()
        if kind == "multipart/form-data":
            return await MultiPartParser(request.headers, once(), max_files=0, max_fields=8,
                                         max_part_size=MAX_BODY).parse()
    except MultiPartException:
        return None
    return None


def _who(app: Workspace, link: Link) -> str:
    mailbox = app.settings.mailboxes.get(link.target.mailbox)
    return "us" if mailbox is None else sender_name(mailbox.sender)


def _confirm(app: Workspace, link: Link) -> HTMLResponse:
    who = html.escape(_who(app, link))
    body = (f"<p>Stop receiving emails from {who}?</p>"
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<input type="hidden" name="via" value="page">'
            '<button type="submit">Unsubscribe</button></form>')
    return _page(200, "Unsubscribe", body)


def _unsubscribed(app: Workspace, link: Link) -> HTMLResponse:
    who = html.escape(_who(app, link))
    return _page(200, "Unsubscribed", f"<p>You are unsubscribed. {who} will not email you "
                 "again.</p>")


def _invalid() -> HTMLResponse:
    return _page(404, "Link not valid", "<p>This unsubscribe link is not valid. You can "
                 "also reply to the email with the word <b>stop</b>.</p>")


def _page(status: int, title: str, body: str) -> HTMLResponse:
    text = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"robots\" content=\"noindex\">"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:32em;margin:4em auto;"
            "padding:0 1em}button{font-size:1.1em;padding:.5em 1.2em}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(text, status_code=status, headers=_SECURITY_HEADERS)


def serve(app: Workspace, tokens: Tokens, template: str, host: str, port: int) -> None:
    """Run the endpoint until SIGINT/SIGTERM, then return once open requests are answered.

    uvicorn catches the signal, shuts down gracefully, restores the handlers it found and
    raises the signal again; the handlers found are no-ops, so the process exits 0.
    """
    import uvicorn

    config = uvicorn.Config(make_app(app, tokens, template), host=host, port=port,
                            log_config=None, access_log=False, server_header=False,
                            lifespan="off", timeout_graceful_shutdown=5)
    logger.info("serving unsubscribe links on http://%s:%d (%s)", host, port, template)
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _stopped) for sig in handled}
    try:
        uvicorn.Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped(signum: int, _frame: object) -> None:
    logger.info("unsubscribe endpoint stopped (signal %d)", signum)
