"""The "new information" lint: a follow-up must bring something new (``sequencer validate``).

Pure: no I/O. Two checks on each follow-up step's text body (the template source as
written, so every prospect gets the same verdict):

- **Repeats an earlier step.** Bodies are normalised (Jinja expressions become one word,
  statements and comments go, quoted ``>`` lines and everything after a ``--`` signature
  line go, case and accents are folded) and cut into overlapping 3-word shingles (Broder's
  w-shingling). The score is *containment*: the share of the follow-up's shingles that
  also occur in the earlier body. Containment rather than Jaccard, because a follow-up that
  pastes the earlier email and adds one line brings nothing new either, while Jaccard would
  call it half different. A follow-up with at least ``MIN_SHINGLES`` shingles and
  containment of ``REPEAT_AT`` or more warns. Reworded text scores low; a shared greeting or
  sign-off stays far below the threshold.
- **Leans on a stock nudge.** "just checking in", "touching base", "circling back", "any
  update on your decision", "bumping this" and their German, French and Spanish kin
  (``STALLS``), matched after the same case and accent folding, across line breaks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SHINGLE = 3
MIN_SHINGLES = 4
REPEAT_AT = 0.5

# Folded (lower case, no accents), as regular expressions over single-spaced words.
STALLS: dict[str, tuple[str, ...]] = {
    "en": (
        r"just (?:checking|check) in", r"(?:wanted|want) to check in", r"checking in on",
        r"touching base", r"touch base", r"circling back", r"circle back",
        r"bumping (?:this|my (?:email|message|note))", r"bump(?:ing)? this (?:up|to the top)",
        r"just following up", r"just (?:wanted|want) to follow up",
        r"following up on my (?:last|previous|earlier) (?:email|message|note)",
        r"any updates? on (?:your|the) decision", r"any news on (?:your|the) decision",
        r"did you (?:get|have) a chance to (?:read|look|review|think|consider)",
        r"(?:just a )?friendly reminder", r"just a (?:quick )?reminder",
        r"floating this (?:back )?(?:up|to the top)", r"resurfacing this",
        r"wanted to make sure you saw",
    ),
    "de": (
        r"wollte (?:nur )?(?:mal |kurz )*nachfragen", r"nur kurz nachfragen",
        r"nachhaken", r"hake (?:mal |kurz |noch ?mal |noch einmal )*nach",
        r"melde mich (?:noch ?mal|noch einmal|erneut)",
        r"wollte mich (?:nur )?(?:kurz )?(?:noch ?mal|noch einmal|erneut) melden",
        r"gibt es (?:schon )?(?:etwas )?neues", r"gibt es (?:schon )?neuigkeiten",
        r"haben sie (?:sich )?(?:schon |bereits )?(?:eine )?entscheidung",
        r"nur zur erinnerung", r"kleine erinnerung", r"freundliche erinnerung",
        r"schiebe (?:das|diese (?:e ?mail|nachricht)|meine (?:e ?mail|nachricht)) "
        r"(?:mal )?(?:wieder )?nach oben",
    ),
    "fr": (
        r"je me permets de revenir vers vous", r"je reviens vers vous",
        r"(?:petit|simple) rappel", r"je me permets de (?:vous )?relancer",
        r"je (?:vous )?relance", r"je fais suite a mon (?:precedent |dernier )?"
        r"(?:message|e ?mail|mail|courriel)",
        r"avez vous eu le temps", r"avez vous pris (?:une|votre) decision",
        r"des nouvelles (?:de votre cote|concernant|au sujet)",
        r"(?:juste )?pour faire le point", r"je remonte (?:ce|mon) (?:message|mail|e ?mail)",
    ),
    "es": (
        r"solo queria saber", r"(?:solo |solamente )?para dar(?:le)? seguimiento",
        r"(?:queria|quisiera) (?:dar|hacer)(?:le)? seguimiento", r"alguna novedad",
        r"alguna actualizacion (?:sobre|respecto|acerca)",
        r"(?:ha|han) tomado (?:ya )?(?:una|su) decision", r"solo un recordatorio",
        r"recordatorio amistoso", r"vuelvo a escribirle", r"subo este (?:correo|mensaje)",
        r"solo para saber (?:si|como)", r"retomo mi (?:correo|mensaje) anterior",
    ),
}
_STALL = re.compile(
    r"\b(?:" + "|".join(f"(?:{p})" for phrases in STALLS.values() for p in phrases) + r")\b"
)
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_STATEMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_WORD = re.compile(r"\w+")
_SIGNATURE = re.compile(r"--\s*")


@dataclass(frozen=True)
class Body:
    """One step's text body: the template source after its headers, and where it starts."""

    sequence: str
    step: str
    path: Path
    first_line: int
    source: str


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: warning: {self.message}"


