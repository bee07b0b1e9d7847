"""The `sequencer` command. Each command is a few lines around the library.

Exit codes: 0 success, 1 bad input (file, line and reason on stderr), 2 usage error.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO

import typer

from sequencer import eventlog
from sequencer.core.machine import EnrollmentState
from sequencer.errors import InputError, SequencerError

if TYPE_CHECKING:
    from sequencer.workspace import Workspace

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Email follow-up sequences that stop the moment a prospect replies.",
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional
    typer.Option("--config", "-c", help="settings file (default: $SEQUENCER_CONFIG or "
                 "./sequencer.yaml)", show_default=False),
]
LogFormat = Annotated[str, typer.Option("--log-format", help="human or json")]
LogFile = Annotated[Optional[Path], typer.Option("--log-file", help="also write the log here")]  # noqa: UP045
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]
MetricsPort = Annotated[Optional[int], typer.Option(  # noqa: UP045
    "--metrics-port", min=1, max=65535,
    help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (off unless given)")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _load(config: Path | None, *, skip_broken: bool = False):  # type: ignore[no-untyped-def]
    """The working folder. ``skip_broken`` (the commands that only read or stop
    enrollments): a sequence file that does not load is named in a warning and left out."""
    from sequencer.workspace import Workspace

    try:
        workspace = Workspace.load(config, skip_broken=skip_broken)
    except SequencerError as err:
        raise _fail(str(err)) from err
    for problem in workspace.skipped:
        typer.echo(f"warning: {problem} (skipped)", err=True)
    return workspace


def _check_log_format(fmt: str) -> None:
    if fmt not in ("human", "json"):
        raise typer.BadParameter("use human or json", param_hint="--log-format")


@app.command()
def validate(
    sequences: Annotated[Optional[list[str]], typer.Argument(help="paths or names")] = None,  # noqa: UP045
    config: ConfigOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="warnings are errors")] = False,
) -> None:
    """Check sequences and their templates; exit 1 with file, line and reason on error.

    Warns (file:line: warning: …) about follow-ups that bring nothing new."""
    from sequencer.usecases.checking import validate_sequences

    errors, warnings, checked = validate_sequences(config, sequences or [], strict=strict)
    for line in checked:
        typer.echo(line)
    for warning in warnings:
        typer.echo(warning, err=True)
    for err in errors:
        typer.echo(f"error: {err}", err=True)
    if errors:
        raise typer.Exit(1)


@app.command()
def enroll(
    sequence: Annotated[str, typer.Argument(help="sequence path or name")],
    csv: Annotated[Path, typer.Argument(help="prospects CSV")],
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    move: Annotated[bool, typer.Option(
        "--move", help="a prospect active in another sequence ends it (stopped, reason "
        "moved) and starts this one")] = False,
) -> None:
    """Import prospects from CSV into a sequence (rejected rows listed with their line).

    A prospect active in another sequence is rejected (max_active_sequences, default 1)
    unless --move."""
    from sequencer.usecases.importing import run_enroll

    application = _load(config)
    try:
        summary = run_enroll(application, sequence, csv, progress=not quiet, move=move)
    except InputError as err:
        raise _fail(str(err)) from err
    finally:
        application.close()
    for warned in summary.warnings:
        typer.echo(f"{csv}:{warned.line}: warning: {warned.email}: {warned.warning} "
                   "(enrolled; check the address)", err=True)
    for rejected in summary.rejected:
        typer.echo(f"{csv}:{rejected.line}: rejected {rejected.email or ''}: "
                   f"{rejected.reason}".replace("  ", " "), err=True)
    moved = f" (moved {summary.moved} from other sequences)" if summary.moved else ""
    typer.echo(f"enrolled {summary.enrolled}{moved}, rejected {len(summary.rejected)} "
               f"({summary.rows} rows) into {summary.sequence}")


def _serve(config: Path | None, log_format: str, log_file: Path | None, verbose: bool,
           metrics_port: int | None = None, **parts: object) -> None:
    from workers.run import run as run_loop

    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _check_log_format(log_format)
    eventlog.configure(log_format, log_file, verbose=verbose)
    application = _load(config)
    if parts.get("senders", True) or parts.get("scheduler", True):
        _refuse_broken_sequences(application)
    if metrics_port is not None:
        from workers.metrics import serve as serve_metrics

        try:
            parts["metrics"] = serve_metrics(application, metrics_port)
        except OSError as err:
            application.close()
            raise _fail(f"--metrics-port {metrics_port}: {err.strerror or err}") from err
    try:
        code = run_loop(application, stop, **parts)  # type: ignore[arg-type]
    except SequencerError as err:
        raise _fail(str(err)) from err
    finally:
        application.close()
    raise typer.Exit(code)


def _refuse_broken_sequences(application) -> None:  # type: ignore[no-untyped-def]
    """What sends checks every sequence first (mailbox, templates) as `validate` does:
    a mistake there is refused at start, not found prospect by prospect at send time."""
    from sequencer.usecases.checking import check_sequence

    problems = [problem for seq in application.sequences.values()
                for problem in check_sequence(seq, application.settings, application.templates)]
    if problems:
        application.close()
        for problem in problems[:-1]:
            typer.echo(f"error: {problem}", err=True)
        raise _fail(problems[-1])


@app.command()
def run(
    config: ConfigOpt = None,
    threads: Annotated[int, typer.Option(min=1, max=64, help="send threads")] = 8,
    log_format: LogFormat = "human",
    log_file: LogFile = None,
    verbose: Verbose = False,
    metrics_port: MetricsPort = None,
) -> None:
    """Scheduler + senders + inbox watcher in one process (the embedded default)."""
    _serve(config, log_format, log_file, verbose, metrics_port, threads=threads)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8080,
    log_format: LogFormat = "human",
    log_file: LogFile = None,
    verbose: Verbose = False,
) -> None:
    """The unsubscribe endpoint behind unsubscribe_url: one-click POST (RFC 8058) halts and
    suppresses; GET shows a confirmation page and never unsubscribes by itself."""
    from sequencer.usecases.sending import unsubscribe_tokens
    from sequencer.web import serve as serve_links

    _check_log_format(log_format)
    eventlog.configure(log_format, log_file, verbose=verbose)
    application = _load(config)
    try:
        tokens = unsubscribe_tokens(application)
        template = application.settings.unsubscribe_url
        if tokens is None or template is None:
            raise _fail("serve needs unsubscribe_url and secret_env in the settings")
        serve_links(application, tokens, template, host, port)
    finally:
        application.close()


@app.command()
def scheduler(config: ConfigOpt = None, log_format: LogFormat = "human",
              log_file: LogFile = None, verbose: Verbose = False,
              metrics_port: MetricsPort = None) -> None:
    """Only the scheduler: claims due steps and queues them on the broker (redis://)."""
    _require_shared_broker(config)
    _serve(config, log_format, log_file, verbose, metrics_port, senders=False,
           watchers=False)


@app.command()
def watch(config: ConfigOpt = None, log_format: LogFormat = "human",
          log_file: LogFile = None, verbose: Verbose = False) -> None:
    """Only the inbox watchers."""
    _serve(config, log_format, log_file, verbose, scheduler=False, senders=False)


@app.command()
def worker(
    config: ConfigOpt = None,
    processes: Annotated[int, typer.Option(min=1, max=64)] = 1,
    threads: Annotated[int, typer.Option(min=1, max=64)] = 8,
    log_format: LogFormat = "human",
    log_file: LogFile = None,
    verbose: Verbose = False,
    metrics_port: MetricsPort = None,
) -> None:
    """Only the send workers (dramatiq over redis://), in N processes of M threads. With
    --metrics-port P, process i (from 0) serves its metrics on port P + i."""
    _require_shared_broker(config)
    if processes == 1:
        _serve(config, log_format, log_file, verbose, metrics_port, threads=threads,
               scheduler=False, watchers=False)
        return
    import subprocess

    argv = [sys.executable, "-m", "sequencer", "worker", "--processes", "1",
            "--threads", str(threads), "--log-format", log_format]
    if config:
        argv += ["--config", str(config)]
    if log_file:
        argv += ["--log-file", str(log_file)]
    if verbose:
        argv.append("-v")
    children = [subprocess.Popen(argv + ([] if metrics_port is None else
                                         ["--metrics-port", str(metrics_port + i)]))
                for i in range(processes)]

    def _forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    codes = [child.wait() for child in children]
    raise typer.Exit(max(codes))


def _require_shared_broker(config: Path | None) -> None:
    application = _load(config)
    broker = application.settings.broker
    application.close()
    if broker == "memory":
        raise _fail("separate scheduler/worker processes need a shared broker: set "
                    "broker: redis://… (or SEQUENCER_BROKER_URL); `sequencer run` runs "
                    "everything in one process")


StateOpt = Annotated[
    Optional[EnrollmentState],  # noqa: UP045
    typer.Option("--state", help="only enrollments in this state", case_sensitive=False),
]


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
    email: Annotated[Optional[str], typer.Option(help="only this address")] = None,  # noqa: UP045
    sequence: Annotated[Optional[str], typer.Option(help="only this sequence")] = None,  # noqa: UP045
    state: StateOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="at most this many rows")] = None,  # noqa: UP045
    summary: Annotated[bool, typer.Option(
        "--summary", help="counts per sequence and state, and per step")] = False,
    mailboxes: Annotated[bool, typer.Option(
        "--mailboxes", help="each mailbox's health: watcher state, last server answer, "
        "cursor lag, sends today against daily_limit")] = False,
) -> None:
    """Every enrollment: state, last step sent, next due time (streamed, in sequence
    order); --summary counts instead; --mailboxes shows each mailbox's health."""
    from sequencer.store import status as query
    from workers.tables import write_json_array, write_table

    if summary and (email or limit):
        raise _fail("--summary counts whole sequences: drop --email and --limit", 2)
    if mailboxes and (summary or email or sequence or state or limit):
        raise _fail("--mailboxes shows every mailbox: drop --summary, --email, --sequence, "
                    "--state and --limit", 2)
    if email:
        _check_address(email)
    application = _load(config, skip_broken=True)
    out = sys.stdout
    try:
        for renamed in application.renamed():  # what `run` would refuse to start with
            typer.echo(f"warning: {renamed}", err=True)
        if mailboxes:
            _print_mailboxes(application, as_json)
            return
        if summary:
            counts = query.summary(application.store, sequence=sequence,
                                   state=state.value if state else None)
            _print_summary(application, counts, as_json)
            return
        rows = query.rows(application.store, email=email, sequence=sequence,
                          state=state.value if state else None, limit=limit)
        try:
            if as_json:
                write_json_array(out, (r.as_dict() for r in rows))
                return
            review: list[tuple[query.StatusRow, query.Notice]] = []

            def noting(found: Iterable[query.StatusRow]) -> Iterator[query.StatusRow]:
                for r in found:
                    review.extend((r, n) for n in r.unverified)
                    yield r

            write_table(out, ("email", "sequence", "state", "sent", "last step",
                              "next due (UTC)", "flag"), (
                (r.email, r.sequence, r.state, str(r.steps_sent), r.last_step or "-",
                 r.next_due.strftime("%Y-%m-%d %H:%M:%S") if r.next_due else "-", r.flag or "")
                for r in noting(rows)))
            _print_review(out, review)
        finally:
            rows.close()
    except BrokenPipeError:  # `status | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        raise typer.Exit(1) from None
    finally:
        application.close()


