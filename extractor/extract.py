"""One source in, one :class:`ExtractionResult` out: no writes to the KB.

The model's answer is untrusted data. Here it is reconciled with the KB:
links and enrichment targets must name claims that exist, and a drafted claim
that repeats an existing title is dropped. What is dropped is said in notes.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from extractor.answer import ClaimDraft, EnrichmentDraft, ExtractionAnswer, salvage_answer
from extractor.claims import wiki_links
from extractor.config import Settings
from extractor.kb import ClaimRef, KBIndex
from extractor.llm import (
    LLMError,
    StructuredClient,
    StructuredReply,
    Usage,
    response_format,
    schema_for_prompt,
)
from extractor.prompts import Candidate, build_messages, default_prompts_dir, prompt_hash
from extractor.sources import Source
from extractor.state import CallRecord
from extractor.validate import GateReport, check_claims, unlink_unresolved

MAX_CANDIDATES = 10
MAX_LINKED = 5
QUERY_CHARS = 6000


class ResolvedEnrichment(BaseModel):
    draft: EnrichmentDraft
    target: ClaimRef


class ResolvedClaim(BaseModel):
    draft: ClaimDraft
    related: list[ClaimRef] = Field(default_factory=list)


class ExtractionResult(BaseModel):
    """Everything the writer needs, computed without touching the KB."""

    source_path: str
    source_slug: str
    domain: str
    agent: str
    model: str
    prompt_hash: str
    answer: ExtractionAnswer
    claims: list[ResolvedClaim]
    enrichments: list[ResolvedEnrichment]
    dropped: list[str] = Field(default_factory=list)
    drafted_claims: int = 0
    usage: Usage
    attempts: int
    retries: int
    reasks: int
    raw_replies: list[str] = Field(default_factory=list)
    calls: list[CallRecord] = Field(default_factory=list)


def candidates_for(source: Source, index: KBIndex, k: int = MAX_CANDIDATES) -> list[ClaimRef]:
    """Existing claims to offer the model: the ones the source links to, then the BM25 best matches."""
    found: dict[str, ClaimRef] = {}
    for name in wiki_links(source.body):
        ref = index.resolve(name)
        if ref is not None:
            found.setdefault(ref.path, ref)
    linked = list(found.values())[:MAX_LINKED]
    query = f"{source.title}\n{source.body[:QUERY_CHARS]}"
    ranked = [ref for ref in index.related(query, k) if ref.path not in {r.path for r in linked}]
    return (linked + ranked)[: max(k, len(linked))]


def previous_drafts(source: Source, index: KBIndex, claims_dir: str) -> set[str]:
    """Paths of the claims an earlier extraction of this source wrote (replaced by ``--force``)."""
    titles = source.metadata.get("claims_extracted") or []
    if not isinstance(titles, list):
        titles = [titles]
    paths = set()
    for title in titles:
        ref = index.resolve(str(title))
        if ref is not None and PurePosixPath(ref.path).is_relative_to(claims_dir):
            paths.add(ref.path)
    return paths


def unlink_in_drafts(drafts: list[ClaimDraft], index: KBIndex) -> tuple[list[ClaimDraft], int]:
    """Wiki links in a draft's text that resolve to nothing lose their brackets; counted exactly."""
    total = 0
    cleaned = []
    for draft in drafts:

        def fix(text: str) -> str:
            nonlocal total
            text, count = unlink_unresolved(text, index)
            total += count
            return text

        cleaned.append(
            draft.model_copy(
                update={
                    "argument": fix(draft.argument),
                    "evidence": [fix(item) for item in draft.evidence],
                    "limitations": [fix(item) for item in draft.limitations],
                }
            )
        )
    return cleaned, total


def reconcile(
    answer: ExtractionAnswer,
    index: KBIndex,
    enrichable: list[str],
    replaced: set[str] | None = None,
) -> tuple[list[ResolvedClaim], list[ResolvedEnrichment], list[str]]:
    """Keep what names real claims.

    ``enrichable`` lists the folders we may edit; ``replaced`` holds claims that
    this extraction deletes, which therefore neither count as duplicates nor
    can be linked to or enriched.
    """
    replaced = replaced or set()

    def resolve(name: str) -> ClaimRef | None:
        ref = index.resolve(name)
        return None if ref is None or ref.path in replaced else ref

    claims: list[ResolvedClaim] = []
    enrichments: list[ResolvedEnrichment] = []
    dropped: list[str] = []
    seen_titles: set[str] = set()
    for draft in answer.claims:
        key = draft.title.casefold()
        if key in seen_titles:
            dropped.append(f"claim repeated in the answer: {draft.title}")
            continue
        if resolve(draft.title) is not None:
            dropped.append(f"claim already in the KB: {draft.title}")
            continue
        seen_titles.add(key)
        related: dict[str, ClaimRef] = {}
        for name in draft.related:
            ref = resolve(name)
            if ref is None:
                dropped.append(f"link to a claim that does not exist: {name}")
            else:
                related.setdefault(ref.path, ref)
        claims.append(ResolvedClaim(draft=draft, related=list(related.values())))
    enriched: set[str] = set()
    for enrichment in answer.enrichments:
        target = resolve(enrichment.target)
        if target is None:
            dropped.append(f"enrichment of a claim that does not exist: {enrichment.target}")
        elif not any(PurePosixPath(target.path).is_relative_to(folder) for folder in enrichable):
            dropped.append(f"enrichment of a claim outside the writable folders: {target.title}")
        elif target.path in enriched:
            dropped.append(f"second enrichment of one claim: {target.title}")
        else:
            enriched.add(target.path)
            enrichments.append(ResolvedEnrichment(draft=enrichment, target=target))
    return claims, enrichments, dropped


