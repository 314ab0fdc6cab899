"""Output a reviewer trusts: clean titles and names, claims in the folders the KB uses, links that resolve,
and ``validate`` messages that name the real problem."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.core.settings import Settings, load_settings
from extractor.core.text import one_line
from extractor.extraction.answer import ClaimDraft, EntityDraft
from extractor.kb.claims import parse_claim
from extractor.kb.layout import domain_folder, domain_folders, domain_of
from extractor.kb.names import SLUG_MAX, slug_for, unique_name
from extractor.kb.yamlio import split_document
from extractor.review.fixes import folder_domain
from extractor.review.lint import lint
from extractor.review.reviewer import outside_territory
from tests.conftest import commit_all, git, init_repo
from tests.fakeopenai import FakeOpenAI, answer
from tests.test_extract_e2e import ARROW, RLHF, SOURCE, SOURCE_REL, TITLE_1

# Bidi embeddings, overrides and isolates, zero-width space and joiners, word joiner, byte order mark, soft
# hyphen, a tag character: all invisible, all Unicode category Cf.
INVISIBLE = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\xad"
INVISIBLE_TAG = "\U000e0041"


def hidden_in(text: str) -> str:
    """``text`` with invisible characters at its ends and inside its words."""
    words = text.split(" ")
    words[1] = words[1][:2] + "\u200b" + words[1][2:]  # a zero-width space inside a word
    words[2] = "\u202e" + words[2] + "\u202c"  # a right-to-left override around a word
    return "\ufeff\u2066" + " ".join(words) + INVISIBLE_TAG + "\u2069"


def no_format_characters(text: str) -> bool:
    return not any(unicodedata.category(char) == "Cf" for char in text)


def draft(title: str, related: list[str] | None = None) -> dict:
    return {
        "evidence": ["10^3-10^4 samples are collected", "Omega(2^{d_context}) operations are required"],
        "argument": "The trilemma is proven\u202e with complexity theory.",
        "limitations": ["A position paper at a workshop."],
        "title": title,
        "description": "Complexity theory reaches the impossibility that social choice theory reached.",
        "confidence": "likely",
        "secondary_domains": [],
        "related": related or [],
    }


# --- 1. invisible characters ----------------------------------------------------------------------------


def test_invisible_format_characters_are_stripped_from_titles_and_names() -> None:
    title = "Hospitals that publish prices see lower costs within three years"
    claim = ClaimDraft.model_validate(draft(hidden_in(title)))
    assert claim.title == title
    assert no_format_characters(claim.argument)
    entity = EntityDraft.model_validate({
        "name": hidden_in("Acme Health Systems Inc"), "short_name": "\u202eAcme", "entity_type": "company",
        "status": "active", "summary": "A hospital group.", "fields": [], "timeline": [], "related": [],
    })  # fmt: skip
    assert (entity.name, entity.short_name) == ("Acme Health Systems Inc", "Acme")
    for char in INVISIBLE + INVISIBLE_TAG:
        assert one_line(f"a{char}b c{char} {char}d") == "ab c d", repr(char)


def test_a_joiner_stays_only_where_a_script_or_an_emoji_sequence_needs_it() -> None:
    # Persian "mikhaham" is spelt with a zero-width non-joiner; a family emoji is a joined sequence.
    assert one_line("می\u200cخواهم") == "می\u200cخواهم"
    assert one_line("👩\u200d💻 writes code") == "👩\u200d💻 writes code"
    assert one_line("pay\u200dpal \u200dstarts and ends\u200d") == "paypal starts and ends"


# --- 2. file names ---------------------------------------------------------------------------------------


def test_file_names_are_cut_at_a_word_boundary_even_when_numbered() -> None:
    words = ["coordination"] * 12  # 12 * 13 - 1 = 155 characters as a slug
    slug = slug_for(" ".join(words))
    assert len(slug) <= SLUG_MAX and slug.endswith("coordination") and not slug.endswith("-")
    # A stem one character short of the limit: numbered, it is cut at its last word boundary, not past the limit.
    stem = ("a" * 9 + "-") * 11 + "b" * 9
    assert len(stem) == SLUG_MAX - 1
    taken = {f"{stem}.md"}
    numbered = unique_name(stem, taken)
    assert numbered == ("a" * 9 + "-") * 11 + "2.md"
    assert len(numbered.removesuffix(".md")) <= SLUG_MAX
    assert unique_name(stem, taken) == ("a" * 9 + "-") * 11 + "3.md"  # still unique
    assert slug_for("x" * 500) == "x" * SLUG_MAX  # no boundary at all: a hard cut
    assert unique_name("x" * SLUG_MAX, {("x" * SLUG_MAX + ".md")}) == "x" * (SLUG_MAX - 2) + "-2.md"


# --- 3. the domain → folder map -----------------------------------------------------------------------------

CORPUS_LAYOUT = {"claims_dir": "domains", "enrich_dirs": ["core", "foundations"]}


def test_each_domain_is_kept_where_the_kb_keeps_it(corpus_kb: Path) -> None:
    settings = Settings(**CORPUS_LAYOUT, domains=["health", "collective-intelligence", "robotics"])
    folders = domain_folders(corpus_kb, settings)
    assert folders["collective-intelligence"] == "foundations/collective-intelligence"
    assert folders["living-agents"] == "core/living-agents"  # found in the KB though the settings do not name it
    assert folders["health"] == "domains/health"
    assert folders["robotics"] == "domains/robotics"  # no folder yet: claims_dir/<domain>
    assert list(folders)[:3] == ["health", "collective-intelligence", "robotics"]
    mapped = Settings(**CORPUS_LAYOUT, domain_dirs={"health": "core/health"})
    assert domain_folder(corpus_kb, mapped, "health") == "core/health"  # the setting wins over what exists

    assert domain_of("foundations/collective-intelligence/x.md", settings) == "collective-intelligence"
    assert domain_of("core/health/x.md", mapped) == "health"
    assert domain_of("core/x.md", settings) is None
    assert folder_domain("foundations/collective-intelligence/x.md", settings) == "collective-intelligence"
    assert folder_domain("entities/health/acme.md", settings) == "health"


def test_a_domain_kept_elsewhere_is_its_agents_territory() -> None:
    settings = Settings(claims_dir="domains", agents={"health": "vida"}, domain_dirs={"health": "domains/care/health"})
    changed = ["domains/care/health/a.md", "domains/health/b.md", "entities/health/e.md"]
    assert outside_territory(changed, "vida", "inbox/archive/s.md", settings) == ["domains/health/b.md"]


TITLE = TITLE_1


@pytest.fixture
def kb(corpus_kb: Path, corpus: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The corpus KB with a source of the collective-intelligence domain, which it keeps under foundations/."""
    text = (corpus / "inbox" / "archive" / SOURCE).read_text(encoding="utf-8")
    (corpus_kb / SOURCE_REL).write_text(
        text.replace("domain: ai-alignment", "domain: collective-intelligence"), encoding="utf-8"
    )
    (corpus_kb / "extractor.toml").write_text(
        'claims_dir = "domains"\nenrich_dirs = ["core", "foundations"]\nmodel = "scripted-model"\n'
        'commit_mode = "main"\ncontext_tokens = 32768\ntimeout = 2\nretry_initial_wait = 0.01\n',
        encoding="utf-8",
    )
    commit_all(corpus_kb, "add source")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    return corpus_kb