def _print_mailboxes(application: Workspace, as_json: bool) -> None:
    from sequencer.store import status as query
    from sequencer.usecases.sending import mailbox_limits
    from workers.tables import write_table
    from workers.watch import silent_after_s

    settings = application.settings
    limits = mailbox_limits(application)
    boxes = {name: query.Watched(
        limits[name], box.imap is not None or box.inbox is not None,
        silent_after_s(settings) if box.imap is not None else None)
        for name, box in settings.mailboxes.items()}
    now = application.clock()
    found = query.mailbox_rows(application.store, boxes, now)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in found], indent=2))
        return
    write_table(sys.stdout, ("mailbox", "state", "last answer", "cursor lag", "sent today",
                             "detail"), (
        (r.name, r.state,
         f"{query.ago((now - r.last_answer_at).total_seconds())} ago"
         if r.last_answer_at else "-",
         "unknown" if r.cursor_lag is None else str(r.cursor_lag),
         f"{r.sends_today}/{r.daily_limit}" if r.daily_limit is not None
         else str(r.sends_today),
         r.detail or "")
        for r in found))


def _print_review(out: TextIO, review: list[tuple[Any, Any]]) -> None:
    """The inbound notices that proved too little to act on fully (docs/trust.md)."""
    if not review:
        return
    out.write(f"\n{len(review)} unverified inbound message(s): nothing was suppressed for "
              "them; run `sequencer suppress ADDRESS` for one you trust\n")
    for row, notice in review:
        out.write(f"  {notice.at.strftime('%Y-%m-%d %H:%M:%S')}Z {row.email} {row.sequence} "
                  f"{notice.meaning} {notice.message_id}: {notice.detail}\n")


