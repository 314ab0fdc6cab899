"""The reviewer model's side of a review, as pure functions: the criteria, the prompt, the answer's shape,
what the answer means, and the accept policy.

The model names items only by the numbers it was shown (``claim-1``,
``entity-2``); the answer's schema makes those numbers and the criteria's
names enums, and the pipeline maps them back to paths. Nothing the model says
becomes a path, a verdict it did not give, or a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from extractor.core.records import BranchReview, Finding, ItemReview, Usage, Verdict, branch_verdict
from extractor.core.settings import Settings
from extractor.core.text import one_line
from extractor.extraction.prompts import Candidate, fill_template, format_candidates, persona
from extractor.kb.layout import candidate_folders

REVIEW_PROMPT = "review.md"
REVIEW_USER_PROMPT = "review_user.md"
SOURCE_CHARS = 24_000  # of the source shown to the reviewer; a longer one is cut, and the prompt says so
ITEM_CHARS = 8_000
REASON_CHARS = 400
_LIST_LINE = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_CRITERION = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?:\*\*|`)?(\w[\w \-]{0,40}?)(?:\*\*|`)?\s*:\s*(\S.*)$")


class ReviewPromptError(ValueError):
    """``review.md`` lists no criteria."""


class ReviewItem(BaseModel):
    """One thing of the branch the reviewer judges: a new or enriched claim, or an entity note."""

    ident: str  # claim-1, entity-1: all the model ever names
    path: str
    kind: Literal["claim", "entity"]
    change: str  # new claim | enrichment of an existing claim | new entity note | entity note update
    text: str  # the file (new) or the diff (changed), as on the branch
    gates: list[str] = Field(default_factory=list)  # gates the claim passed, when the extraction recorded them
    flags: list[str] = Field(default_factory=list)  # the gates' flags: items for a reviewer to check


def parse_criteria(prompt: str) -> list[tuple[str, str]]:
    """The ``- name: what it asks`` lines (or ``1. name: ...``) of the prompt's ``## Criteria`` section, in
    order. A list line that cannot be read, or a name given twice, is an error: a criterion left out of the
    answer's schema while the prompt still asks for it would be silently unanswerable."""
    section = re.split(r"^##\s+Criteria\s*$", prompt, maxsplit=1, flags=re.MULTILINE | re.IGNORECASE)
    if len(section) < 2:
        raise ReviewPromptError(f"{REVIEW_PROMPT} has no '## Criteria' section")
    criteria: list[tuple[str, str]] = []
    for line in section[1].splitlines():
        if line.startswith("#"):
            break
        if not _LIST_LINE.match(line):
            continue
        found = _CRITERION.match(line)
        if found is None:
            problem = f"cannot read the criterion {line.strip()!r} (write '- name: what it asks')"
            raise ReviewPromptError(f"{REVIEW_PROMPT}: {problem}")
        name = " ".join(found.group(1).split())
        if any(name == known for known, _ in criteria):
            raise ReviewPromptError(f"{REVIEW_PROMPT}: the criterion {name!r} is listed twice")
        criteria.append((name, found.group(2).strip()))
    if not criteria:
        raise ReviewPromptError(f"{REVIEW_PROMPT}: its '## Criteria' section lists no '- name: ...' line")
    return criteria


class _Answer(BaseModel):
    """The base of each branch's answer model: one verdict per item, every item once."""

    expected: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _every_item_once(self) -> _Answer:
        named = [item.item for item in getattr(self, "items", [])]
        missing = [ident for ident in self.expected if ident not in named]
        repeated = sorted({ident for ident in named if named.count(ident) > 1})
        if missing or repeated:
            raise ValueError(
                "give exactly one verdict for each item"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; given twice: {', '.join(repeated)}" if repeated else "")
            )
        return self


def answer_model(idents: list[str], criteria: list[str]) -> type[BaseModel]:
    """The answer's shape for one branch: its item numbers and the criteria's names as enums."""
    item_ids: Any = Literal[tuple(idents)]
    names: Any = Literal[tuple(criteria)]
    verdicts: Any = Literal["approve", "request_changes", "reject"]
    finding = create_model("ReviewFinding", criterion=(names, ...), reason=(str, ...))
    verdict = create_model(
        "ReviewVerdict",
        item=(item_ids, ...),
        verdict=(verdicts, ...),
        failed=(list[finding], Field(description="each criterion the item fails, with a short reason")),
        fixes=(list[str], Field(description="mechanical fixes only: unresolved links, missing fields")),
    )
    model = create_model(
        "ReviewAnswer",
        __base__=_Answer,
        items=(list[verdict], ...),
        summary=(str, Field(description="one or two sentences for the person who decides")),
    )
    model.expected = tuple(idents)
    return model


