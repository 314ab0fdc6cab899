"""The reviewer's pure parts: criteria from the prompt, the answer's shape, what a reply means, the accept
policy's territory, mechanical fixes; and a broken reviewer reply on a real branch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from extractor.cli.main import main
from extractor.core.records import BranchReview, ItemReview, Usage, branch_verdict
from extractor.core.settings import Settings, SettingsError, load_settings, unenforceable_budget
from extractor.extraction.prompts import default_prompts_dir
from extractor.review.fixes import fix_file, fix_timeline
from extractor.review.reviewer import (
    ReviewItem,
    ReviewPromptError,
    answer_model,
    comment_body,
    outside_territory,
    parse_criteria,
    refusals,
    to_review,
)
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, completion
from tests.test_review_model import BRANCH, FULLSTACK, REVIEWER, Endpoint, branches, configure

CRITERIA = [
    "specificity", "evidence", "description", "confidence", "duplicates", "contradictions", "value", "links",
    "scope", "universals", "counter-evidence",
]  # fmt: skip


def test_the_default_prompt_lists_the_eleven_criteria_and_a_kb_may_change_them() -> None:
    text = (default_prompts_dir() / "review.md").read_text(encoding="utf-8")
    assert [name for name, _ in parse_criteria(text)] == CRITERIA
    assert parse_criteria("## Criteria\n- sourcing: cites the page\n## Other\n- not: this") == [
        ("sourcing", "cites the page")
    ]
    with pytest.raises(ReviewPromptError, match="no '## Criteria' section"):
        parse_criteria("Review the drafts.")
    # Names as a KB writes them are kept as written; a list line without a name, or a name twice, is refused.
    assert [name for name, _ in parse_criteria(
        "## Criteria\n- Specificity: a\n- évidence: b\n1. scope: c\n- **counter evidence**: d\n"
    )] == ["Specificity", "évidence", "scope", "counter evidence"]  # fmt: skip
    with pytest.raises(ReviewPromptError, match="cannot read the criterion '- quotes are exact'"):
        parse_criteria("## Criteria\n- scope: c\n- quotes are exact\n")
    with pytest.raises(ReviewPromptError, match="'scope' is listed twice"):
        parse_criteria("## Criteria\n- scope: c\n- scope: again\n")


def test_the_answer_names_only_the_items_and_criteria_shown_and_each_item_once() -> None:
    shape = answer_model(["claim-1", "entity-1"], ["evidence", "links"])
    ok = {"items": [{"item": "claim-1", "verdict": "approve", "failed": [], "fixes": []},
                    {"item": "entity-1", "verdict": "reject", "failed": [{"criterion": "links", "reason": "x"}],
                     "fixes": []}], "summary": "s"}  # fmt: skip
    shape.model_validate(ok)
    for broken, why in [
        ({**ok, "items": ok["items"][:1]}, "missing: entity-1"),
        ({**ok, "items": [*ok["items"], ok["items"][0]]}, "given twice: claim-1"),
        ({**ok, "items": [{**ok["items"][0], "item": "claims/x.md"}, ok["items"][1]]}, "claim-1"),
        ({**ok, "items": [ok["items"][0], {**ok["items"][1], "failed": [{"criterion": "tone", "reason": "r"}]}]},
         "evidence"),
    ]:  # fmt: skip
        with pytest.raises(ValidationError, match=why):
            shape.model_validate(broken)


def review_of(verdicts: dict[str, str], reviewer: str = "lead") -> BranchReview:
    return BranchReview(
        branch=BRANCH, commit="c" * 40, source_path="inbox/archive/s.md", reviewer=reviewer,  # type: ignore[arg-type]
        agent="leo", model="m", prompt_hash="h", usage=Usage(),
        items=[ItemReview(path=path, kind="claim", verdict=verdict) for path, verdict in verdicts.items()],  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_reply_maps_to_paths_and_an_approval_that_names_a_failure_counts_as_a_request_for_changes() -> None:
    items = [ReviewItem(ident="claim-1", path="claims/a/x.md", kind="claim", change="new claim", text="t"),
             ReviewItem(ident="entity-1", path="entities/a/e.md", kind="entity", change="new", text="t")]  # fmt: skip
    shape = answer_model(["claim-1", "entity-1"], CRITERIA)
    reply = shape.model_validate({
        "summary": "Fine\u202e but\u200b odd.\nSecond line.",
        "items": [
            {"item": "entity-1", "verdict": "approve", "failed": [], "fixes": ["unlink [[Nowhere]]"]},
            {"item": "claim-1", "verdict": "approve", "failed": [{"criterion": "scope", "reason": "x" * 900}],
             "fixes": []},
        ],
    })  # fmt: skip
    review = to_review(reply, items, reviewer="lead", agent="leo", branch=BRANCH, commit="c" * 40,
                       source_path="s.md", model="m", prompt_hash="h", usage=Usage(), at=1.0)  # fmt: skip
    assert [(i.path, i.verdict) for i in review.items] == [("claims/a/x.md", "request_changes"),
                                                           ("entities/a/e.md", "approve")]  # fmt: skip
    assert len(review.items[0].findings[0].reason) <= 400 and review.summary == "Fine but odd. Second line."
    assert review.verdict == "request_changes"
    body = comment_body([review], ["lead"], [], [])
    assert "REQUEST_CHANGES" in body and "  - suggested fix: ` unlink [[Nowhere]] `" in body
    assert "` Fine but odd. Second line. `" in comment_body([review], ["lead"], [], [])
    ticks = review.model_copy(update={"summary": "a ``` b"})
    assert "```` a ``` b ````" in comment_body([ticks], ["lead"], [], [])  # model text cannot close its span


def test_branch_verdicts_and_the_policy_need_every_reviewer_and_every_item() -> None:
    items = ["claims/a/x.md", "claims/a/y.md"]
    lead = review_of(dict.fromkeys(items, "approve"))
    assert branch_verdict([lead], ["lead"]) == "approved"
    assert branch_verdict([lead], ["lead", "domain"]) == "unreviewed"
    assert branch_verdict([lead, review_of({items[0]: "reject"}, "domain")], ["lead", "domain"]) == "rejected"
    assert refusals([lead], ["lead"], items, [], []) == []
    assert refusals([lead], ["lead", "domain"], items, [], []) == ["no domain review of the branch's tip"]
    partial = review_of({items[0]: "approve"})
    assert refusals([partial], ["lead"], items, [], []) == [f"lead: no verdict on {items[1]}"]
    assert refusals([lead], ["lead"], [], [], []) == ["no claim or entity to review"]


def test_territory_is_the_source_the_agents_domain_folders_and_the_enrichment_folders() -> None:
    settings = Settings(claims_dir="domains", enrich_dirs=["foundations"], agents={"health": "vida"})
    changed = [
        "inbox/archive/s.md", "domains/health/a.md", "entities/health/e.md", "foundations/x/b.md",
        "domains/ai-alignment/c.md", "inbox/archive/other.md", "README.md",
    ]  # fmt: skip
    assert outside_territory(changed, "vida", "inbox/archive/s.md", settings) == [
        "domains/ai-alignment/c.md",
        "inbox/archive/other.md",
        "README.md",
    ]
    # The default agent owns the domains no other agent does.
    assert "domains/ai-alignment/c.md" not in outside_territory(changed, "leo", "inbox/archive/s.md", settings)


def test_mechanical_fixes_touch_links_derivable_fields_and_timeline_bullets_only() -> None:
    claim = (
        "---\ndomain: health\ndescription: d\nconfidence: likely\nsource: s\n"
        "depends_on:\n- '[[Nowhere in frontmatter]]'\n---\n\n# A title that claims something\n\n"
        "Body with [[Known note]] and [[Nowhere|an alias]] and [[gone]].\n"
    )
    fixed, notes = fix_file("claims/health/x.md", claim, "claim", lambda t: t == "Known note", "2026-12-01", "health")
    assert "type: claim" in fixed and ("created: '2026-12-01'" in fixed or "created: 2026-12-01" in fixed)
    assert "[[Known note]]" in fixed and "and an alias and gone." in fixed
    assert "[[Nowhere in frontmatter]]" in fixed  # frontmatter is data, not links to unlink
    assert "confidence: likely" in fixed and len(notes) == 2
    body = "# N\n\n## Timeline\n\n- 2024-3-5 — Founded\n- **2024-06-01**: Raised\n- **2025-01-02** — Fine\n- soon\n"
    fixed_body, count = fix_timeline(body)
    assert count == 2 and "- **2024-03-05** — Founded" in fixed_body and "- **2024-06-01** — Raised" in fixed_body
    assert "- soon" in fixed_body
    same, none = fix_file("claims/health/x.md", fixed, "claim", lambda t: True, "2026-12-01", "health")
    assert same == fixed and none == []


def test_mechanical_fixes_leave_code_sections_aliases_impossible_dates_and_line_endings_alone() -> None:
    body = (
        "# A title that claims something\n\nSee [[Known#Evidence]], [[Known#^block]], `[[template]]` and "
        "[[gone]].\n\n| a | [[Known\\|alias]] | [[nope\\|shown]] |\n\n```\n[[in a fence]]\n```\n"
    )
    claim = "---\ntype: claim\ndomain: health\ncreated: 2026-01-01\n---\n\n" + body
    fixed, notes = fix_file("claims/health/x.md", claim, "claim", lambda t: t == "Known", "2026-12-01", "health")
    assert "[[Known#Evidence]], [[Known#^block]], `[[template]]` and gone." in fixed
    assert "| a | [[Known\\|alias]] | shown |" in fixed and "[[in a fence]]" in fixed
    assert notes == ["claims/health/x.md: unlinked 2 wiki link(s) that resolve to no note"]
    crlf = claim.replace("\n", "\r\n").replace("created: 2026-01-01\r\n", "")
    fixed_crlf, _ = fix_file("claims/health/x.md", crlf, "claim", lambda t: t == "Known", "2026-12-01", "health")
    assert fixed_crlf.count("\n") == fixed_crlf.count("\r\n") and "created: 2026-12-01\r\n" in fixed_crlf
    timeline = "## Timeline\n\n```\n- 2024-1-1 — in a fence\n```\n- 2024-2-31 — no such day\n- 2024-2-3 — fine\n"
    fixed_timeline, count = fix_timeline(timeline)
    assert count == 1 and "- 2024-1-1 — in a fence" in fixed_timeline and "- 2024-2-31 — no such day" in fixed_timeline


def test_review_settings_that_cannot_work_are_refused_at_start(tmp_path: Path) -> None:
    for text, problem in [
        ('commit_mode = "main"\nreview_model = "m"\n', 'needs commit_mode = "branch"'),
        ('auto_accept = "approved"\n', "needs a review_model"),
        ('review_model = "m"\nreview_agents = ["lead", "lead"]\n', "name each reviewer once"),
        ('review_model = "m"\nreview_agents = ["editor"]\n', "review_agents.0"),
        ('review_model = "m"\nreview_base_url = "http://[::1/v1"\n', "review_base_url: not a URL"),
        ('review_model = "m"\nreview_base_url = "ftp://host/v1"\n', "review_base_url: must be an http"),
    ]:
        (tmp_path / "extractor.toml").write_text(text, encoding="utf-8")
        with pytest.raises(SettingsError, match=problem):
            load_settings(tmp_path)


def test_a_broken_reviewer_reply_is_re_asked_then_left_unreviewed_with_the_reason(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from extractor.cli.demo import create_demo_kb

    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    endpoint = Endpoint(fake_llm)
    endpoint.broken = completion('{"items": [{"item": "claims/ai-alignment/evil.md", "verdict": "approve"}]')
    kb = create_demo_kb(tmp_path / "kb")
    configure(kb, 'auto_accept = "approved"\n')
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    out = capsys.readouterr().out
    assert "review: unreviewed" in out and "lead review failed: invalid:" in out
    assert len(endpoint.reviews) == 3  # the request and its two re-asks
    assert branches(kb) == [BRANCH] and "evil" not in git(kb, "ls-tree", "-r", "--name-only", BRANCH)
    assert main(["costs", "--kb", str(kb), "--by", "stage", "--json"]) == 0
    stages = {row["stage"]: row for row in json.loads(capsys.readouterr().out)["stage"]}
    assert stages["review"]["calls"] == 3


def test_a_budget_needs_the_reviewer_model_priced_too(tmp_path: Path) -> None:
    base = 'base_url = "http://127.0.0.1:9/v1"\nbudget_per_day = 1.0\nreview_model = "house-reviewer"\n'
    (tmp_path / "extractor.toml").write_text(base, encoding="utf-8")
    assert "review_model 'house-reviewer' has no known price" in (unenforceable_budget(load_settings(tmp_path)) or "")
    (tmp_path / "extractor.toml").write_text(base + "[prices.house-reviewer]\ninput = 1\noutput = 2\n")
    assert unenforceable_budget(load_settings(tmp_path)) is None


def test_usage_that_is_not_a_count_counts_as_nothing() -> None:
    class Reported:
        prompt_tokens = -5
        completion_tokens = True
        prompt_tokens_details = None

    usage = Usage()
    usage.add(Reported())
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (0, 0, 1)


def test_the_first_review_is_held_to_the_budget_by_its_own_size_and_failures_stop_after_the_attempts(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from extractor.cli.demo import create_demo_kb

    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    endpoint = Endpoint(fake_llm)
    kb = create_demo_kb(tmp_path / "kb")
    prices = f'[prices.{REVIEWER}]\ninput = 10.0\noutput = 30.0\n[prices."gpt-4o-mini"]\ninput = 0.15\noutput = 0.6\n'
    configure(kb, "budget_per_day = 0.005\n" + prices)  # no review yet, but this one would cost about $0.02
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    assert "lead review not made: daily budget $0.01 reached" in capsys.readouterr().out
    assert endpoint.reviews == []

    configure(kb, "max_source_attempts = 2\n" + prices)
    endpoint.broken = completion("not json")
    for _ in range(4):
        assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(endpoint.reviews) == 2 * 3  # two failed reviews of the tip (a request and two re-asks each)
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "show", BRANCH.removeprefix("extract/")]) == 0
    assert "review: unreviewed" in capsys.readouterr().out
