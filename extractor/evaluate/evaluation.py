"""One recorded run through the pipeline, committing nothing, and what came out of it compared with what
people accepted.

Live, the configured model drafts the source (re-asks included). In replay the accepted claims are the
model's answer, so the gates alone are judged and no model is called: a sound gate keeps what people
accepted and flags what they missed.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable

from pydantic import BaseModel, Field

from extractor.core.records import Usage
from extractor.core.settings import Settings
from extractor.evaluate.matching import match_claims
from extractor.evaluate.runs import RecordedRun
from extractor.extraction.answer import ExtractionAnswer, salvage_answer
from extractor.extraction.extract import ExtractionResult, JudgedClaim, judge_answer, prepare_request
from extractor.extraction.strategy import extract_source
from extractor.kb.entities import entity_path, find_entity
from extractor.kb.index import KBIndex
from extractor.llm.client import LLMError, StructuredClient, StructuredReply

Judge = Callable[[tuple[str, str], tuple[str, str]], bool]


class SourceReport(BaseModel):
    """One run: claims recovered and missed, each gate's verdicts, evidence, tokens, cost and time."""

    run: str
    accepted: int
    drafted: int = 0
    committed: int = 0
    recovered: int = 0
    unmatched: list[str] = Field(default_factory=list, description="committed drafts with no accepted counterpart")
    missed: list[str] = Field(default_factory=list, description="accepted claims no committed draft matches")
    dropped_by_gate: dict[str, int] = Field(default_factory=dict, description="drafts dropped, by failing gate")
    flagged_items: int = 0
    removed_items: int = 0
    evidence_items: int = 0
    evidence_found: int = 0
    derived: int = 0
    near: int = 0
    first_prompt_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    reasks: int = 0
    reask_wanted: bool = False
    cost: float | None = None
    seconds: float = 0.0
    error: str | None = None
    judged: list[JudgedClaim] = Field(default_factory=list)
    titles_by_stem: dict[str, str] = Field(default_factory=dict)
    accepted_entities: int = 0
    entities_created: int = 0
    entities_updated: int = 0
    entities_recovered: int = 0  # accepted new notes drafted at their path, or as an update of the note the KB has
    missed_entities: list[str] = Field(default_factory=list, description="accepted new entity notes not recovered")


def run_index(full: KBIndex, run: RecordedRun) -> KBIndex:
    """The KB as the run found it: without the claims and entity notes it added (a later snapshot holds them)."""
    own = {claim.stem.casefold() for claim in run.accepted} | {claim.title.casefold() for claim in run.accepted}
    kept = [c for c in full.claims if c.stem.casefold() not in own and c.title.casefold() not in own]
    added = {entity.path for entity in run.entities}
    entities = [e for e in full.entities if e.path not in added]
    return KBIndex(full.root, kept, full.files, entities=entities, entity_schema=full.entity_schema)


def replay_answer(run: RecordedRun) -> StructuredReply[ExtractionAnswer]:
    """The accepted claims as a model's answer; claims that fail the answer's schema are dropped and named."""
    data = {"key_facts": [], "claims": [c.answer for c in run.accepted], "enrichments": [],
            "entities": [e.answer for e in run.entities], "entity_updates": run.entity_updates,
            "null_result_reason": None if run.accepted or run.entities or run.entity_updates else "nothing accepted",
            "notes": ""}  # fmt: skip
    raw = json.dumps(data)
    salvaged: list[str] = []
    try:
        value = ExtractionAnswer.model_validate(data)
    except ValueError:
        rescued = salvage_answer(data)
        empty = {**data, "claims": [], "entities": [], "entity_updates": [], "null_result_reason": "nothing valid"}
        value, salvaged = rescued if rescued is not None else (ExtractionAnswer.model_validate(empty), [])
    return StructuredReply[ExtractionAnswer](
        value=value, usage=Usage(), attempts=0, retries=0, reasks=0, raw_replies=[raw], salvaged=salvaged
    )


def evaluate_run(
    run: RecordedRun,
    settings: Settings,
    index: KBIndex,
    llm: StructuredClient | None,
    judge: Judge | None = None,
) -> SourceReport:
    """Draft (or, without ``llm``, replay) one run's source and compare the outcome with the accepted claims."""
    started = time.monotonic()
    source = run.source.model_copy(update={"domain": run.source.domain or settings.domains[0]})
    path = f"{settings.inbox_dir}/{run.slug}.md"
    report = SourceReport(run=run.name, accepted=len(run.accepted), accepted_entities=len(run.entities),
                          titles_by_stem={claim.stem: claim.title for claim in run.accepted})  # fmt: skip
    try:
        if llm is None:
            request = prepare_request(source, path, settings, index)
            result = judge_answer(source, request, replay_answer(run), settings, index, llm=None)
        else:
            result = extract_source(source, path, settings, llm, index)
    except LLMError as exc:
        report.error = str(exc)
        report.seconds = time.monotonic() - started
        return report
    scored = score_entities(score_result(report, result, run, judge), result, run, settings.entities_dir)
    scored.seconds = time.monotonic() - started
    return scored