def test_claims_land_in_the_domains_folder_with_clean_headings_and_aliased_links_resolved(
    kb: Path, fake_llm: FakeOpenAI
) -> None:
    related = [f"[[{RLHF}|the single-reward note]]", f"[[{ARROW}#Evidence]]", "[[a claim that does not exist]]"]
    reply = {"key_facts": [], "claims": [draft(hidden_in(TITLE), related)], "enrichments": [],
             "null_result_reason": None, "notes": ""}  # fmt: skip
    fake_llm.push(answer(reply))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0

    path = kb / "foundations" / "collective-intelligence" / f"{slug_for(TITLE)}.md"
    assert path.is_file() and not (kb / "domains" / "collective-intelligence").exists()
    text = path.read_text(encoding="utf-8")
    assert no_format_characters(text)
    document = parse_claim(text)
    assert document.title == TITLE and f"\n# {TITLE}\n" in text
    assert document.relevant_notes == [f"[[{RLHF}]]", f"[[{ARROW}]]"]  # the KB's form: the note's name alone
    meta, _ = split_document((kb / SOURCE_REL).read_text(encoding="utf-8"))
    assert meta["claims_extracted"] == [TITLE]
    assert "a claim that does not exist" in meta["extraction_notes"]
    assert RLHF not in meta["extraction_notes"] and ARROW not in meta["extraction_notes"]

    # A forced re-extraction replaces the claim it wrote there, in that folder.
    other = "Preference collapse and sycophancy are computational necessities of single-reward RLHF"
    fake_llm.push(answer({**reply, "claims": [draft(other)]}))
    assert main(["extract", str(kb / SOURCE_REL), "--force"]) == 0
    assert not path.exists()
    assert (kb / "foundations" / "collective-intelligence" / f"{slug_for(other)}.md").is_file()
    assert git(kb, "status", "--porcelain") == ""


# --- 5 and 6. validate ----------------------------------------------------------------------------------------

NOTE_B = "Price transparency rules shift hospital bargaining toward insurers"


def claim_text(title: str, body: str, front: str = "") -> str:
    return (
        "---\ntype: claim\ndomain: health\nconfidence: likely\nsource: Health Affairs study, 2024\n"
        "created: 2026-01-05\n"
        f"description: Insurers renegotiated contracts within two years of the federal disclosure rule.\n{front}"
        f"---\n\n# {title}\n\n{body}\n"
    )