def _check_address(email: str) -> None:
    from sequencer.core.addresses import AddressError, address_key

    try:
        address_key(email)
    except AddressError as err:
        raise _fail(str(err)) from err


def _print_summary(application, counts, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    from workers.tables import write_table

    for seq in counts:  # name the steps nobody has been sent yet from the sequence file
        loaded = application.sequences.get(seq.sequence)
        for index, step in (seq.steps.items() if loaded else ()):
            if step.name is None and index < len(loaded.steps):
                step.name = loaded.steps[index].name
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in counts], indent=2))
        return
    states = [s.value for s in EnrollmentState]
    write_table(sys.stdout, ("sequence", "total", *states), (
        (c.sequence, str(c.total), *(str(c.states.get(s, 0)) for s in states))
        for c in counts))
    typer.echo("")
    write_table(sys.stdout, ("sequence", "step", "name", "waiting", "sent", "unknown",
                             "failed"), (
        (c.sequence, str(i + 1), c.steps[i].name or "-", str(c.steps[i].waiting),
         *(str(c.steps[i].sends.get(k, 0)) for k in ("sent", "unknown", "failed")))
        for c in counts for i in sorted(c.steps)))


@app.command()
def classify(
    files: Annotated[list[Path], typer.Argument(help=".eml files")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    now: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
        "--now", help="read as of this instant (ISO 8601; default: the clock)")] = None,
) -> None:
    """How the watcher reads a message: reply, auto_reply, bounce, complaint, unsubscribe…

    Read exactly as the watcher reads it: our own mailbox addresses from the settings (when
    there are any), the clock, and a file over the watcher's size budget cut the way the
    watcher cuts it (its header and the first 64 KiB of its body), with an error naming it.
    """
    from datetime import UTC, datetime

    from sequencer.config import load_settings
    from sequencer.mail.maildir import read_message
    from sequencer.mail.watching import DEFAULT_MAX_BYTES, TRUNCATED_BODY_BYTES
    from sequencer.usecases.receiving import read

    try:
        settings = load_settings(config)
    except SequencerError as err:
        raise _fail(str(err)) from err
    when = datetime.now(UTC)
    if now is not None:
        try:
            when = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            raise typer.BadParameter(f"{now!r} is not an ISO 8601 instant",
                                     param_hint="--now") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    failed = False
    for path in files:
        try:
            raw, truncated = read_message(path, DEFAULT_MAX_BYTES)
        except OSError as err:
            typer.echo(f"error: {path}: {err.strerror or err}", err=True)
            failed = True
            continue
        if truncated:
            typer.echo(f"error: {path}: larger than the watcher's {DEFAULT_MAX_BYTES // 2**20} "
                       f"MiB budget; read as the watcher reads it: its header and the first "
                       f"{TRUNCATED_BODY_BYTES // 1024} KiB of its body", err=True)
            failed = True
        verdict = read(raw, settings, when)
        if as_json:
            typer.echo(json.dumps(verdict.as_dict(str(path)), ensure_ascii=False))
            continue
        extra = f" {verdict.bounce}" if verdict.bounce else ""
        sub = f" ({verdict.subkind})" if verdict.subkind else ""
        who = f" {verdict.recipient}" if verdict.recipient else ""
        back = f" back {verdict.return_date.isoformat()}" if verdict.return_date else ""
        typer.echo(f"{path}: {verdict.kind.value}{extra}{sub}{who}{back} — {verdict.reason}")
    if failed:
        raise typer.Exit(1)