def score_result(report: SourceReport, result: ExtractionResult, run: RecordedRun, judge: Judge | None) -> SourceReport:
    committed = [(claim.draft.title, claim.draft.description) for claim in result.claims]
    accepted = [(claim.title, claim.description) for claim in run.accepted]
    pairs = match_claims(committed, accepted, judge)
    matched_drafts = {pair.draft for pair in pairs}
    matched_accepted = {pair.accepted for pair in pairs}
    dropped: Counter[str] = Counter()
    for judged in result.judged:
        for gate in {failure.gate for failure in judged.failures}:
            dropped[gate] += 1
    anchors = [anchor for claim in result.claims for anchor in claim.anchors]
    grounded = [flag for claim in result.claims for flag in claim.grounded]
    usage = result.usage
    return report.model_copy(
        update={
            "drafted": result.drafted_claims,
            "committed": len(result.claims),
            "recovered": len(pairs),
            "unmatched": [title for i, (title, _) in enumerate(committed) if i not in matched_drafts],
            "missed": [title for j, (title, _) in enumerate(accepted) if j not in matched_accepted],
            "dropped_by_gate": dict(dropped),
            "flagged_items": sum(flag.verdict == "unverified" for claim in result.claims for flag in claim.flags),
            "removed_items": sum(flag.verdict == "removed" for claim in result.claims for flag in claim.flags),
            "evidence_items": len(anchors),
            "evidence_found": sum(claim.found_items() for claim in result.claims),
            "derived": sum(flag.verdict == "derived" for flag in grounded),
            "near": sum(flag.verdict == "near" for flag in grounded),
            "first_prompt_tokens": result.calls[0].prompt_tokens if result.calls else 0,
            "prompt_tokens": usage.prompt_tokens,
            "cached_tokens": usage.cached_tokens,
            "completion_tokens": usage.completion_tokens,
            "requests": usage.requests,
            "reasks": result.reasks,
            "reask_wanted": result.reask_wanted,
            "cost": usage.cost,
            "judged": result.judged,
        }
    )


def score_entities(report: SourceReport, result: ExtractionResult, run: RecordedRun, entities_dir: str) -> SourceReport:
    """Accepted new entity notes recovered: drafted at the path people accepted, or (the KB having the object
    already) as an update of that note."""
    domain = result.domain
    created = {entity_path(entities_dir, domain, entity.slug) for entity in result.entities.created}
    updated = [update.target for update in result.entities.updated]
    missed = [
        entity.path
        for entity in run.entities
        if entity.path not in created and find_entity(entity.name, updated) is None
    ]
    return report.model_copy(
        update={
            "entities_created": len(result.entities.created),
            "entities_updated": len(result.entities.updated),
            "entities_recovered": len(run.entities) - len(missed),
            "missed_entities": missed,
        }
    )


class Totals(BaseModel):
    """A whole evaluation in one row: what a comparison of two configurations sets side by side."""

    sources: int
    failed_sources: int
    accepted: int
    drafted: int
    committed: int
    recovered: int
    recovered_share: float
    unmatched: int
    dropped_by_gate: dict[str, int]
    flagged_items: int
    removed_items: int
    evidence_items: int
    evidence_found_share: float
    derived: int
    near: int
    median_first_prompt_tokens: float
    median_prompt_tokens: float
    cached_tokens: int
    completion_tokens: int
    reasks: int
    reasked_share: float  # sources re-asked (live) or that would be (replay)
    cost: float | None
    seconds: float
    accepted_entities: int = 0
    entities_created: int = 0
    entities_updated: int = 0
    entities_recovered: int = 0
    entities_recovered_share: float = 0.0


def totals(reports: list[SourceReport], replay: bool) -> Totals:
    done = [r for r in reports if r.error is None]
    accepted = sum(r.accepted for r in reports)
    items = sum(r.evidence_items for r in done)
    dropped: Counter[str] = Counter()
    for report in done:
        dropped.update(report.dropped_by_gate)
    costs = [r.cost for r in done if r.cost is not None]
    reasked = sum((r.reask_wanted if replay else r.reasks > 0) for r in done)
    return Totals(
        sources=len(reports),
        failed_sources=len(reports) - len(done),
        accepted=accepted,
        drafted=sum(r.drafted for r in done),
        committed=sum(r.committed for r in done),
        recovered=sum(r.recovered for r in done),
        recovered_share=sum(r.recovered for r in done) / accepted if accepted else 0.0,
        unmatched=sum(len(r.unmatched) for r in done),
        dropped_by_gate=dict(dropped.most_common()),
        flagged_items=sum(r.flagged_items for r in done),
        removed_items=sum(r.removed_items for r in done),
        evidence_items=items,
        evidence_found_share=sum(r.evidence_found for r in done) / items if items else 0.0,
        derived=sum(r.derived for r in done),
        near=sum(r.near for r in done),
        median_first_prompt_tokens=statistics.median([r.first_prompt_tokens for r in done]) if done else 0.0,
        median_prompt_tokens=statistics.median([r.prompt_tokens for r in done]) if done else 0.0,
        cached_tokens=sum(r.cached_tokens for r in done),
        completion_tokens=sum(r.completion_tokens for r in done),
        reasks=sum(r.reasks for r in done),
        reasked_share=reasked / len(done) if done else 0.0,
        cost=sum(costs) if costs else None,
        seconds=sum(r.seconds for r in reports),
        accepted_entities=sum(r.accepted_entities for r in reports),
        entities_created=sum(r.entities_created for r in done),
        entities_updated=sum(r.entities_updated for r in done),
        entities_recovered=sum(r.entities_recovered for r in done),
        entities_recovered_share=(
            sum(r.entities_recovered for r in done) / sum(r.accepted_entities for r in reports)
            if any(r.accepted_entities for r in reports)
            else 0.0
        ),
    )
