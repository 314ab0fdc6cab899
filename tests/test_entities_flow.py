"""Entities end to end: a real git KB, real HTTP to a scripted server, ``extractor extract`` and ``review``.

The source is a governance proposal; the KB already tracks its parent organisation (with a handle) and a
person in another domain. What people need: new notes at the schema's path with its frontmatter, updates
that add a bullet in date order and change nothing else, one note per real-world object, an entity-only
source counted as processed, ``--force`` taking back exactly this source's notes and bullets.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.kb.yamlio import split_document
from tests.conftest import demo_kb_with, git
from tests.fakeopenai import FakeOpenAI, answer

SLUG = "2024-02-13-futardio-proposal-otc-trade-with-ben-hawkins"
SOURCE = f"inbox/archive/{SLUG}.md"
SOURCE_TEXT = """---
type: source
title: "Futardio: Engage in $50,000 OTC Trade with Ben Hawkins?"
author: "futard.io"
url: "https://www.futard.io/proposal/US8j6iLf9Gk"
date: 2024-02-13
domain: internet-finance
format: data
status: unprocessed
---

## Proposal Details
- Project: MetaDAO
- Proposal: Engage in $50,000 OTC Trade with Ben Hawkins?
- Status: Failed
- Created: 2024-02-13
- Completed: February 18, 2024

Ben Hawkins proposes to mint 1,500 META tokens in exchange for $50,000 USDC, sent to MetaDAO's treasury,
valuing META at $33.33 per token. The proposal failed after the three-day market.
"""
METADAO = "entities/internet-finance/metadao.md"
METADAO_TEXT = """---
type: entity
entity_type: company
name: "MetaDAO"
domain: internet-finance
handles: ["@MetaDAOProject"]
status: active
tracked_by: rio
created: 2026-03-01
---

# MetaDAO

The futarchy DAO on Solana; its own *governance* runs on conditional markets.

## Timeline
- **2023-11-18** — Proposal to develop an LST vote market
- **2024-03-03** — Burned 99.3% of the META supply

## Relationship to KB
- [[futardio]] — its launch platform
"""
HANSON = "entities/ai-alignment/robin-hanson.md"
HANSON_TEXT = """---
type: entity
entity_type: person
name: "Robin Hanson"
domain: ai-alignment
status: active
tracked_by: theseus
created: 2026-03-01
---

# Robin Hanson

