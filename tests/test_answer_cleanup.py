"""How the pipeline copes with a small model's habits: loops, repeats, off-topic claims."""

from __future__ import annotations

import json

from extractor.extraction.answer import (
    ClaimDraft,
    ExtractionAnswer,
    salvage_answer,
    unique_items,
    without_repeated_sentences,
)
from extractor.extraction.gates import content_stems, gate_on_topic
from tests.fakeopenai import FakeOpenAI, completion
from tests.test_llm import GOOD, MESSAGES, client_for


def test_repeated_sentences_are_said_once() -> None:
    text = (
        "Markets aggregate information. Markets aggregate information. Prices move.\n\nmarkets AGGREGATE information!"
    )
    assert without_repeated_sentences(text) == "Markets aggregate information. Prices move."


def test_repeated_list_items_are_said_once() -> None:
    draft = ClaimDraft.model_validate(
        {**GOOD["claims"][0], "evidence": ["Coverage cut depression.", "coverage cut depression", "Costs fell."]}
    )
    assert draft.evidence == ["Coverage cut depression.", "Costs fell."]
    assert unique_items(["a", "b", "A."]) == ["a", "b"]


def test_off_topic_claims_are_dropped_by_name() -> None:
    source = "A lottery assigned Medicaid coverage; depression fell and financial strain dropped."
    on = ClaimDraft.model_validate(
        {
            **GOOD["claims"][0],
            "title": "Medicaid coverage reduced depression among lottery winners",
            "evidence": ["Depression fell after coverage."],
        }
    )
    off = ClaimDraft.model_validate(
        {
            **GOOD["claims"][0],
            "title": "Rocket reuse lowers orbital launch prices dramatically",
            "evidence": ["Boosters landed on barges."],
        }
    )
    assert gate_on_topic(on, content_stems(source)) == []
    [failure] = gate_on_topic(off, content_stems(source))
    assert failure.gate == "off-topic" and "of the claim's words occur in the source" in failure.message


def test_salvage_keeps_valid_claims_and_names_the_rest() -> None:
    data = json.loads(json.dumps(GOOD))
    bad = {**data["claims"][0], "title": "Too short", "confidence": "certain"}
    data["claims"].append(bad)
    data["enrichments"] = [{"target": "", "evidence": "x", "kind": "confirm"}]
    answer, dropped = salvage_answer(data)
    assert [c.title for c in answer.claims] == [GOOD["claims"][0]["title"]]
    assert any(d.startswith("invalid claim 2") for d in dropped)
    assert any(d.startswith("invalid enrichment 1") for d in dropped)
    assert salvage_answer({"claims": [bad]}) is None
    assert salvage_answer(["not", "a", "dict"]) is None


def test_the_client_salvages_only_after_the_reasks(fake_llm: FakeOpenAI) -> None:
    data = json.loads(json.dumps(GOOD))
    data["claims"].append({**data["claims"][0], "evidence": []})
    fake_llm.push(*[completion(json.dumps(data))] * 3)
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer, salvage=salvage_answer)
    assert reply.reasks == 2 and len(fake_llm.requests) == 3
    assert len(reply.value.claims) == 1
    assert reply.salvaged and "claims" not in reply.salvaged[0]  # item numbered, not the raw path


def test_bracket_soup_is_not_a_title_and_braces_are_not_a_description() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="complete proposition"):
        ClaimDraft.model_validate({**GOOD["claims"][0], "title": '[ [ "constitution" ], ['})
    with pytest.raises(ValidationError, match="description must be a sentence"):
        ClaimDraft.model_validate({**GOOD["claims"][0], "description": "{{{"})
    draft = ClaimDraft.model_validate({**GOOD["claims"][0], "title": "Markets beat polls at forecasting."})
    assert draft.title == "Markets beat polls at forecasting"
    # A small model copies the prompt's test sentence into the title.
    draft = ClaimDraft.model_validate({**GOOD["claims"][0], "title": "This note argues that markets beat polls often."})
    assert draft.title == "markets beat polls often"
    with pytest.raises(ValidationError, match="complete proposition"):
        ClaimDraft.model_validate({**GOOD["claims"][0], "title": "This note argues that markets"})


def test_grammar_schema_bounds_lists_and_strings() -> None:
    schema = ExtractionAnswer.grammar_schema()
    claim = schema["$defs"]["ClaimDraft"]["properties"]
    assert schema["properties"]["claims"]["maxItems"] == 3
    assert claim["evidence"]["maxItems"] == 4 and claim["evidence"]["items"]["maxLength"] == 200
    assert claim["title"]["maxLength"] == 160
    assert "maxItems" not in ExtractionAnswer.model_json_schema()["properties"]["claims"]


def test_the_longest_answer_the_grammar_allows_fits_max_tokens() -> None:
    from extractor.extraction.answer import WORST_CHARS_PER_TOKEN, answer_model, longest_answer

    for model in (answer_model(None), answer_model(("company", "person"))):
        loose = model.grammar_schema()
        assert longest_answer(loose) > 3072 * WORST_CHARS_PER_TOKEN  # the bounds alone let a looping model run on
        fitted = model.grammar_schema(3072)
        assert longest_answer(fitted) <= 3072 * WORST_CHARS_PER_TOKEN
        assert model.grammar_schema(64_000) == loose  # room enough: the bounds as they are
    fitted = answer_model(None).grammar_schema(3072)
    assert fitted["properties"]["claims"]["maxItems"] == 3  # without entities, the counts stay; strings shrink
    assert fitted["$defs"]["ClaimDraft"]["properties"]["argument"]["maxLength"] < 600
