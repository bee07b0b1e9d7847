"""core.lint: a follow-up that repeats an earlier step, or leans on a stock nudge, is flagged
with its template file and line (issue 8, point 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequencer.core.lint import REPEAT_AT, Body, containment, fold, lint, shingles

REPO = Path(__file__).resolve().parents[2]
FIRST = ("Hi {{ first_name }},\n\nThanks for stopping by our booth today. As promised, here "
         "is the one-page overview of how teams like {{ company }} cut their follow-up time "
         "in half.\n\nBest,\n{{ sender }}\n\n--\nNot interested? {{ unsubscribe_url }}\n")


def body(step: str, source: str, first_line: int = 3, path: str | None = None) -> Body:
    return Body("seq", step, Path(path or f"templates/{step}.txt.j2"), first_line, source)


def test_a_follow_up_that_pastes_an_earlier_step_is_flagged_on_its_first_line() -> None:
    pasted = "\n\n" + FIRST.replace("Best,", "PS: we also have a webinar.\n\nBest,")
    findings = lint([body("first", FIRST), body("second", pasted, first_line=4)])
    assert [str(f) for f in findings] == [
        "templates/second.txt.j2:6: warning: step seq/second repeats step first "
        "(templates/first.txt.j2): 77% of its 3-word phrases are already there; "
        "bring something new"]


def test_the_same_template_used_twice_is_flagged() -> None:
    findings = lint([body("a", FIRST, path="t/x.txt.j2"), body("b", FIRST, path="t/x.txt.j2")])
    assert len(findings) == 1 and "repeats step a" in findings[0].message


def test_a_reworded_follow_up_with_the_same_greeting_and_sign_off_passes() -> None:
    new = ("Hi {{ first_name }},\n\nSomething new since we spoke: our benchmark of 2,000 "
           "sales teams shows a reply within a day doubles the chance of a second meeting.\n"
           "\nBest,\n{{ sender }}\n\n--\nNot interested? {{ unsubscribe_url }}\n")
    assert lint([body("first", FIRST), body("second", new)]) == []


def test_quoted_lines_and_the_signature_block_do_not_count() -> None:
    quoting = ("Here is the pricing for {{ company }}: 40 euros a seat, a month.\n\n"
               + "".join(f"> {line}\n" for line in FIRST.splitlines()))
    assert lint([body("first", FIRST), body("second", quoting)]) == []


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Just checking in on the proposal.", "just checking in"),
        ("Touching base about next steps.", "touching base"),
        ("Circling back on my last note.", "circling back"),
        ("Any update on your decision?", "any update on your decision"),
        ("Bumping this to the top of your inbox.", "bumping this"),
        ("I wanted to check in about the pilot.", "wanted to check in"),
        ("Ich wollte nur mal nachfragen, ob Sie Zeit hatten.", "wollte nur mal nachfragen"),
        ("Gibt es schon Neuigkeiten?", "gibt es schon neuigkeiten"),
        ("Ich hake noch einmal nach.", "hake noch einmal nach"),
        ("Je me permets de revenir vers vous.", "je me permets de revenir vers vous"),
        ("Petit rappel concernant ma proposition.", "petit rappel"),
        ("Je fais suite à mon précédent e-mail.", "je fais suite a mon precedent e mail"),
        ("Avez-vous pris une décision ?", "avez vous pris une decision"),
        ("Solo quería saber si tuvo tiempo de verlo.", "solo queria saber"),
        ("¿Alguna novedad sobre la propuesta?", "alguna novedad"),
        ("Le escribo para dar seguimiento a mi correo.", "para dar seguimiento"),
        ("¿Ha tomado una decisión?", "ha tomado una decision"),
    ],
)
def test_stock_nudges_in_four_languages_are_flagged_on_their_line(text: str, phrase: str) -> None:
    findings = lint([body("first", FIRST), body("second", f"Hello,\n\n{text}\n")])
    assert [(f.line, f.message.split("'")[1]) for f in findings] == [(5, phrase)]
    assert str(findings[0]).startswith("templates/second.txt.j2:5: warning: step seq/second")


def test_a_nudge_broken_across_lines_is_found_on_the_line_it_starts() -> None:
    findings = lint([body("first", FIRST), body("second", "Hi,\njust checking\nin again.\n")])
    assert [f.line for f in findings] == [4]


def test_the_first_step_is_not_a_follow_up() -> None:
    assert lint([body("first", "Just checking in: have you met our team?\n")]) == []


def test_words_inside_jinja_do_not_count_as_text() -> None:
    text = "Hi {{ 'just checking in' }} {# circling back #}{% if x %}, see {{ url }}{% endif %}\n"
    assert lint([body("first", FIRST), body("second", text)]) == []


def test_shipped_examples_pass_clean() -> None:
    sequences = {"trade-show": ["thank_you", "reminder", "new_info"],
                 "after-meeting": ["meeting_recap", "reminder", "new_info"],
                 "after-sale": ["purchase_thanks", "delivery_check_in", "review_referral"]}
    for name, steps in sequences.items():
        bodies = []
        for step in steps:
            path = REPO / "templates" / f"{step}.txt.j2"
            head, _, rest = path.read_text(encoding="utf-8").partition("\n\n")
            bodies.append(Body(name, step, path, head.count("\n") + 3, rest))
        assert lint(bodies) == [], name


def test_containment_and_folding() -> None:
    assert fold("Décision’s ÉTÉ") == "decision's ete"
    a = shingles(["one", "two", "three", "four"])
    assert a == {("one", "two", "three"), ("two", "three", "four")}
    assert containment(a, a) == 1.0 and containment(set(), a) == 0.0
    assert containment(a, shingles(["one", "two", "three", "five"])) == 0.5 >= REPEAT_AT
