"""One source in, one :class:`ExtractionResult` out: no writes to the KB.

The model's answer is untrusted data. Here it is reconciled with the KB:
links and enrichment targets must name claims that exist, and a drafted claim
that repeats an existing title is dropped. What is dropped is said in notes.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from extractor.core.records import Anchor, CallRecord, Flag, Usage
from extractor.core.settings import Settings
from extractor.extraction.anchoring import anchor_claims
from extractor.extraction.answer import (
    ClaimDraft,
    EnrichmentDraft,
    ExtractionAnswer,
    answer_model,
    plain_answer,
    salvage_answer,
)
from extractor.extraction.chunking import Chunk, merge_answers, split_body
from extractor.extraction.entity_drafts import EntityOutcome, judge_entities
from extractor.extraction.gates import ClaimGrounding, GateFailure, GateReport, check_claims, unlink_unresolved
from extractor.extraction.grounding import SourceFacts, grounding_text
from extractor.extraction.prompts import (
    Candidate,
    build_messages,
    default_prompts_dir,
    format_entity_types,
    part_note,
    prompt_hash,
)
from extractor.extraction.prose import is_debris, prose_or, shown, vocabulary
from extractor.kb.claims import wiki_links
from extractor.kb.entities import EntityRef, mentions
from extractor.kb.index import ClaimRef, KBIndex
from extractor.kb.sources import Source
from extractor.llm.client import LLMError, StructuredClient, StructuredReply, response_format, schema_for_prompt
from extractor.llm.contextsize import fits, part_chars

MAX_CANDIDATES = 10
# Kinds of LLMError that asking again later would not fix: a part failing so is skipped, and said so.
UNUSABLE = frozenset({"invalid", "length", "refusal"})
MAX_LINKED = 5
QUERY_CHARS = 6000
MAX_NAMED_ENTITIES = 8  # entities the source names, most named first
MAX_RELATED_ENTITIES = 3  # and the best BM25 matches beyond those
# How each note of a claim that was not written starts (an extraction's ``dropped``, the source's extraction_notes).
DROPPED_CLAIM = ("dropped claim", "claim already in the KB", "claim repeated", "no claim could be made")


class ResolvedEnrichment(BaseModel):
    draft: EnrichmentDraft
    target: ClaimRef


class ResolvedClaim(BaseModel):
    draft: ClaimDraft
    related: list[ClaimRef] = Field(default_factory=list)
    anchors: list[Anchor] = Field(default_factory=list, description="each evidence item's place in the source body")
    flags: list[Flag] = Field(default_factory=list, description="unverified items kept, or removed, for the reviewer")
    grounded: list[Flag] = Field(default_factory=list, description="derived figures and near quotations")

    def found_items(self) -> int:
        """Evidence items found in the source: anchored, and with no part flagged as not in the source."""
        flagged = {flag.where for flag in self.flags if flag.verdict == "unverified"}
        return sum(a.method != "paraphrase" and f"evidence[{a.item}]" not in flagged for a in self.anchors)


class JudgedClaim(BaseModel):
    """What the gates said of one drafted claim (kept or not): what evaluation and the labels are scored on."""

    title: str
    failures: list[GateFailure]  # hard failures: the claim was dropped
    flags: list[Flag]
    grounded: list[Flag]


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
    judged: list[JudgedClaim] = Field(default_factory=list, description="the gates' verdicts on every draft")
    reask_wanted: bool = Field(default=False, description="the first answer had claims a re-ask could fix")
    entities: EntityOutcome = Field(default_factory=EntityOutcome, description="entity notes to write or update")
    parts: int = Field(default=1, description="how many parts of a long source were asked about")
    part_notes: list[str] = Field(default_factory=list, description="what reading in parts skipped or combined")


def candidates_for(
    source: Source, index: KBIndex, k: int = MAX_CANDIDATES, links_from: str | None = None
) -> list[ClaimRef]:
    """Existing claims to offer the model: the ones the source links to (in ``links_from``, by default its
    body), then the BM25 best matches for its title and text."""
    found: dict[str, ClaimRef] = {}
    for name in wiki_links(source.body if links_from is None else links_from):
        ref = index.resolve(name)
        if ref is not None:
            found.setdefault(ref.path, ref)
    linked = list(found.values())[:MAX_LINKED]
    query = f"{source.title}\n{source.body[:QUERY_CHARS]}"
    ranked = [ref for ref in index.related(query, k) if ref.path not in {r.path for r in linked}]
    return (linked + ranked)[: max(k, len(linked))]


def entity_candidates(source: Source, index: KBIndex, entities_dir: str) -> list[EntityRef]:
    """Entity notes to offer the model for updates: those the source names (by name, alias, handle or file
    name), most named first, then the best BM25 matches for its title and text."""
    under = f"{entities_dir.rstrip('/')}/"
    known = [ref for ref in index.entities if ref.path.startswith(under)]
    named = [ref for ref, _ in mentions(f"{source.title}\n{source.body}", known)][:MAX_NAMED_ENTITIES]
    query = f"{source.title}\n{source.body[:QUERY_CHARS]}"
    paths = {ref.path for ref in named}
    ranked = [ref for ref in index.related_entities(query, MAX_RELATED_ENTITIES * 2, under) if ref.path not in paths]
    return named + ranked[:MAX_RELATED_ENTITIES]


def entity_types_for(index: KBIndex, domain: str | None) -> tuple[str, ...]:
    return tuple(index.entity_schema.types_for(domain))


def previous_drafts(source: Source, index: KBIndex, claims_dirs: list[str]) -> set[str]:
    """Paths of the claims and entity notes an earlier extraction of this source wrote (replaced by ``--force``);
    claims only in ``claims_dirs`` (a domain's folder may be in any of them)."""
    titles = source.metadata.get("claims_extracted") or []
    if not isinstance(titles, list):
        titles = [titles]
    paths = set()
    for title in titles:
        ref = index.resolve(str(title))
        if ref is not None and any(PurePosixPath(ref.path).is_relative_to(folder) for folder in claims_dirs):
            paths.add(ref.path)
    created = source.metadata.get("entities_created") or []
    known = {ref.path for ref in index.entities}
    return paths | {str(path) for path in (created if isinstance(created, list) else [created]) if str(path) in known}


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
            dropped.append(f"claim repeated in the answer: {shown(draft.title)}")
            continue
        if resolve(draft.title) is not None:
            dropped.append(f"claim already in the KB: {shown(draft.title)}")
            continue
        seen_titles.add(key)
        related: dict[str, ClaimRef] = {}
        for name in draft.related:
            ref = resolve(name)
            if ref is None:
                dropped.append(f"link to a claim that does not exist: {shown(name)}")
            else:
                related.setdefault(ref.path, ref)
        claims.append(ResolvedClaim(draft=draft, related=list(related.values())))
    enriched: set[str] = set()
    for enrichment in answer.enrichments:
        target = resolve(enrichment.target)
        if target is None:
            dropped.append(f"enrichment of a claim that does not exist: {shown(enrichment.target)}")
        elif not any(PurePosixPath(target.path).is_relative_to(folder) for folder in enrichable):
            dropped.append(f"enrichment of a claim outside the writable folders: {target.title}")
        elif target.path in enriched:
            dropped.append(f"second enrichment of one claim: {target.title}")
        else:
            enriched.add(target.path)
            enrichments.append(ResolvedEnrichment(draft=enrichment, target=target))
    return claims, enrichments, dropped


class PreparedRequest(BaseModel):
    """What is sent to the model for one source (or one part of it), and what judging its answer needs."""

    source_path: str
    agent: str
    messages: list[dict[str, str]]
    prompt_hash: str
    replaced: set[str] = Field(default_factory=set)  # earlier drafts a forced re-extraction replaces
    part: Chunk | None = None  # the part of a long source these messages hold
    # The types the source's domain allows, an enum in the answer's schema; None: the run drafts no entities.
    entity_types: tuple[str, ...] | None = None

    @property
    def answer_type(self) -> type[ExtractionAnswer]:
        return answer_model(self.entity_types)

    def salvage(self, data: object) -> tuple[ExtractionAnswer, list[str]] | None:
        return salvage_answer(data, self.answer_type)


def prepare_request(
    source: Source,
    source_path: str,
    settings: Settings,
    index: KBIndex,
    replace_previous: bool = False,
    candidates: list[Candidate] | None = None,
) -> PreparedRequest:
    """The messages for one source: its agent's prompt, the source, the KB claims it may relate to."""
    agent = settings.agent_for(source.domain)
    if candidates is None:
        candidates = [
            Candidate(title=ref.title, description=ref.description)
            for ref in candidates_for(source, index, settings.retrieval_k)
        ]
    types = entity_types_for(index, source.domain) if settings.entities else None
    answer_type = answer_model(types)
    entities = (
        [
            Candidate(
                title=ref.name,
                description=ref.entity_type if ref.domain == source.domain else f"{ref.entity_type}, {ref.domain}",
            )
            for ref in entity_candidates(source, index, settings.entities_dir)
        ]  # fmt: skip
        if settings.entities
        else None
    )
    messages = build_messages(
        prompts_dir(settings),
        agent,
        source,
        source_path,
        candidates,
        schema_for_prompt(settings.structured_mode, answer_type),
        entity_types=format_entity_types(index.entity_schema, source.domain) if settings.entities else None,
        entities=entities,
    )
    return PreparedRequest(
        source_path=source_path,
        agent=agent,
        messages=messages,
        prompt_hash=prompt_hash(messages, response_format(settings.structured_mode, answer_type, settings.max_tokens)),
        replaced=previous_drafts(source, index, settings.writable_claim_dirs) if replace_previous else set(),
        entity_types=types,
    )


def prompts_dir(settings: Settings) -> Path:
    return Path(settings.prompts_dir) if settings.prompts_dir else default_prompts_dir()


def prepare_requests(
    source: Source, source_path: str, settings: Settings, index: KBIndex, replace_previous: bool = False
) -> tuple[list[PreparedRequest], list[str]]:
    """One request, or one per part when the source does not fit the model's context; and notes on parts skipped.

    Every part carries the source's metadata and KB candidates chosen for it. The
    parts overlap and together cover the whole body: nothing is cut off. Parts
    holding only blanks (padding in converted PDFs) are not sent, and said so.
    """
    whole = prepare_request(source, source_path, settings, index, replace_previous)
    if fits(whole.messages, settings):
        return [whole], []
    candidates = [
        Candidate(title=ref.title, description=ref.description)
        for ref in candidates_for(source, index, settings.retrieval_k)
    ]
    note = part_note(prompts_dir(settings), 99, 99, 999_999, 999_999, 999_999)
    frame = prepare_request(
        source.model_copy(update={"body": note}), source_path, settings, index, candidates=candidates
    )
    # The request is measured as JSON, where a newline or a quotation mark of the body takes two characters.
    escaped = len(json.dumps(source.body, ensure_ascii=False)) / max(1, len(source.body))
    size = int(part_chars(frame.messages, settings) / escaped)
    chunks = split_body(source.body, size, min(settings.chunk_overlap_chars, size // 4))
    kept = [chunk for chunk in chunks if chunk.text.strip()]
    notes = [f"skipped {len(chunks) - len(kept)} part(s) holding only blank space"] if len(kept) < len(chunks) else []
    requests = []
    for number, chunk in enumerate(kept, start=1):
        header = part_note(prompts_dir(settings), number, len(kept), chunk.start, chunk.end, len(source.body))
        part = source.model_copy(update={"body": f"{header}\n\n{chunk.text.strip()}"})
        # The KB claims offered are those the whole source links to, then the best matches for this part's own
        # text, so a section deep in a long report is not shown only claims chosen for its first pages. A part
        # whose own choice would not fit falls back to the whole source's, which the part's size allows for.
        own = [
            Candidate(title=ref.title, description=ref.description)
            for ref in candidates_for(
                source.model_copy(update={"body": chunk.text}), index, settings.retrieval_k, links_from=source.body
            )  # fmt: skip
        ]
        request = prepare_request(part, source_path, settings, index, candidates=own)
        if not fits(request.messages, settings):
            request = prepare_request(part, source_path, settings, index, candidates=candidates)
        requests.append(request.model_copy(update={"replaced": whole.replaced, "part": chunk}))
    return requests, notes


def draft_source(
    source: Source,
    source_path: str,
    settings: Settings,
    llm: StructuredClient,
    index: KBIndex,
    replace_previous: bool = False,
) -> ExtractionResult:
    """The draft strategy: the model writes each claim about one source (asked in parts when it is long), and
    its answer is reconciled with the KB."""
    requests, notes = prepare_requests(source, source_path, settings, index, replace_previous)
    if len(requests) == 1:
        reply = llm.ask(requests[0].messages, requests[0].answer_type, salvage=requests[0].salvage)
        return judge_answer(source, requests[0], reply, settings, index, llm)
    return extract_in_parts(source, requests, notes, settings, llm, index)


def extract_in_parts(
    source: Source,
    requests: list[PreparedRequest],
    notes: list[str],
    settings: Settings,
    llm: StructuredClient,
    index: KBIndex,
) -> ExtractionResult:
    """Each part asked and judged on its own (re-asks included), then the answers merged and judged once more.

    A part whose answer is unusable however often it is asked (invalid, cut
    off, refused) is skipped, and the notes say so; a part the endpoint did not
    answer (transport errors) fails the whole source, which is tried again
    later, when the parts that did answer come from the response cache.
    """

    def one(request: PreparedRequest) -> ExtractionResult:
        reply = llm.ask(request.messages, request.answer_type, salvage=request.salvage)
        return judge_answer(source, request, reply, settings, index, llm, anchor=False)

    concurrency = 1 if settings.is_embedded else settings.chunk_concurrency
    with ThreadPoolExecutor(max_workers=min(concurrency, len(requests))) as pool:
        futures = [pool.submit(one, request) for request in requests]
    usage, calls, skipped = Usage(), [], list(notes)
    failures: list[tuple[str, str]] = []  # (kind, message) of the parts without an answer
    results: list[ExtractionResult] = []
    for number, future in enumerate(futures, start=1):
        try:
            part = future.result()
        except LLMError as exc:
            usage.merge(exc.usage)
            calls += exc.calls
            problem = str(exc).removeprefix(f"{exc.kind}: ")
            failures.append((exc.kind, f"part {number} of {len(requests)}: {problem}"))
            if exc.kind in UNUSABLE:
                short = problem if len(problem) <= 200 else problem[:199] + "…"
                skipped.append(f"skipped part {number} of {len(requests)}, no usable answer ({exc.kind}): {short}")
            continue
        usage.merge(part.usage)
        calls += part.calls
        results.append(part)
    unanswered = [failure for failure in failures if failure[0] not in UNUSABLE]
    if unanswered or not results:
        raise LLMError(*(unanswered or failures)[0], usage, calls)
    merged, report = merge_answers([kept_answer(part) for part in results])
    reply = StructuredReply[ExtractionAnswer](
        value=merged,
        usage=usage,
        attempts=usage.requests,
        retries=sum(part.retries for part in results),
        reasks=sum(part.reasks for part in results),
        raw_replies=[reply for part in results for reply in part.raw_replies],
        calls=calls,
    )
    everything = [message for request in requests for message in request.messages]
    combined = requests[0].model_copy(
        update={
            "messages": everything,
            "prompt_hash": prompt_hash(
                everything, response_format(settings.structured_mode, requests[0].answer_type, settings.max_tokens)
            ),
            "part": None,
        }
    )
    result = judge_answer(source, combined, reply, settings, index, llm=None)
    dropped = [f"part {number}: {item}" for number, part in enumerate(results, 1) for item in part.dropped]
    combined_notes = [f"combined across parts: {title}" for title in report.combined_claims]
    return result.model_copy(
        update={
            "dropped": dropped + result.dropped,
            "drafted_claims": sum(part.drafted_claims for part in results),
            "parts": len(requests),
            "part_notes": skipped + combined_notes + report.dropped_enrichments,
            "judged": [claim for part in results for claim in part.judged if claim.failures] + result.judged,
            "reask_wanted": any(part.reask_wanted for part in results) or result.reask_wanted,
        }
    )


def kept_answer(result: ExtractionResult) -> ExtractionAnswer:
    """The answer with only what survived the gates and the KB, so merging parts does not judge it twice."""
    claims = [claim.draft for claim in result.claims]
    enrichments = [enrichment.draft for enrichment in result.enrichments]
    kept = claims or enrichments or result.entities.created or result.entities.updated
    reason = result.answer.null_result_reason or (None if kept else "Nothing passed the checks.")
    return result.answer.model_copy(update={"claims": claims, "enrichments": enrichments, "null_result_reason": reason})


def with_corrections(answer: ExtractionAnswer, report: GateReport, corrected: ExtractionAnswer) -> ExtractionAnswer:
    """The first answer's passing claims and the re-ask's corrections of the failing ones.

    The re-ask asks for the failing claims alone; a model that repeats the whole answer anyway has its repeats
    of passing claims ignored, and nothing beyond as many claims as failed is taken.
    """
    passing = [draft for position, draft in enumerate(answer.claims) if position not in report.failures]
    titles = {draft.title.casefold() for draft in passing}
    fixes = [draft for draft in corrected.claims if draft.title.casefold() not in titles][: len(report.failures)]
    return answer.model_copy(update={"claims": passing + fixes})


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def without_sentences(argument: str, texts: list[str]) -> tuple[str, set[str]]:
    """The argument without the sentences that hold any of ``texts``, paragraphs kept; and the texts found."""
    found: set[str] = set()
    paragraphs = []
    for paragraph in argument.split("\n\n"):
        kept = []
        for sentence in _SENTENCE_END.split(paragraph):
            holds = [text for text in texts if text and grounding_text(text) in grounding_text(sentence)]
            found.update(holds)
            if not holds:
                kept.append(sentence)
        if kept:
            paragraphs.append(" ".join(kept))
    return "\n\n".join(paragraphs), found


def settle_flags(
    draft: ClaimDraft, grounding: ClaimGrounding, remove: bool
) -> tuple[ClaimDraft, list[Flag], list[Flag]]:
    """A kept claim with its unverified items flagged, or removed and marked so: an evidence item whole, a
    sentence of the argument (when the sentence can be told; the flag stays otherwise)."""
    if not remove:
        return draft, grounding.flags, grounding.grounded
    gone = {flag.where for flag in grounding.flags if flag.where.startswith("evidence[")}
    argument, cut = without_sentences(draft.argument, [f.text for f in grounding.flags if f.where == "argument"])
    if not argument.strip():
        argument, cut = draft.argument, set()  # an argument is never emptied: its flags stay for the notes
    kept = [position for position in range(len(draft.evidence)) if f"evidence[{position}]" not in gone]
    moved = {f"evidence[{old}]": f"evidence[{new}]" for new, old in enumerate(kept)}
    flags = [
        flag.model_copy(update={"verdict": "removed"})
        if flag.where in gone or (flag.where == "argument" and flag.text in cut)
        else flag
        for flag in grounding.flags
    ]
    grounded = [
        flag.model_copy(update={"where": moved.get(flag.where, flag.where)})
        for flag in grounding.grounded
        if flag.where not in gone
    ]
    update = {"evidence": [draft.evidence[p] for p in kept], "argument": argument}
    return draft.model_copy(update=update), flags, grounded


REASON_MAX = 400
NO_READABLE_REASON = "The model found nothing worth extracting and gave no readable reason."


def readable_free_text(answer: ExtractionAnswer, known: set[str]) -> ExtractionAnswer:
    """The answer's free text that reaches the source file when it is readable: notes and the null-result reason
    when they are prose in the source's language (else dropped, or replaced by the pipeline's own wording),
    key facts (figures and names, rarely prose) when they are not the answer's JSON debris."""
    reason = answer.null_result_reason
    return answer.model_copy(
        update={
            "notes": prose_or(answer.notes, known, ""),
            "null_result_reason": prose_or(reason, known, NO_READABLE_REASON) if reason else None,
            "key_facts": [fact for fact in answer.key_facts if not is_debris(fact)],
        }
    )


def judge_answer(
    source: Source,
    request: PreparedRequest,
    reply: StructuredReply[ExtractionAnswer],
    settings: Settings,
    index: KBIndex,
    llm: StructuredClient | None,
    anchor: bool = True,
    marked: dict[str, list[Flag]] | None = None,
) -> ExtractionResult:
    """The gates, one re-ask with their messages (when ``llm`` is given), and reconciliation with the KB.

    Batch results come without a client: what fails the gates there is dropped.
    Each kept claim's evidence is then located in the source body (``anchor``).
    ``marked`` holds flags for the reviewer that were raised before the gates, by claim title.
    """
    usage, calls, reasks = reply.usage.model_copy(), list(reply.calls), reply.reasks
    dropped = list(reply.salvaged)
    source_text = source.text  # frontmatter too: dates, authors and titles ground figures
    answer = readable_free_text(plain_answer(reply.value), vocabulary(source_text))
    domain = source.domain or ""
    replaced = request.replaced

    facts = SourceFacts.of(source_text)

    def gates(drafts: list[ClaimDraft]) -> GateReport:
        return check_claims(drafts, source_text, domain, settings.domains, index, replaced, facts)

    report = gates(answer.claims)
    reask_wanted = bool(report.failures)
    follow_up = (
        [
            *request.messages,
            {"role": "assistant", "content": reply.raw_replies[-1]},
            {"role": "user", "content": report.feedback(answer.claims)},
        ]
        if report.failures and settings.gate_reasks > 0 and llm is not None
        else None
    )
    if follow_up is not None and not fits(follow_up, settings):
        follow_up = None  # past the model's context a strict server refuses the request: the gates decide alone
        dropped.append("no re-ask after the gates failed: it would not fit the model's context")
    if follow_up is not None and llm is not None:
        try:
            second = llm.ask(follow_up, request.answer_type, salvage=request.salvage)
        except LLMError as exc:
            usage.merge(exc.usage)
            calls += exc.calls
            dropped.append(f"re-ask after the gates failed ({exc.kind}); kept the first answer")
        else:
            usage.merge(second.usage)
            calls += second.calls
            reasks += 1 + second.reasks
            dropped += second.salvaged
            answer = with_corrections(answer, report, plain_answer(second.value))
            report = gates(answer.claims)
    judged = [
        JudgedClaim(title=draft.title, failures=report.failures.get(position, []), flags=grounding.flags,
                    grounded=grounding.grounded)
        for position, (draft, grounding) in enumerate(zip(answer.claims, report.grounding, strict=True))
    ]  # fmt: skip
    for position, problems in sorted(report.failures.items()):
        reasons = "; ".join(f"{p.gate}: {shown(p.message, REASON_MAX)}" for p in problems)
        dropped.append(f'dropped claim "{shown(answer.claims[position].title)}" ({reasons})')
    kept_with_grounding = [
        settle_flags(draft, report.grounding[position], settings.removes_unverified)
        for position, draft in enumerate(answer.claims)
        if position not in report.failures
    ]
    kept = [draft for draft, _, _ in kept_with_grounding]
    for draft, flags, _ in kept_with_grounding:
        removed = [flag for flag in flags if flag.verdict == "removed"]
        if removed:
            reasons = "; ".join(f"{flag.where}: {flag.reason}" for flag in removed)
            dropped.append(f'removed from "{draft.title}" ({reasons})')
    kept, unlinked = unlink_in_drafts(kept, index)
    if unlinked:
        dropped.append(f"unlinked {unlinked} wiki link(s) that resolve to no note")
    drafted = len(answer.claims)
    entities = judge_entities(
        answer.entities,
        answer.entity_updates,
        source_text=source_text,
        source_date=source.date,
        domain=domain,
        facts=facts,
        index=index,
        entities_dir=settings.entities_dir,
        replaced=replaced,
    )
    for decision in entities.decisions:
        if decision.outcome == "dropped":
            dropped.append(f'dropped entity "{shown(decision.name)}" ({decision.reason})')
    for name, flags in entities.flags_by_name():
        removed = [flag for flag in flags if flag.verdict == "removed"]
        if removed:
            reasons = "; ".join(f"{flag.where}: {flag.reason}" for flag in removed)
            dropped.append(f'removed from entity "{name}" ({reasons})')
    if entities.unlinked:
        dropped.append(f"unlinked {entities.unlinked} wiki link(s) in entity notes that resolve to no note")
    anything = kept or answer.enrichments or entities.created or entities.updated
    reason = answer.null_result_reason or (None if anything else "No claim passed the checks.")
    answer = answer.model_copy(update={"claims": kept, "null_result_reason": reason})
    claims, enrichments, reconciled = reconcile(answer, index, settings.writable_claim_dirs, replaced)
    dropped += reconciled
    by_title = {draft.title: (flags, grounded) for draft, flags, grounded in kept_with_grounding}
    marked = marked or {}
    claims = [
        claim.model_copy(
            update={
                "flags": marked.get(claim.draft.title, []) + by_title[claim.draft.title][0],
                "grounded": by_title[claim.draft.title][1],
            }
        )
        for claim in claims
    ]
    if anchor:
        anchors = anchor_claims([claim.draft.evidence for claim in claims], source.body)
        claims = [claim.model_copy(update={"anchors": found}) for claim, found in zip(claims, anchors, strict=True)]
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
        judged=judged,
        reask_wanted=reask_wanted,
        entities=entities,
    )
