from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from extractor.core.settings import StructuredMode
from extractor.extraction.answer import ExtractionAnswer
from extractor.extraction.extract import candidates_for
from extractor.extraction.prompts import PromptError, build_messages, default_prompts_dir, prompt_hash
from extractor.kb.index import KBIndex
from extractor.kb.sources import load_source, parse_source
from extractor.llm.client import response_format

SOURCE = parse_source(
    Path("inbox/archive/s.md"),
    "---\ntype: source\ntitle: A paper\nauthor: Someone\ndate: 2025-12-00\ndomain: ai-alignment\n---\n"
    "The body says $100 and {braces}. See [[AGI may emerge as a patchwork of coordinating sub-AGI agents "
    "rather than a single monolithic system]].\n",
)


def test_messages_carry_persona_source_and_no_schema_unless_prompt_mode() -> None:
    messages = build_messages(default_prompts_dir(), "theseus", SOURCE, "inbox/archive/s.md", [], None)
    system, user = messages[0]["content"], messages[1]["content"]
    assert system.startswith("You are Theseus")
    assert "JSON Schema" not in system
    assert "The body says $100 and {braces}." in user
    assert "Date: 2025-12-00" in user
    with_schema = build_messages(default_prompts_dir(), "zed", SOURCE, "s.md", [], ExtractionAnswer.model_json_schema())
    assert with_schema[0]["content"].startswith("You are Zed")  # default persona
    assert '"null_result_reason"' in with_schema[0]["content"]


def test_the_hash_follows_the_text_sent(tmp_path: Path) -> None:
    fmt = response_format(StructuredMode.JSON_SCHEMA, ExtractionAnswer)
    base = build_messages(default_prompts_dir(), "rio", SOURCE, "s.md", [], None)
    assert prompt_hash(base, fmt) == prompt_hash(
        build_messages(default_prompts_dir(), "rio", SOURCE, "s.md", [], None), fmt
    )
    assert prompt_hash(base, fmt) != prompt_hash(base, response_format(StructuredMode.PROMPT, ExtractionAnswer))
    custom = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), custom)
    (custom / "system.md").write_text((custom / "system.md").read_text() + "\nBe brief.\n")
    assert prompt_hash(build_messages(custom, "rio", SOURCE, "s.md", [], None), fmt) != prompt_hash(base, fmt)


def test_unknown_placeholders_are_reported(tmp_path: Path) -> None:
    custom = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), custom)
    (custom / "user.md").write_text("$nope\n")
    with pytest.raises(PromptError, match="user.md"):
        build_messages(custom, "rio", SOURCE, "s.md", [], None)


def test_candidates_are_the_sources_links_then_bm25_matches(corpus: Path) -> None:
    index = KBIndex.load(corpus / "kb")
    found = candidates_for(SOURCE, index, k=4)
    assert found[0].title.startswith("AGI may emerge as a patchwork")  # linked from the source
    assert len(found) == 4 and len({c.path for c in found}) == 4
    sahoo = load_source(corpus / "inbox/archive/2025-11-00-sahoo-rlhf-alignment-trilemma.md")
    unlinked = sahoo.model_copy(update={"body": sahoo.body.replace("[[", "").replace("]]", "")})
    titles = [c.title for c in candidates_for(unlinked, index, k=5)]
    assert any(t.startswith("RLHF and DPO both fail at preference diversity") for t in titles)  # found by BM25