def fold(text: str) -> str:
    """Lower case, accents dropped, typographic apostrophes and dashes made plain."""
    text = text.replace("\u2019", "'").replace("\u2010", "-").replace("\u2011", "-")
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _lines(body: Body) -> list[tuple[int, str]]:
    """(file line, folded text) of the lines that count: no quotes, nothing after ``--``."""
    source = _STATEMENT.sub(lambda m: "\n" * m.group().count("\n"), body.source)
    source = _EXPRESSION.sub(lambda m: " var " + "\n" * m.group().count("\n"), source)
    kept: list[tuple[int, str]] = []
    for offset, line in enumerate(source.split("\n")):
        if _SIGNATURE.fullmatch(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append((body.first_line + offset, " ".join(_WORD.findall(fold(line)))))
    return kept


def shingles(words: Sequence[str]) -> set[tuple[str, ...]]:
    """The overlapping ``SHINGLE``-word runs of ``words``."""
    return {tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def containment(later: set[tuple[str, ...]], earlier: set[tuple[str, ...]]) -> float:
    """The share of ``later``'s shingles that ``earlier`` has too (0 when ``later`` is empty)."""
    return len(later & earlier) / len(later) if later else 0.0


def lint(bodies: Sequence[Body]) -> list[Finding]:
    """Warnings for the follow-ups (every body after the first), in step order."""
    findings: list[Finding] = []
    seen: list[tuple[Body, set[tuple[str, ...]]]] = []
    for index, body in enumerate(bodies):
        lines = _lines(body)
        words = [word for _, text in lines for word in text.split()]
        own = shingles(words)
        if index > 0:
            findings.extend(_stalls(body, lines))
            repeat = _repeat(body, lines, own, seen)
            if repeat is not None:
                findings.append(repeat)
        seen.append((body, own))
    return findings


def _stalls(body: Body, lines: list[tuple[int, str]]) -> list[Finding]:
    found: list[Finding] = []
    for i, (number, text) in enumerate(lines):
        joined = f"{text} {lines[i + 1][1]}" if i + 1 < len(lines) else text
        for match in _STALL.finditer(joined):
            if match.start() < len(text):  # starts on this line (else: the next line's)
                found.append(Finding(body.path, number, (
                    f"step {body.sequence}/{body.step} leans on {match.group()!r}: a "
                    "follow-up should say what is new (a fact, a resource, a question), "
                    "not that it follows up")))
    return found


def _repeat(body: Body, lines: list[tuple[int, str]], own: set[tuple[str, ...]],
            seen: list[tuple[Body, set[tuple[str, ...]]]]) -> Finding | None:
    if len(own) < MIN_SHINGLES:
        return None
    best: tuple[float, Body] | None = None
    for earlier, theirs in seen:
        score = containment(own, theirs)
        if score >= REPEAT_AT and (best is None or score > best[0]):
            best = (score, earlier)
    if best is None:
        return None
    first = next((number for number, text in lines if text), body.first_line)
    score, earlier = best
    return Finding(body.path, first, (
        f"step {body.sequence}/{body.step} repeats step {earlier.step} ({earlier.path}): "
        f"{score:.0%} of its {SHINGLE}-word phrases are already there; bring something new"))
