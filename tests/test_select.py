"""The select strategy: claims chosen among a source's numbered sentences, through a real HTTP endpoint.

The scripted server plays a small model: it may name a sentence that does not exist,
write a topic for a title, or fill free-text fields with its JSON's debris. The
pipeline must turn none of that into a file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractor.cli.demo import SampleSummary, closing_summary, create_demo_kb
from extractor.cli.main import main
from extractor.core.settings import StructuredMode
from extractor.extraction.prose import is_prose, shown, vocabulary
from extractor.extraction.selecting import windows_of
from extractor.extraction.selection import proposition, selection_model
from extractor.extraction.sentences import selectable, split_sentences
from extractor.kb.claims import parse_claim
from extractor.kb.sources import load_source
from extractor.kb.yamlio import split_document
from extractor.llm.client import response_format
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, answer

OREGON = "inbox/archive/2013-05-00-baicker-oregon-health-insurance-experiment.md"
OREGON_BRANCH = "extract/2013-05-00-baicker-oregon-health-insurance-experiment"
DEPRESSION = (
    "Rates of depression fell by about 30 percent relative to the control group, and people reported better health."
)
NULL = (
    "Coverage did not produce statistically significant improvements in the physical measures the study collected "
    "over two years: blood pressure, cholesterol and glycated haemoglobin."
)
CAUTION = (
    "The authors caution that the confidence intervals were wide, that two years may be too short for these "
    "measures to move, and that the results come from one state and one population."
)


def choice(numbers: list[int], title: str, description: str = "", limitation: str = "", confidence: str = "likely"):
    return {"sentences": numbers, "title": title, "description": description, "limitation": limitation,
            "confidence": confidence}  # fmt: skip


def demo_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI) -> Path:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    return create_demo_kb(tmp_path / "kb")


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI) -> Path:
    """The demo KB, its model a scripted endpoint read in the select strategy with a grammar schema."""
    kb = demo_kb(tmp_path, monkeypatch, fake_llm)
    monkeypatch.setenv("EXTRACTOR_STRATEGY", "select")
    monkeypatch.setenv("EXTRACTOR_STRUCTURED_MODE", "json_object_schema")
    return kb


def number_of(kb: Path, text: str) -> int:
    sentences = split_sentences(load_source(kb / OREGON).body)
    return next(s.number for s in sentences if s.text == text)


def shown_claims(kb: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "show", OREGON_BRANCH.removeprefix("extract/"), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["claims"]


# --- sentences -------------------------------------------------------------------------


def test_sentences_are_numbered_spans_of_the_body_and_notes_are_not_offered() -> None:
    body = (
        "## Content\n\nDr. Smith found that U.S. rates rose 3.5% in 2020. The paper argues that markets win\n"
        "more often than polls do.\n\nThe paper sketches two areas:\n\n- Markets that price policy outcomes well.\n"
        "- Polls that ask about them.\n\n## Agent Notes\n\nThis source extends the claim about markets and polls.\n"
    )
    sentences = split_sentences(body)
    for sentence in sentences:
        assert " ".join(body[sentence.start : sentence.end].split()) == sentence.text
    assert [s.number for s in sentences] == list(range(1, len(sentences) + 1))
    texts = {s.text: s for s in sentences}
    assert "Dr. Smith found that U.S. rates rose 3.5% in 2020." in texts  # abbreviations do not end a sentence
    assert selectable(texts["The paper argues that markets win more often than polls do."])
    assert not selectable(texts["The paper sketches two areas:"])
    assert not selectable(texts["Markets that price policy outcomes well."])  # a list item completing a colon
    assert not selectable(texts["This source extends the claim about markets and polls."])  # a curator's note
    labelled = split_sentences("Additional data: participation demographics, wallet analysis, time-to-fill curves.")
    assert not selectable(labelled[0])  # a label and a list
    stated = split_sentences("Reported results: the constitutional models were judged less harmful than others.")
    assert selectable(stated[0])
    subjectless = split_sentences("Provides the quantitative backbone for claims about futarchy effectiveness.")
    assert not selectable(subjectless[0])
    listed = split_sentences("Countries compared: Australia, Canada, France, the United Kingdom, the United States.")
    assert not selectable(listed[0])  # "United" is a name, not a verb
    assert not selectable(split_sentences("Published in Physics of Life Reviews, Vol 24, March 2018.")[0])
    labelled_note = split_sentences("**Variational neuroethology**: Proposes an ontology of biological systems.")
    assert not selectable(labelled_note[0])  # a label, then a line without a subject
    plural = split_sentences("Increases in the minimum wage reduced teen employment by 2 percent in the study.")
    assert selectable(plural[0])  # a plural noun, not a verb without a subject
    sections = split_sentences(
        "Key findings:\n\n- Alpha rose by 5 percent in the year.\n\n## Methods\n\n"
        "- The fund lost 30 percent of its value in its first year of trading.\n\n## Risk Assessment\n\n"
        "The fund may lose up to 40 percent of its value in a bad year.\n\n## Links\n\n"
        "The fund may lose up to 40 percent of its value in a good year."
    )
    offered = [s.text for s in sections if selectable(s)]
    assert offered == [  # a heading ends the list a colon opened; a source's own "Risk Assessment" is its text
        "The fund lost 30 percent of its value in its first year of trading.",
        "The fund may lose up to 40 percent of its value in a bad year.",
    ]


def test_a_sentence_becomes_a_title_without_its_reporting_frame() -> None:
    assert (
        proposition("The paper argues that markets beat polls on elections [3].") == "Markets beat polls on elections"
    )
    assert proposition("However, the authors found that coverage cut depression by 30 percent.") == (
        "Coverage cut depression by 30 percent"
    )
    assert proposition("But one week is short, and the reviewers quickly guessed.") == (
        "One week is short, and the reviewers quickly guessed"
    )
    assert proposition("**Key data:** contested decisions show far higher engagement than routine ones.") == (
        "Contested decisions show far higher engagement than routine ones"
    )
    assert (
        proposition("The result is clear: prices rose by 5 percent.") == "The result is clear: prices rose by 5 percent"
    )
    # What would change the claim's meaning or owner stays: a clause before a colon, a subject other than the
    # source, "But for", a list of names.
    for kept in (
        "Prices rose for one reason: supply fell sharply across the region in 2021",
        "Nobody believes that inflation will fall below 2 percent next year",
        "Critics argue that futarchy fails when markets are thin",
        "But for the subsidy, the firm would have failed in 2020",
        "According to Smith, Jones, and Lee, the fund lost 30 percent in 2008",
        "Calling __init__ directly skips the checks in most code bases",
    ):
        assert proposition(kept + ".") == kept
    # A frame without a clause is the statement itself: "Hanson proposes futarchy" keeps its subject.
    assert proposition("Hanson proposes a form of government he calls futarchy.") == (
        "Hanson proposes a form of government he calls futarchy"
    )


def test_long_sources_are_read_in_windows_offering_their_most_checkable_sentences() -> None:
    body = "\n\n".join(
        f"Finding {n} shows that the treatment cut costs by {n} percent more than the control did in that year."
        if n % 3 == 0
        else f"This paragraph number {n} describes the setting of the study in general words."
        for n in range(1, 61)
    )
    eligible = [s for s in split_sentences(body) if selectable(s)]
    windows = windows_of(eligible, 1500, 3)
    assert len(windows) > 3
    assert sum(len(w.sentences) for w in windows) < len(eligible)
    for window in windows:
        assert len(window.sentences) <= 3
        assert all("Finding" in s.text for s in window.sentences)  # the most checkable are offered
        assert [s.number for s in window.sentences] == sorted(s.number for s in window.sentences)


# --- the grammar: only real sentences can be named ----------------------------------------------


def test_the_schema_names_only_the_window_s_sentences() -> None:
    model = selection_model((3, 4, 5))
    schema = response_format(StructuredMode.JSON_OBJECT_SCHEMA, model, 3072)["schema"]
    items = schema["$defs"]["SelectedClaim"]["properties"]["sentences"]["items"]
    assert items["enum"] == [3, 4, 5]
    valid = {"claims": [choice([4], "Coverage cut depression by about 30 percent")]}
    assert model.model_validate(valid).claims[0].sentences == [4]
    with pytest.raises(ValueError):
        model.model_validate({"claims": [choice([99], "Coverage cut depression by about 30 percent")]})
    with pytest.raises(ValueError):
        model.model_validate({"claims": [choice([], "Coverage cut depression by about 30 percent")]})
    with pytest.raises(ValueError, match="at most two sentences"):  # the grammar's bound, for endpoints without one
        model.model_validate({"claims": [choice([3, 4, 5], "Coverage cut depression by about 30 percent")]})
    gbnf = pytest.importorskip("llama_cpp.llama_grammar", reason="the embedded model's server is not installed")
    rules = dict(
        line.split(" ::= ", 1) for line in gbnf.json_schema_to_gbnf(json.dumps(schema)).splitlines() if "::=" in line
    )
    assert rules["SelectedClaim-sentences-item"] == '"3" | "4" | "5"'  # what llama.cpp lets the model write


def test_an_out_of_range_sentence_number_is_refused_and_asked_again(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    depression = number_of(kb, DEPRESSION)
    fake_llm.push(
        answer({"claims": [choice([99], "Medicaid coverage cut depression rates by about 30 percent")]}),
        answer({"claims": [choice([depression], "Medicaid coverage cut depression rates by about 30 percent")]}),
    )
    assert main(["extract", str(kb / OREGON)]) == 0
    first = fake_llm.requests[0]
    enum = first["response_format"]["schema"]["$defs"]["SelectedClaim"]["properties"]["sentences"]["items"]["enum"]
    assert depression in enum and 99 not in enum
    assert f"[{depression}] {DEPRESSION}" in first["messages"][1]["content"]
    assert len(fake_llm.requests) == 2
    assert "sentences" in fake_llm.requests[1]["messages"][-1]["content"]  # the re-ask names the problem
    claims = shown_claims(kb, capsys)
    assert [c["title"] for c in claims] == ["Medicaid coverage cut depression rates by about 30 percent"]
    assert not [f for f in claims[0]["flags"] if f["gate"] == "title-fallback"]


def test_a_title_that_fails_the_gates_falls_back_to_the_chosen_sentence(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    null = number_of(kb, NULL)
    fake_llm.push(answer({"claims": [choice([null], "The Oregon Experiment", "", "", "proven")]}))
    assert main(["extract", str(kb / OREGON)]) == 0
    claims = shown_claims(kb, capsys)
    assert [c["title"] for c in claims] == [NULL.rstrip(".")]
    fallback = [f for f in claims[0]["flags"] if f["gate"] == "title-fallback"]
    assert fallback and "bare topic" in fallback[0]["reason"] and fallback[0]["text"] == "The Oregon Experiment"
    names = git(kb, "show", "--name-only", "--format=", OREGON_BRANCH).split()
    claim_path = next(p for p in names if p.startswith("claims/"))
    meta, body = split_document(git(kb, "show", f"{OREGON_BRANCH}:{claim_path}"))
    assert meta["confidence"] == "likely"  # one chosen sentence is not proof
    source_text = " ".join(load_source(kb / OREGON).body.split())
    evidence = body.split("## Evidence", 1)[1].split("##", 1)[0]
    items = [line[2:].strip().strip('"') for line in evidence.splitlines() if line.startswith("- ")]
    assert items == [NULL] and all(item in source_text for item in items)
    assert f"- {CAUTION}" in body  # the source's own caveat, verbatim, is the limitation
    source_meta, _ = split_document(git(kb, "show", f"{OREGON_BRANCH}:{OREGON}"))
    assert (
        "title-fallback" not in source_meta["extraction_notes"]
        or "Flagged for review" in source_meta["extraction_notes"]
    )


def test_a_model_title_loses_its_frame_and_one_pointing_back_falls_back(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    depression, coverage = number_of(kb, DEPRESSION), number_of(kb, NULL)
    finding = "Rates of depression fell by about 30 percent relative to the control group."
    fake_llm.push(
        answer(
            {
                "claims": [
                    choice([depression], "It cut depression rates by about 30 percent", limitation=finding),
                    choice([coverage], "The study found that coverage did not improve blood pressure"),
                ]
            }
        )
    )
    assert main(["extract", str(kb / OREGON)]) == 0
    claims = {c["title"]: c for c in shown_claims(kb, capsys)}
    # "It" is a subject from another sentence: the chosen sentence is the title, flagged.
    fell = claims[DEPRESSION.rstrip(".")]
    assert "points to another sentence" in fell["flags"][0]["reason"]
    # The model's "limitation" restates a finding: it qualifies nothing, and the source has no caveat for it.
    assert parse_claim(git(kb, "show", f"{OREGON_BRANCH}:{fell['path']}")).limitations == []
    # The model's own title, but without its reporting frame, and not flagged.
    improved = claims["Coverage did not improve blood pressure"]
    assert not improved["flags"]
    assert parse_claim(git(kb, "show", f"{OREGON_BRANCH}:{improved['path']}")).limitations == [CAUTION]


def test_a_title_cut_off_at_its_bound_falls_back_even_without_its_frame(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    null = number_of(kb, NULL)
    fake_llm.push(answer({"claims": []}))
    assert main(["extract", str(kb / OREGON)]) == 0
    bound = fake_llm.requests[0]["response_format"]["schema"]["$defs"]["SelectedClaim"]["properties"]["title"]
    start = "The study found that coverage did not produce statistically significant improvements in blood pressure"
    cut = (start + ", cholesterol and glycated haemoglobin over two years of follow-up in Oregon")[: bound["maxLength"]]
    fake_llm.push(answer({"claims": [choice([null], cut)]}))
    assert main(["extract", str(kb / OREGON), "--force", "--no-cache"]) == 0
    claims = shown_claims(kb, capsys)
    assert [c["title"] for c in claims] == [NULL.rstrip(".")]
    assert "cut off at its length bound" in claims[0]["flags"][0]["reason"]


def test_repeated_choices_make_one_claim(kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    depression = number_of(kb, DEPRESSION)
    same = choice([depression], "The Oregon Experiment")
    fake_llm.push(answer({"claims": [same, same, same]}))
    assert main(["extract", str(kb / OREGON)]) == 0
    claims = shown_claims(kb, capsys)
    assert len(claims) == 1
    assert len([f for f in claims[0]["flags"] if f["gate"] == "title-fallback"]) == 1


def test_enrichments_are_offered_only_for_strong_candidates_as_an_enum(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.push(answer({"claims": []}))
    assert main(["extract", str(kb / OREGON)]) == 0
    schema = fake_llm.requests[0]["response_format"]["schema"]
    # The KB's claim "randomised evaluations are the strongest evidence..." shares too few words with the body.
    assert "enrichments" not in schema["properties"]

    text = (
        (kb / OREGON)
        .read_text(encoding="utf-8")
        .replace(
            "## Agent Notes",
            "Randomised evaluations are the strongest evidence for the effects of health policy, the authors add.\n\n"
            "## Agent Notes",
        )
    )
    (kb / OREGON).write_text(text, encoding="utf-8")
    git(kb, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qam", "edit")
    fake_llm.push(answer({"claims": []}))
    assert main(["extract", str(kb / OREGON), "--force", "--no-cache"]) == 0
    schema = fake_llm.requests[-1]["response_format"]["schema"]
    target = schema["$defs"]["SelectedEnrichment"]["properties"]["target"]
    assert target.get("enum", [target.get("const")]) == [
        "Randomised evaluations are the strongest evidence for the effects of health policy"
    ]


# --- no junk in the KB ---------------------------------------------------------------------------


def test_junk_free_text_never_reaches_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI
) -> None:
    kb = demo_kb(tmp_path, monkeypatch, fake_llm)
    monkeypatch.setenv("EXTRACTOR_STRATEGY", "draft")
    junk = {
        "key_facts": ['{"fact": 1}', "] } {", "Depression fell by about 30 percent among winners."],
        "claims": [],
        "enrichments": [],
        "null_result_reason": "] } { [",
        "notes": '[{ Dropped: "x": ] }',
    }
    fake_llm.push(answer(junk))
    assert main(["extract", str(kb / OREGON)]) == 0
    text = git(kb, "show", f"{OREGON_BRANCH}:{OREGON}")
    meta, body = split_document(text)
    assert meta["status"] == "null-result"
    for key in ("notes", "extraction_notes"):
        assert not any(mark in str(meta[key]) for mark in ("{", "}", "[", "]", '":')), (key, meta[key])
    assert meta["notes"] == "The model found nothing worth extracting and gave no readable reason."
    assert "Depression fell by about 30 percent among winners." in body
    assert '{"fact"' not in body and "] } {" not in body


def test_the_prose_check() -> None:
    known = vocabulary(DEPRESSION + " " + CAUTION)
    assert is_prose("The source reports one trial of Medicaid coverage.", known)
    assert not is_prose("] } {", known)
    assert not is_prose('{"claims": []}', known)
    assert not is_prose("x7 q9 zz 33 44 55", known)
    assert not is_prose("Lorem ipsum dolor sit amet consectetur adipiscing", known)  # not the source's language
    assert not is_prose("word " * 200, known)
    assert shown('[{ "title": ] }') == "(unreadable text)"
    assert shown("A readable title") == "A readable title"


# --- determinism and the demo's last words ------------------------------------------------------------


def test_the_seed_is_sent_with_every_request(kb: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTOR_SEED", "42")
    fake_llm.push(answer({"claims": []}))
    assert main(["extract", str(kb / OREGON)]) == 0
    assert fake_llm.requests[0]["seed"] == 42


def test_the_demo_ends_with_a_summary_and_the_commands_to_look() -> None:
    text = closing_summary(
        [
            SampleSummary(source="a", written=2, dropped=['dropped claim "X" (title: the title is a bare topic)']),
            SampleSummary(source="b", written=0, dropped=[], error="transient: HTTP 500"),
        ],
        Path("build/demo-kb"),
        ".venv/bin/extractor",
        "the embedded model",
        "select",
    )
    assert '  a: 2 claim(s) written, 1 dropped (first: dropped claim "X" (title: the title is a bare topic))' in text
    assert "  b: failed: transient: HTTP 500" in text
    for command in ("review --kb build/demo-kb list", "show <source>", "--html", "OPENAI_BASE_URL="):
        assert command in text