class PreparedRequest(BaseModel):
    """What is sent to the model for one source, and what judging its answer needs."""

    source_path: str
    agent: str
    messages: list[dict[str, str]]
    prompt_hash: str
    replaced: set[str] = Field(default_factory=set)  # earlier drafts a forced re-extraction replaces


def prepare_request(
    source: Source, source_path: str, settings: Settings, index: KBIndex, replace_previous: bool = False
) -> PreparedRequest:
    """The messages for one source: its agent's prompt, the source, the KB claims it may relate to."""
    agent = settings.agent_for(source.domain)
    directory = Path(settings.prompts_dir) if settings.prompts_dir else default_prompts_dir()
    candidates = [
        Candidate(title=ref.title, description=ref.description)
        for ref in candidates_for(source, index, settings.retrieval_k)
    ]
    messages = build_messages(
        directory,
        agent,
        source,
        source_path,
        candidates,
        schema_for_prompt(settings.structured_mode, ExtractionAnswer),
    )
    return PreparedRequest(
        source_path=source_path,
        agent=agent,
        messages=messages,
        prompt_hash=prompt_hash(messages, response_format(settings.structured_mode, ExtractionAnswer)),
        replaced=previous_drafts(source, index, settings.claims_dir) if replace_previous else set(),
    )


def extract_source(
    source: Source,
    source_path: str,
    settings: Settings,
    llm: StructuredClient,
    index: KBIndex,
    replace_previous: bool = False,
) -> ExtractionResult:
    """Ask the model about one source and reconcile its answer with the KB."""
    request = prepare_request(source, source_path, settings, index, replace_previous)
    reply = llm.ask(request.messages, ExtractionAnswer, salvage=salvage_answer)
    return judge_answer(source, request, reply, settings, index, llm)


def judge_answer(
    source: Source,
    request: PreparedRequest,
    reply: StructuredReply[ExtractionAnswer],
    settings: Settings,
    index: KBIndex,
    llm: StructuredClient | None,
) -> ExtractionResult:
    """The gates, one re-ask with their messages (when ``llm`` is given), and reconciliation with the KB.

    Batch results come without a client: what fails the gates there is dropped.
    """
    usage, calls, reasks = reply.usage.model_copy(), list(reply.calls), reply.reasks
    dropped = list(reply.salvaged)
    answer = reply.value
    source_text = source.text  # frontmatter too: dates, authors and titles ground figures
    domain = source.domain or ""
    replaced = request.replaced

    def gates(drafts: list[ClaimDraft]) -> GateReport:
        return check_claims(drafts, source_text, domain, settings.domains, index, replaced)

    report = gates(answer.claims)
    if report.failures and settings.gate_reasks > 0 and llm is not None:
        follow_up = [
            *request.messages,
            {"role": "assistant", "content": reply.raw_replies[-1]},
            {"role": "user", "content": report.feedback(answer.claims)},
        ]
        try:
            second = llm.ask(follow_up, ExtractionAnswer, salvage=salvage_answer)
        except LLMError as exc:
            usage.merge(exc.usage)
            calls += exc.calls
            dropped.append(f"re-ask after the gates failed ({exc.kind}); kept the first answer")
        else:
            usage.merge(second.usage)
            calls += second.calls
            reasks += 1 + second.reasks
            dropped += second.salvaged
            answer, report = second.value, gates(second.value.claims)
    for position, problems in sorted(report.failures.items()):
        reasons = "; ".join(f"{p.gate}: {p.message}" for p in problems)
        dropped.append(f'dropped claim "{answer.claims[position].title}" ({reasons})')
    kept = [draft for position, draft in enumerate(answer.claims) if position not in report.failures]
    kept, unlinked = unlink_in_drafts(kept, index)
    if unlinked:
        dropped.append(f"unlinked {unlinked} wiki link(s) that resolve to no note")
    drafted = len(answer.claims)
    reason = answer.null_result_reason or (None if kept or answer.enrichments else "No claim passed the checks.")
    answer = answer.model_copy(update={"claims": kept, "null_result_reason": reason})
    claims, enrichments, reconciled = reconcile(answer, index, settings.writable_claim_dirs, replaced)
    dropped += reconciled
    return ExtractionResult(
        source_path=request.source_path,
        source_slug=source.slug,
        domain=source.domain or "",
        agent=request.agent,
        model=settings.model,
        prompt_hash=request.prompt_hash,
        answer=answer,
        claims=claims,
        enrichments=enrichments,
        dropped=dropped,
        drafted_claims=drafted,
        usage=usage,
        attempts=usage.requests,
        retries=reply.retries,
        reasks=reasks,
        raw_replies=reply.raw_replies,
        calls=calls,
    )
