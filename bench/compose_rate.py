"""How fast we render + compose messages and import prospects (a benchmark, not a test).

    .venv/bin/python bench/compose_rate.py [--messages 20000] [--rows 20000]

Prints messages/s for compose alone and render + compose, against the stdlib EmailMessage;
and CSV rows/s for read_prospects against email-validator alone on the same addresses.
The host is noisy: compare the ratios printed in one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from email_validator import validate_email

from sequencer.core.compose import Rendered, compose, new_message_id
from sequencer.prospects import read_prospects
from sequencer.templating.templates import TemplateSet

TEXT = "Subject: Thanks for stopping by, {{ first_name }}\n\nHi {{ first_name }},\n\n" + (
    "Thanks for visiting the {{ company }} booth — here is what we promised.\n" * 6
)


def rate(count: int, work: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(count):
        work(i)
    return count / (time.perf_counter() - started)


def compose_rates(count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "thanks.txt.j2").write_text(TEXT, encoding="utf-8")
        template = TemplateSet(Path(directory)).check("thanks")
        rendered = template.render({"first_name": "Ana", "company": "Acme"})
        now = datetime.now(UTC)

        def ours(i: int) -> bytes:
            return compose(
                sender="Dana Reyes <dana@example.com>",
                to=f"user{i}@example.org",
                to_name="Ana Lima",
                rendered=rendered,
                message_id=new_message_id("example.com"),
                date=now,
                list_unsubscribe=("https://example.com/u/token",),
            )

        def ours_with_render(i: int) -> bytes:
            context = {"first_name": f"Ana{i}", "company": "Acme"}
            return compose(
                sender="Dana Reyes <dana@example.com>",
                to=f"user{i}@example.org",
                rendered=template.render(context),
                message_id=new_message_id("example.com"),
                date=now,
            )

        print(f"compose:           {rate(count, ours):8.0f} msg/s")
        print(f"render + compose:  {rate(count, ours_with_render):8.0f} msg/s")
        print(f"stdlib EmailMessage:{rate(count // 4, lambda i: stdlib(i, rendered)):7.0f} msg/s")


def stdlib(i: int, rendered: Rendered) -> bytes:
    message = EmailMessage()
    message["From"] = "Dana Reyes <dana@example.com>"
    message["To"] = f"Ana Lima <user{i}@example.org>"
    message["Subject"] = rendered.subject
    message["Message-ID"] = new_message_id("example.com")
    message.set_content(rendered.text)
    return message.as_bytes()


def import_rates(rows: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "prospects.csv")
        with path.open("w", encoding="utf-8", newline="") as handle:
            handle.write("email,first_name,company,timezone\n")
            for i in range(rows):
                handle.write(f"user{i}@example{i % 50}.com,First{i},Acme,Europe/Paris\n")
        ratios = []
        for _ in range(3):  # interleaved, so both sides see the same host noise
            started = time.perf_counter()
            accepted = sum(1 for _ in read_prospects(path, required=["first_name"]))
            ours = accepted / (time.perf_counter() - started)
            alone = rate(
                rows,
                lambda i: validate_email(
                    f"user{i}@example{i % 50}.com", check_deliverability=False
                ),
            )
            ratios.append(ours / alone)
            print(
                f"read_prospects: {ours:8.0f} rows/s   email-validator alone: {alone:8.0f} rows/s"
            )
        print(f"ours / email-validator, median of 3: {statistics.median(ratios):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=20_000)
    arguments = parser.parse_args()
    compose_rates(arguments.messages)
    import_rates(arguments.rows)


if __name__ == "__main__":
    main()