@pytest.fixture
def small_kb(tmp_path: Path) -> Path:
    kb = init_repo(tmp_path / "kb")
    (kb / "inbox" / "archive").mkdir(parents=True)
    (kb / "claims" / "health").mkdir(parents=True)
    (kb / "extractor.toml").write_text('claims_dir = "claims"\n', encoding="utf-8")
    (kb / "claims" / "health" / f"{NOTE_B}.md").write_text(claim_text(NOTE_B, "Body."), encoding="utf-8")
    return kb


def test_an_italic_source_line_is_body_text_not_a_yaml_alias(small_kb: Path) -> None:
    title = "Hospitals that publish prices see lower costs within three years"
    folder = small_kb / "claims" / "health"
    # Body text with italic lines, in a well-formed claim: nothing to report.
    (folder / "fine.md").write_text(
        claim_text(title, "*Source: Health Affairs*, p. 4.\n\n*Source: [[x]] | Added: 2026-01-01*"), encoding="utf-8"
    )
    # The closing '---' missing: the italic line is read as YAML.
    unclosed = claim_text(title, "Body text.\n*Source: Health Affairs, p. 4*").replace("\n---\n\n#", "\n\n#")
    (folder / "unclosed.md").write_text(unclosed + "\n---\n\nRelevant Notes:\n- [[x]]\n", encoding="utf-8")
    # A value that starts with '*' in a real frontmatter line.
    (folder / "starred.md").write_text(
        claim_text(title, "Body.").replace("source: Health", "source: *Health"), encoding="utf-8"
    )
    # An enrichment block written into the frontmatter: one problem, said once.
    block = "\n### Additional Evidence (confirm)\n*Source: [[2026-01-01-report]] | Added: 2026-01-02*\n\nMore.\n"
    (folder / "enriched.md").write_text(claim_text(title, "Body.", front=block), encoding="utf-8")

    problems = {p.path.rsplit("/", 1)[1]: p.message for p in lint(small_kb, load_settings(small_kb)).problems
                if p.check == "frontmatter"}  # fmt: skip
    assert "fine.md" not in problems
    assert problems["unclosed.md"] == (
        "line 12 is Markdown, not YAML (*Source: Health Affairs, p. 4*): the frontmatter has no closing '---' above it"
    )
    assert problems["starred.md"].startswith("line 5: a value starting with '*' reads as a YAML alias")
    assert problems["enriched.md"] == (
        "an enrichment block sits inside the frontmatter (line 9): move it below the closing '---'"
    )
    assert not any("aliases (*name)" in message for message in problems.values())


def links_kb(small_kb: Path) -> Path:
    body = (
        f"Since [[{NOTE_B}#Body]] and [[{NOTE_B}|the transparency note]], costs fell; "
        "see [[no such note]] and [[another missing one|a label]]."
    )
    title = "Hospitals that publish prices see lower costs within three years"
    (small_kb / "claims" / "health" / f"{title}.md").write_text(claim_text(title, body), encoding="utf-8")
    commit_all(small_kb)
    return small_kb


def test_fix_links_reports_what_it_fixed_and_what_remains(small_kb: Path) -> None:
    kb = links_kb(small_kb)
    settings = load_settings(kb)
    before = lint(kb, settings)
    assert [(p.check, p.message) for p in before.problems] == [
        ("links", "2 unresolved: [[no such note]], [[another missing one]]")  # a section or alias link resolves
    ]
    fixed = lint(kb, settings, fix_links=True)
    assert fixed.problems == []
    rel = "claims/health/Hospitals that publish prices see lower costs within three years.md"
    assert fixed.unlinked == {rel: ["no such note", "another missing one"]}
    assert fixed.links_unlinked == {rel: 2}
    text = (kb / rel).read_text(encoding="utf-8")
    assert f"[[{NOTE_B}#Body]] and [[{NOTE_B}|the transparency note]]" in text
    assert "see no such note and a label." in text
    assert lint(kb, settings).problems == []


def test_validate_fix_links_exits_0_when_only_links_were_wrong(
    small_kb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command prints what lint returns; once the links are fixed, nothing remains: exit 0."""
    kb = links_kb(small_kb)
    assert main(["validate", "--kb", str(kb), "--fix-links"]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out.splitlines()[-1]
    assert main(["validate", "--kb", str(kb)]) == 0


def test_the_corpus_validates_without_yaml_false_alarms(tmp_path: Path, corpus: Path) -> None:
    kb = init_repo(tmp_path / "kb")
    shutil.copytree(corpus / "kb", kb / "kb")
    report = lint(kb, load_settings(kb), [kb / "kb"])
    messages = [p.message for p in report.problems if p.check == "frontmatter"]
    assert not any("aliases (*name)" in message for message in messages)
    assert len([m for m in messages if m.startswith("an enrichment block sits inside the frontmatter")]) == 1