Economist who proposed futarchy.
"""
MARKET_NAME = "MetaDAO: Engage in $50,000 OTC Trade with Ben Hawkins"
MARKET = "entities/internet-finance/metadao-otc-trade-ben-hawkins.md"
PERSON = "entities/internet-finance/ben-hawkins.md"
FAILED = {"date": "2024-02-18", "text": "OTC trade with Ben Hawkins failed: 1,500 META for $50,000 USDC rejected"}


def market(**changes: object) -> dict:
    drafted = {
        "name": MARKET_NAME,
        "short_name": "otc trade ben hawkins",
        "entity_type": "decision_market",
        "status": "failed",
        "summary": "Mint 1,500 META for $50,000 USDC to the treasury, at $33.33 per META.",
        "fields": [
            "parent_entity: [[MetaDAO]]",
            "platform: futardio",
            "proposer: Ben Hawkins",
            "proposal_date: 2024-02-13",
            "resolution_date: 2024-02-18",
            "category: treasury",
            "founded: 2019",
        ],  # fmt: skip
        "timeline": [{"date": "2024-02-13", "text": "Proposed: 1,500 META for $50,000 USDC"}, FAILED],
        "related": [],
    }
    return {**drafted, **changes}


def person(name: str = "Ben Hawkins", **changes: object) -> dict:
    drafted = {
        "name": name,
        "short_name": "",
        "entity_type": "person",
        "status": "active",
        "summary": "Proposed an OTC trade with MetaDAO.",
        "fields": [],
        "timeline": [{"date": "2024-02-13", "text": "Proposed minting 1,500 META for $50,000 USDC"}],
        "related": [],
    }
    return {**drafted, **changes}


def entity_answer(entities: list[dict], updates: list[dict] | None = None, claims: list | None = None) -> dict:
    return {"key_facts": [], "claims": claims or [], "enrichments": [], "entities": entities,
            "entity_updates": updates or [], "null_result_reason": None, "notes": "Entities only."}  # fmt: skip


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI) -> Path:
    files = {SOURCE: SOURCE_TEXT, METADAO: METADAO_TEXT, HANSON: HANSON_TEXT,
             "extractor.toml": 'commit_mode = "main"\n'}  # fmt: skip
    return demo_kb_with(tmp_path / "kb", monkeypatch, fake_llm.base_url, files, "track MetaDAO")


def changed_in_head(repo: Path) -> dict[str, str]:
    out = git(repo, "show", "--name-status", "--format=", "HEAD")
    return {line.split("\t", 1)[1]: line.split("\t", 1)[0] for line in out.splitlines() if line}


def source_meta(kb: Path) -> dict:
    return split_document((kb / SOURCE).read_text(encoding="utf-8"))[0]


def test_an_entity_only_source_writes_new_notes_and_an_update_and_is_processed(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    update = {"name": "metadao", "status": None, "timeline": [FAILED, FAILED]}  # the same event twice
    fake_llm.push(answer(entity_answer([market(), person()], [update])))
    assert main(["extract", str(kb / SOURCE)]) == 0
    out = capsys.readouterr().out
    assert "processed, 0 claim(s), 0 enrichment(s), 2 entity note(s) new, 1 updated" in out
    assert changed_in_head(kb) == {MARKET: "A", PERSON: "A", METADAO: "M", SOURCE: "M"}

    meta = source_meta(kb)
    assert meta["status"] == "processed"
    assert meta["entities_created"] == [MARKET, PERSON]
    assert meta["entities_updated"] == [METADAO]
    assert 'new "Ben Hawkins"' in meta["extraction_notes"]

    # The update: one bullet, in date order, every other byte as it was.
    bullet = "- **2024-02-18** — OTC trade with Ben Hawkins failed: 1,500 META for $50,000 USDC rejected"
    expected = METADAO_TEXT.replace("- **2024-03-03**", f"{bullet}\n- **2024-03-03**")
    assert (kb / METADAO).read_text(encoding="utf-8") == expected

    today = datetime.date.today().isoformat()
    metadata, body = split_document((kb / MARKET).read_text(encoding="utf-8"))
    assert metadata == {
        "type": "entity",
        "entity_type": "decision_market",
        "name": MARKET_NAME,
        "domain": "internet-finance",
        "status": "failed",
        "tracked_by": "rio",
        "created": today,
        "parent_entity": "[[metadao]]",  # resolved to the note the KB has, by its file name
        "platform": "futardio",
        "proposer": "Ben Hawkins",
        "proposal_date": "2024-02-13",
        "resolution_date": "2024-02-18",
        "category": "treasury",
    }  # "founded" is no field of a decision market: left out
    assert body == (
        f"# {MARKET_NAME}\n\nMint 1,500 META for $50,000 USDC to the treasury, at $33.33 per META.\n\n"
        "## Timeline\n\n- **2024-02-13** — Proposed: 1,500 META for $50,000 USDC\n"
        f"{bullet.replace('- **2024-02-18** — ', '- **2024-02-18** — ')}\n\n"
        "## Relationship to KB\n\n- [[metadao]]"
    )
    assert git(kb, "log", "-1", "--format=%(trailers:key=Pentagon-Agent,valueonly)").strip() == "Rio <HEADLESS>"

    # Provenance: the new note is the extraction's; the person's note owes its new bullet to this source.
    assert main(["provenance", str(kb / MARKET), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert (made["created_by_extraction"], made["agent"], made["source"], made["edits"]) == (
        True, "Rio <HEADLESS>", SOURCE, [])  # fmt: skip
    assert main(["provenance", str(kb / METADAO), "--json"]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert traced["created_by_extraction"] is False and traced["agent"] == "Test User <test@example.com>"
    [edit] = traced["edits"]
    assert (edit["agent"], edit["source"], edit["added"]) == ("Rio <HEADLESS>", SOURCE, [bullet])

    # Nothing new from the same source a second time: the events are there already.
    git(kb, "checkout", "-q", "HEAD~1", "--", SOURCE)
    git(kb, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qam", "source again")
    fake_llm.push(answer(entity_answer([], [update])))
    assert main(["extract", str(kb / SOURCE)]) == 0
    assert (kb / METADAO).read_text(encoding="utf-8") == expected
    assert source_meta(kb)["status"] == "null-result"


@pytest.mark.parametrize("spelling", ["metadao", "Meta-DAO", "META DAO", "@MetaDAOProject", "MetaDAOProject"])
def test_a_draft_of_an_entity_the_kb_has_becomes_an_update(kb: Path, fake_llm: FakeOpenAI, spelling: str) -> None:
    drafted = {
        "name": spelling,
        "short_name": "",
        "entity_type": "company",
        "status": "active",
        "summary": "The futarchy DAO.",
        "fields": [],
        "timeline": [FAILED],
        "related": [],
    }
    fake_llm.push(answer(entity_answer([drafted])))
    assert main(["extract", str(kb / SOURCE)]) == 0
    assert changed_in_head(kb) == {METADAO: "M", SOURCE: "M"}  # no second MetaDAO note
    meta = source_meta(kb)
    assert meta["entities_created"] == [] and meta["entities_updated"] == [METADAO]
    assert f'update "{spelling}" (drafted as new, but the KB has it: {METADAO})' in meta["extraction_notes"]
    assert "- **2024-02-18** — OTC trade" in (kb / METADAO).read_text(encoding="utf-8")


def test_a_draft_from_another_domain_updates_the_note_and_adds_the_secondary_domain(
    kb: Path, fake_llm: FakeOpenAI
) -> None:
    hanson = person("Robin Hanson", timeline=[{"date": "2024-02-13", "text": "Cited in the OTC trade debate"}])
    fake_llm.push(answer(entity_answer([hanson])))
    assert main(["extract", str(kb / SOURCE)]) == 0
    metadata, body = split_document((kb / HANSON).read_text(encoding="utf-8"))
    assert metadata["domain"] == "ai-alignment" and metadata["secondary_domains"] == ["internet-finance"]
    assert body.endswith("## Timeline\n\n- **2024-02-13** — Cited in the OTC trade debate")
    assert not list((kb / "entities" / "internet-finance").glob("robin-hanson*"))


def test_two_drafts_of_one_object_merge_and_bad_drafts_are_dropped_with_a_reason(
    kb: Path, fake_llm: FakeOpenAI
) -> None:
    second = person("Ben  Hawkins.", timeline=[FAILED])  # a stray full stop: the same person
    invented = {"date": "2024-02-20", "text": "Ben Hawkins proposed a second trade"}  # no such date in the source
    generic = person("treasury managers", entity_type="person")  # a generic noun, not a name
    sentence = person("The DAO decided to reject the trade after three days", entity_type="company")
    unknown_type = person("Hawkins Capital", entity_type="vehicle")  # a space type: not for internet finance
    drafted = answer(entity_answer([person(timeline=[*person()["timeline"], invented]), second, generic, sentence,
                                    unknown_type]))  # fmt: skip
    fake_llm.push(drafted, drafted, drafted)  # "vehicle" fails the schema's enum: asked again twice, then salvaged
    assert main(["extract", str(kb / SOURCE)]) == 0
    assert changed_in_head(kb) == {PERSON: "A", SOURCE: "M"}
    body = split_document((kb / PERSON).read_text(encoding="utf-8"))[1]
    assert "- **2024-02-13** — Proposed minting" in body and "- **2024-02-18** — OTC trade" in body
    assert "2024-02-20" not in body
    notes = source_meta(kb)["extraction_notes"]
    assert "merged \"Ben Hawkins.\" (the same object as the draft 'Ben Hawkins')" in notes
    assert "the date 2024-02-20 is not one the source states" in notes
    assert 'dropped entity "treasury managers" (name: no capital letter or figure' in notes
    assert 'dropped entity "The DAO decided to reject the trade after three days" (name: 6 words in lower case' in notes
    assert "invalid entity 5 (entity_type: Input should be 'company'" in notes  # the schema's enum: salvaged out


def test_force_takes_back_exactly_this_sources_notes_and_bullets(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.push(answer(entity_answer([market(), person()], [{"name": "MetaDAO", "status": None,
                                                               "timeline": [FAILED]}])))  # fmt: skip
    assert main(["extract", str(kb / SOURCE)]) == 0
    # A person adds their own bullet to MetaDAO and edits the person note the extraction wrote.
    mine = "- **2024-02-20** — Hand-written: the treasury reviewed OTC policy"
    text = (kb / METADAO).read_text(encoding="utf-8").replace("- **2024-03-03**", f"{mine}\n- **2024-03-03**")
    (kb / METADAO).write_text(text, encoding="utf-8")
    git(kb, "-c", "user.name=Test User", "-c", "user.email=test@example.com", "commit", "-qam", "my bullet")
    fake_llm.push(answer(entity_answer([person()])))  # this time only the person
    assert main(["extract", str(kb / SOURCE), "--force"]) == 0
    assert not (kb / MARKET).exists()
    assert (kb / PERSON).is_file()
    metadao = (kb / METADAO).read_text(encoding="utf-8")
    assert metadao == METADAO_TEXT.replace("- **2024-03-03**", f"{mine}\n- **2024-03-03**")
    meta = source_meta(kb)
    assert meta["entities_created"] == [PERSON] and meta["entities_updated"] == []


def test_review_shows_each_entity_with_its_timeline_and_the_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    from extractor.core.settings import load_settings
    from extractor.review.page import gather, render_page

    kb = demo_kb_with(tmp_path / "kb", monkeypatch, fake_llm.base_url, {SOURCE: SOURCE_TEXT, METADAO: METADAO_TEXT})
    update = {"name": "MetaDAO", "status": None, "timeline": [FAILED]}
    fake_llm.push(answer(entity_answer([market()], [update])))
    assert main(["extract", str(kb / SOURCE)]) == 0  # branch mode: drafts await review on extract/<slug>
    capsys.readouterr()

    assert main(["review", "--kb", str(kb), "show", SLUG, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["review"]["entities_created"] == [MARKET] and shown["review"]["entities_updated"] == [METADAO]
    by_path = {entity["path"]: entity for entity in shown["entities"]}
    new, updated = by_path[MARKET], by_path[METADAO]
    assert (new["change"], new["name"], new["entity_type"], new["status"]) == (
        "new", MARKET_NAME, "decision_market", "failed")  # fmt: skip
    assert (
        new["added"]
        == new["timeline"]
        == [
            "- **2024-02-13** — Proposed: 1,500 META for $50,000 USDC",
            "- **2024-02-18** — OTC trade with Ben Hawkins failed: 1,500 META for $50,000 USDC rejected",
        ]
    )
    assert new["decision"] == f'new "{MARKET_NAME}": no entity note of that name, alias, handle or file name'
    assert updated["change"] == "update" and updated["added"] == [new["timeline"][1]]
    assert updated["timeline"] == [
        "- **2023-11-18** — Proposal to develop an LST vote market", new["timeline"][1],
        "- **2024-03-03** — Burned 99.3% of the META supply"]  # fmt: skip

    assert main(["review", "--kb", str(kb), "show", SLUG]) == 0
    text = capsys.readouterr().out
    assert f"==> {MARKET} (new decision_market)" in text and f"==> {METADAO} (update: 1 new bullet(s))" in text
    assert "+- **2024-02-18** — OTC trade with Ben Hawkins failed" in text  # the update as a diff

    assert main(["review", "--kb", str(kb), "list"]) == 0
    assert "0 claim(s), 0 enrichment(s), 2 entity note(s)" in capsys.readouterr().out

    page = gather(kb, SLUG, load_settings(kb))
    [first, second] = page.entities
    assert (first.change.path, second.change.path) == (MARKET, METADAO)
    assert second.timeline[1] == (new["timeline"][1].removeprefix("- "), True)
    assert second.timeline[0][1] is False and second.diff is not None
    document = render_page(page)
    assert '<h2 id="entities">Entities (2)</h2>' in document
    assert '<li class="added">**2024-02-18** — OTC trade with Ben Hawkins failed' in document
    assert '<li class="kept">**2023-11-18** — Proposal to develop an LST vote market</li>' in document


def test_with_entities_off_the_request_has_no_entity_part(tmp_path: Path) -> None:
    from extractor.core.settings import Settings
    from extractor.extraction.extract import prepare_request
    from extractor.kb.index import KBIndex
    from extractor.kb.sources import parse_source
    from extractor.llm.client import response_format

    (tmp_path / METADAO).parent.mkdir(parents=True)
    (tmp_path / METADAO).write_text(METADAO_TEXT, encoding="utf-8")
    index = KBIndex.load(tmp_path)
    source = parse_source(Path(SOURCE), SOURCE_TEXT)
    on = prepare_request(source, SOURCE, Settings(), index)
    off = prepare_request(source, SOURCE, Settings(entities=False), index)
    assert "Entity types and their fields:" in on.messages[0]["content"]
    assert "- decision_market: a governance proposal" in on.messages[0]["content"]
    assert "- MetaDAO: company" in on.messages[1]["content"]  # the note the source names is offered
    assert "entities" in json.dumps(response_format(Settings().structured_mode, on.answer_type))
    assert "entit" not in off.messages[0]["content"] + off.messages[1]["content"]
    assert "entities" not in json.dumps(response_format(Settings().structured_mode, off.answer_type))
    assert off.prompt_hash != on.prompt_hash