@app.command()
def preview(
    sequence: Annotated[str, typer.Argument(help="sequence path or name")],
    email: Annotated[str, typer.Option("--email", help="an enrolled prospect")],
    config: ConfigOpt = None,
) -> None:
    """Render that prospect's emails, step by step."""
    from sequencer.usecases.importing import render_preview

    application = _load(config, skip_broken=True)
    try:
        typer.echo(render_preview(application, sequence, email))
    except SequencerError as err:
        raise _fail(str(err)) from err
    finally:
        application.close()


@app.command()
def plan(
    sequence: Annotated[Optional[str], typer.Argument(help="sequence path or name")] = None,  # noqa: UP045
    email: Annotated[Optional[str], typer.Option("--email", help="an enrolled prospect")] = None,  # noqa: UP045
    csv: Annotated[Optional[Path], typer.Option("--csv", help="a prospects CSV")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
    capacity: Annotated[bool, typer.Option("--capacity", help="sends per day per mailbox")] = False,
    days: Annotated[int, typer.Option(min=1, max=366, help="days --capacity looks ahead")] = 14,
    config: ConfigOpt = None,
) -> None:
    """When each step would go out (local and UTC) and which rules moved it."""
    from sequencer.usecases import planning
    from sequencer.usecases.importing import load_checked_sequence

    if capacity:
        if sequence or email or csv:
            raise _fail("plan --capacity takes no SEQUENCE, --email or --csv", 2)
    elif not sequence or (email is None) == (csv is None):
        raise _fail("plan needs SEQUENCE and one of --email ADDR or --csv FILE "
                    "(or --capacity)", 2)
    application = _load(config)
    try:
        if capacity or not sequence:
            loads = planning.capacity(application, days)
            if as_json:
                typer.echo(json.dumps([c.as_dict() for c in loads], indent=2))
            else:
                typer.echo(planning.capacity_text(loads))
            return
        seq = load_checked_sequence(application, sequence)
        problems: list[str] = []
        if csv is not None:
            plans, problems = planning.plan_csv(application, seq, csv)
        else:
            plans = [planning.plan_enrolled(application, seq, email or "")]
    except SequencerError as err:
        raise _fail(str(err)) from err
    finally:
        application.close()
    for problem in problems:
        typer.echo(f"{problem}", err=True)
    if as_json:
        typer.echo(json.dumps(planning.as_mapping(plans), indent=2))
    else:
        typer.echo(planning.plan_text(plans))


def _control(action: str, email: str, config: Path | None, sequence: str | None) -> None:
    from sequencer.usecases.importing import control

    application = _load(config, skip_broken=True)
    try:
        records, refusals = control(application, action, email, sequence)
    except SequencerError as err:
        raise _fail(str(err)) from err
    finally:
        application.close()
    for rec in records:
        typer.echo(f"{rec.event.value}: {rec.email} in {rec.sequence}")
    for refusal in refusals:
        typer.echo(f"error: {email}: {refusal}", err=True)
    if action == "suppress":
        typer.echo(f"suppressed: {email}")
    elif not records:
        raise _fail(f"{email}: nothing to {action}" + (f" ({'; '.join(refusals)})"
                                                       if refusals else ""))


SequenceOpt = Annotated[Optional[str], typer.Option("--sequence", help="only this sequence")]  # noqa: UP045
EmailArg = Annotated[str, typer.Argument(help="prospect address")]


@app.command()
def pause(email: EmailArg, sequence: SequenceOpt = None, config: ConfigOpt = None) -> None:
    """Pause a prospect's active enrollments."""
    _control("pause", email, config, sequence)


@app.command()
def resume(email: EmailArg, sequence: SequenceOpt = None, config: ConfigOpt = None) -> None:
    """Resume paused enrollments (a step flagged `unknown` counts as delivered)."""
    _control("resume", email, config, sequence)


@app.command()
def stop(email: EmailArg, sequence: SequenceOpt = None, config: ConfigOpt = None) -> None:
    """Stop a prospect's enrollments for good."""
    _control("stop", email, config, sequence)


@app.command()
def suppress(email: EmailArg, config: ConfigOpt = None) -> None:
    """Never mail this address again (stops its enrollments)."""
    _control("suppress", email, config, None)


@app.command()
def auth(
    mailbox: Annotated[Optional[str], typer.Argument(help="an `auth: oauth2` mailbox")] = None,  # noqa: UP045
    config: ConfigOpt = None,
    device: Annotated[bool, typer.Option(
        "--device", help="device-code flow: enter a code on any other device (headless "
        "servers; Microsoft allows it for mail, Google does not)")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait for the approval")]
    = 300.0,
    new_key: Annotated[bool, typer.Option(
        "--new-key", help="print a new key for token_key_env and exit")] = False,
) -> None:
    """Authorize an `auth: oauth2` mailbox: open the URL it prints and approve.

    The refresh token is stored encrypted in the database (or in the mailbox's
    token_file); tokens are never printed."""
    from sequencer.errors import SequencerError as Failure
    from sequencer.oauth import flows
    from sequencer.oauth.grants import new_key as make_key
    from sequencer.oauth.sources import grant_store
    from sequencer.store import outcomes

    if new_key:
        typer.echo(make_key())
        return
    if mailbox is None:
        raise typer.BadParameter("name the mailbox to authorize", param_hint="MAILBOX")
    ws = _load(config)
    try:
        box = ws.settings.mailboxes.get(mailbox)
        if box is None:
            raise _fail(f"no mailbox named {mailbox!r} in the settings")
        if box.oauth is None:
            raise _fail(f"mailbox {mailbox} uses auth: password; there is nothing to authorize")
        oauth = box.oauth

        def show(text: str) -> None:
            typer.echo(text)

        try:
            if device:
                show(f"to authorize mailbox {mailbox} as {oauth.username}:")
                answer = flows.authorize_on_device(oauth.client, show=show, timeout_s=timeout)
            else:
                show(f"to authorize mailbox {mailbox} as {oauth.username}, open this URL in "
                     f"a browser (waiting {timeout:.0f} s):")
                answer = flows.authorize_in_browser(oauth.client, show=show, timeout_s=timeout,
                                                    login_hint=oauth.username)
            grants = grant_store(box, ws.store)
            try:
                previous = grants.load(mailbox)
            except Failure:  # unreadable (a lost key): this new grant replaces it
                previous = None
            grants.save(mailbox, answer.grant(oauth.username, previous))
            resumed = outcomes.unpause_mailbox(ws.store, mailbox)
        except Failure as err:
            raise _fail(str(err)) from err
        typer.echo(f"authorized mailbox {mailbox}; its refresh token is kept in "
                   f"{grants.describe()}")
        if resumed:
            typer.echo(f"mailbox {mailbox} was paused; restart `sequencer run` (or the "
                       "workers) to send from it again")
    finally:
        ws.close()


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="working folder for the demo")] =
    Path("demo-out"),
    log_format: LogFormat = "human",
) -> None:
    """The whole loop on embedded defaults, in under a minute, with nothing installed."""
    from workers.demo import run_demo

    _check_log_format(log_format)
    eventlog.configure(log_format)
    try:
        code = run_demo(directory)
    except SequencerError as err:
        raise _fail(str(err)) from err
    raise typer.Exit(code)


def main() -> None:
    """Every error of ours ends as ``error: …`` and exit 1, never a traceback."""
    try:
        app()
    except SequencerError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