def build_review_messages(
    directory: Path,
    reviewer: Literal["lead", "domain"],
    settings: Settings,
    *,
    branch: str,
    agent: str,
    source_path: str,
    source_title: str,
    source_body: str,
    related: list[Candidate],
    items: list[ReviewItem],
) -> list[dict[str, str]]:
    """System and user messages of one reviewer's request: its persona and the criteria, then the branch."""
    persona_agent = reviewer_agent(reviewer, agent, settings)
    system = fill_template(directory, REVIEW_PROMPT, {"persona": persona(directory, persona_agent)})
    body = source_body.strip()
    if len(body) > SOURCE_CHARS:
        body = body[:SOURCE_CHARS] + f"\n\n(the source is cut here: {SOURCE_CHARS} of {len(body)} characters shown)"
    user = fill_template(
        directory,
        REVIEW_USER_PROMPT,
        {
            "branch": branch,
            "agent": agent,
            "source_file": source_path,
            "title": source_title,
            "source": f"<source>\n{body}\n</source>",
            "related": format_candidates(related),
            "drafts": "\n\n".join(format_item(item) for item in items),
        },
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def reviewer_agent(reviewer: Literal["lead", "domain"], agent: str, settings: Settings) -> str:
    """The agent whose persona reviews: the KB's lead agent (``default_agent``), or the drafts' domain agent."""
    return agent if reviewer == "domain" else settings.default_agent


def format_item(item: ReviewItem) -> str:
    text = item.text if len(item.text) <= ITEM_CHARS else item.text[:ITEM_CHARS] + "\n(cut here)"
    lines = [f"## {item.ident}: {item.change}", f"File: {item.path}"]
    if item.gates:
        lines.append(f"Gates passed: {', '.join(item.gates)}")
    lines += [f"Flagged by the gates: {flag}" for flag in item.flags]
    return "\n".join([*lines, "```", text.rstrip(), "```"])


def to_review(
    answer: BaseModel,
    items: list[ReviewItem],
    *,
    reviewer: Literal["lead", "domain"],
    agent: str,
    branch: str,
    commit: str,
    source_path: str,
    model: str,
    prompt_hash: str,
    usage: Usage,
    at: float,
) -> BranchReview:
    """The stored review: item numbers mapped to paths, reasons cut to one line, and an ``approve`` that names
    a failed criterion read as ``request_changes`` (the stricter reading of a reply that contradicts itself)."""
    by_ident = {item.ident: item for item in items}
    reviewed: list[ItemReview] = []
    for given in getattr(answer, "items", []):
        item = by_ident[given.item]
        findings = [Finding(criterion=f.criterion, reason=_short(f.reason)) for f in given.failed]
        verdict: Verdict = given.verdict
        if verdict == "approve" and findings:
            verdict = "request_changes"
        fixes = [fix for fix in (_short(text) for text in given.fixes) if fix]
        reviewed.append(ItemReview(path=item.path, kind=item.kind, verdict=verdict, findings=findings, fixes=fixes))
    order = {item.path: number for number, item in enumerate(items)}
    reviewed.sort(key=lambda review: order[review.path])
    return BranchReview(
        branch=branch, commit=commit, source_path=source_path, reviewer=reviewer, agent=agent, model=model,
        prompt_hash=prompt_hash, items=reviewed, summary=_short(str(getattr(answer, "summary", ""))), usage=usage,
        at=at,
    )  # fmt: skip


def _short(text: str) -> str:
    """Model text as one printable line of bounded length: control and invisible characters dropped."""
    printable = "".join(char for char in text if char.isprintable() or char.isspace())
    line = one_line(printable)
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1].rstrip() + "…"


# --- the accept policy ------------------------------------------------------------------------


def territory(agent: str, source_path: str, settings: Settings) -> tuple[set[str], list[PurePosixPath]]:
    """The agent's own files: the source, and folders (its domains' claim and entity folders, the enrichment
    folders). A domain's claim folder is any it may have (:func:`candidate_folders`): the branch is judged
    without the KB's tree at hand."""
    folders = [PurePosixPath(folder) for folder in settings.enrich_dirs]
    for domain in settings.domains:
        if settings.agent_for(domain) == agent:
            folders += [PurePosixPath(folder) for folder in candidate_folders(domain, settings)]
            folders.append(PurePosixPath(settings.entities_dir, domain))
    return {source_path}, list(dict.fromkeys(folders))


def outside_territory(paths: list[str], agent: str, source_path: str, settings: Settings) -> list[str]:
    """The changed paths that are not the agent's to change."""
    files, folders = territory(agent, source_path, settings)
    inside = [
        path in files or any(PurePosixPath(path).is_relative_to(folder) for folder in folders) for path in paths
    ]  # fmt: skip
    return [path for path, ok in zip(paths, inside, strict=True) if not ok]


def refusals(
    reviews: list[BranchReview],
    reviewers: Sequence[str],
    items: list[str],
    flagged: list[str],
    outside: list[str],
    deleted: Sequence[str] = (),
    others: Sequence[str] = (),
) -> list[str]:
    """Why a branch may not be accepted by policy; none: every item approved by every reviewer, nothing
    flagged, nothing outside the agent's territory, and nothing changed that no reviewer was shown (a deleted
    file, any change that is not a claim, an entity note or the source). A branch with no item to review is
    left to a person."""
    reasons: list[str] = []
    if not items:
        reasons.append("no claim or entity to review")
    by_reviewer: dict[str, BranchReview] = {review.reviewer: review for review in reviews}
    for name in reviewers:
        review = by_reviewer.get(name)
        if review is None:
            reasons.append(f"no {name} review of the branch's tip")
            continue
        verdicts = {item.path: item.verdict for item in review.items}
        reasons += [
            f"{name}: {verdicts.get(path) or 'no verdict'} on {path}"
            for path in items
            if verdicts.get(path) != "approve"
        ]  # fmt: skip
    reasons += [f"flagged by the gates: {item}" for item in flagged]
    reasons += [f"outside the agent's territory: {path}" for path in outside]
    reasons += [f"deleted, and not reviewed: {path}" for path in deleted]
    reasons += [f"changed, and not reviewed: {path}" for path in others]
    return reasons


# --- the pull-request comment -----------------------------------------------------------------

VERDICT_WORDS = {"approve": "APPROVE", "request_changes": "REQUEST_CHANGES", "reject": "REJECT"}


def comment_body(reviews: list[BranchReview], reviewers: Sequence[str], fixes: list[str], refused: list[str]) -> str:
    """The reviews as a pull-request comment: each reviewer's verdict with each item's failed criteria and
    suggested fixes, the mechanical fixes the pipeline made, and why the branch was not accepted by policy.
    Model text is already one line each; it is set in code spans so no markup of its own renders."""
    verdict = branch_verdict(reviews, reviewers)
    data = {"commit": reviews[0].commit if reviews else None, "verdict": verdict,
            "reviewers": {review.reviewer: review.verdict for review in reviews}}  # fmt: skip
    lines = [f"<!-- extractor-review-data {_json(data)} -->", f"## Review: {verdict}", ""]
    for review in reviews:
        lines.append(f"### {review.reviewer} ({review.agent}, {review.model}): {VERDICT_WORDS[review.verdict]}")
        if review.summary:
            lines.append(f"> {_code(review.summary)}")
        for item in review.items:
            lines.append(f"- `{item.path}`: {VERDICT_WORDS[item.verdict]}")
            lines += [f"  - {finding.criterion}: {_code(finding.reason)}" for finding in item.findings]
            lines += [f"  - suggested fix: {_code(fix)}" for fix in item.fixes]
        lines.append("")
    if fixes:
        lines += ["### Mechanical fixes made by the pipeline", *[f"- {_code(note)}" for note in fixes], ""]
    if refused:
        lines += ["### Not accepted automatically", *[f"- {_code(reason)}" for reason in refused], ""]
    lines.append(f"Commit reviewed: `{reviews[0].commit if reviews else '-'}`")
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    """Text in a code span long enough that no backtick run inside it closes the span."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True).replace("--", "\\u002d\\u002d")
