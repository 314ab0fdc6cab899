"""The select strategy: the model chooses the sentences that state claims, window by window, and phrases them.

Made for small local models, which cannot write a grounded claim but can choose
well among sentences when a grammar lets them name only real ones. A long source
is read in windows of sentences, the ones with the most checkable sentences first.
The drafts made from the choices take the same gates and the same reconciliation
with the KB as drafted claims, through :func:`judge_answer`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, Field

from extractor.core.records import CallRecord, Flag, Usage
from extractor.core.settings import Settings
from extractor.extraction.answer import EnrichmentDraft, ExtractionAnswer
from extractor.extraction.extract import (
    UNUSABLE,
    ExtractionResult,
    PreparedRequest,
    candidates_for,
    judge_answer,
    previous_drafts,
    prompts_dir,
)
from extractor.extraction.gates import content_stems
from extractor.extraction.grounding import SourceFacts
from extractor.extraction.prompts import build_selection_messages, prompt_hash
from extractor.extraction.prose import vocabulary
from extractor.extraction.selection import (
    SelectionAnswer,
    SelectionContext,
    draft_from_choice,
    enrichment_from_choice,
    selection_model,
    title_bound,
)
from extractor.extraction.sentences import Sentence, checkability, selectable, split_sentences
from extractor.kb.index import KBIndex
from extractor.kb.sources import Source
from extractor.llm.client import LLMError, StructuredClient, StructuredReply, response_format, schema_for_prompt

STRONG_CANDIDATE = 0.6  # share of an existing claim's title words a window holds for it to be offered
MIN_CANDIDATE_STEMS = 3
MAX_TARGETS = 3
NOTHING_TO_CHOOSE = "No sentence of the source states a checkable claim."
NOTHING_CHOSEN = "No claim was chosen among the source's sentences."


class Window(BaseModel):
    """Consecutive selectable sentences shown to the model at once, and how checkable they look."""

    sentences: list[Sentence]
    score: float = 0.0

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(s.number for s in self.sentences)

    def numbered(self) -> str:
        """The sentences as the model reads them, one per line after its number, the most checkable first: a
        small model favours what it reads first, so that is what it should favour."""
        ranked = sorted(self.sentences, key=lambda s: (-checkability(s), s.number))
        return "\n".join(f"[{sentence.number}] {sentence.text}" for sentence in ranked)


def offered(sentences: list[Sentence], limit: int) -> list[Sentence]:
    """The ``limit`` most checkable sentences, in reading order: what the model chooses among."""
    best = sorted(sentences, key=lambda s: (-checkability(s), s.number))[:limit]
    return sorted(best, key=lambda s: s.number)


def windows_of(sentences: list[Sentence], size: int, limit: int) -> list[Window]:
    """The selectable sentences cut into windows of at most ``size`` characters, in reading order, each offering
    its ``limit`` most checkable sentences."""
    windows: list[Window] = []
    current: list[Sentence] = []
    length = 0
    for sentence in sentences:
        if current and length + len(sentence.text) > size:
            windows.append(Window(sentences=current))
            current, length = [], 0
        current.append(sentence)
        length += len(sentence.text) + 8
    if current:
        windows.append(Window(sentences=current))
    for window in windows:
        window.sentences = offered(window.sentences, limit)
        window.score = sum(sorted((checkability(s) for s in window.sentences), reverse=True)[:5])
    return windows


def chosen_windows(windows: list[Window], limit: int) -> list[Window]:
    """The ``limit`` windows (0: all) with the most checkable sentences, back in reading order."""
    if not limit or len(windows) <= limit:
        return windows
    best = sorted(range(len(windows)), key=lambda i: (-windows[i].score, i))[:limit]
    return [windows[i] for i in sorted(best)]


def strong_targets(window: Window, titles: list[str]) -> tuple[str, ...]:
    """Existing claims a window speaks to strongly: most of their title's words are in its sentences."""
    held = content_stems(" ".join(s.text for s in window.sentences))
    strong = []
    for title in titles:
        stems = content_stems(title)
        if len(stems) >= MIN_CANDIDATE_STEMS and len(stems & held) / len(stems) >= STRONG_CANDIDATE:
            strong.append(title)
    return tuple(strong[:MAX_TARGETS])


class WindowRequest(BaseModel):
    window: Window
    messages: list[dict[str, str]]
    targets: tuple[str, ...] = ()
    max_claims: int = 3

    @property
    def answer_type(self) -> type[SelectionAnswer]:
        return selection_model(self.window.numbers, self.targets, self.max_claims)


class WindowAnswer(BaseModel):
    request: WindowRequest
    reply: StructuredReply[SelectionAnswer] | None = None
    problem: str | None = None  # why the window has no usable answer
    usage: Usage = Field(default_factory=Usage)
    calls: list[CallRecord] = Field(default_factory=list)


def window_requests(source: Source, settings: Settings, index: KBIndex, windows: list[Window]) -> list[WindowRequest]:
    agent = settings.agent_for(source.domain)
    titles = [ref.title for ref in candidates_for(source, index, settings.retrieval_k)]
    requests = []
    for window in windows:
        targets = strong_targets(window, titles)
        answer_type = selection_model(window.numbers, targets, settings.select_claims)
        messages = build_selection_messages(
            prompts_dir(settings),
            agent,
            source,
            window.numbered(),
            list(targets),
            settings.select_claims,
            schema_for_prompt(settings.structured_mode, answer_type),
        )
        requests.append(
            WindowRequest(window=window, messages=messages, targets=targets, max_claims=settings.select_claims)
        )
    return requests


def ask_windows(requests: list[WindowRequest], settings: Settings, llm: StructuredClient) -> list[WindowAnswer]:
    """Each window asked (one at a time on the embedded model); a window whose answer is unusable however often
    it is asked is kept with its problem, a window the endpoint did not answer fails the source."""

    def one(request: WindowRequest) -> WindowAnswer:
        try:
            return WindowAnswer(request=request, reply=llm.ask(request.messages, request.answer_type))
        except LLMError as exc:
            if exc.kind not in UNUSABLE:
                raise
            return WindowAnswer(request=request, problem=f"{exc.kind}", usage=exc.usage, calls=exc.calls)

    concurrency = 1 if settings.is_embedded else settings.chunk_concurrency
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(requests)))) as pool:
        return list(pool.map(one, requests))


def select_source(
    source: Source,
    source_path: str,
    settings: Settings,
    llm: StructuredClient,
    index: KBIndex,
    replace_previous: bool = False,
) -> ExtractionResult:
    """Choose claims among the source's sentences, window by window, and judge the drafts made of them."""
    sentences = split_sentences(source.body)
    eligible = [s for s in sentences if selectable(s)]
    every = windows_of(eligible, settings.select_window_chars, settings.select_offered)
    windows = chosen_windows(every, settings.select_windows)
    requests = window_requests(source, settings, index, windows)
    answers = ask_windows(requests, settings, llm) if requests else []

    context = SelectionContext(
        sentences={s.number: s for s in sentences},
        facts=SourceFacts.of(source.text),
        vocabulary=vocabulary(source.text),
        attribution=attribution(source),
        title_bound=title_bound(settings.max_tokens),
    )
    usage, calls, raw, notes = Usage(), [], [], []
    drafts, dropped = [], []
    marked: dict[str, list[Flag]] = {}
    enrichments: list[EnrichmentDraft] = []
    retries = reasks = 0
    used: set[int] = set()
    for number, answer in enumerate(answers, start=1):
        reply = answer.reply
        if reply is None:
            usage.merge(answer.usage)
            calls += answer.calls
            notes.append(f"skipped window {number} of {len(answers)}, no usable answer ({answer.problem})")
            continue
        usage.merge(reply.usage)
        calls += reply.calls
        raw += reply.raw_replies
        retries, reasks = retries + reply.retries, reasks + reply.reasks
        for choice in reply.value.claims:
            if used & set(choice.sentences):
                continue  # a small model repeats its choices: each sentence states one claim
            used |= set(choice.sentences)
            made = draft_from_choice(choice, answer.request.window.sentences, context)
            if made is None:
                dropped.append(f"no claim could be made of sentences {', '.join(map(str, choice.sentences))}")
                continue
            drafts.append(made.draft)
            marked.setdefault(made.draft.title, []).extend(made.flags)
        for chosen in reply.value.enrichments:
            enrichment = enrichment_from_choice(chosen, context)
            if enrichment is not None:
                enrichments.append(enrichment)
    if len(every) > len(windows):
        notes.append(
            f"read {len(windows)} of {len(every)} windows of sentences, those with the most checkable sentences"
        )
    elif len(windows) > 1:
        notes.append(f"read in {len(windows)} windows of sentences")
    reason = None if drafts or enrichments else (NOTHING_CHOSEN if requests else NOTHING_TO_CHOOSE)
    answer_value = ExtractionAnswer(
        key_facts=[], claims=drafts, enrichments=enrichments, null_result_reason=reason, notes=""
    )
    everything = [message for request in requests for message in request.messages]
    fmt = response_format(settings.structured_mode, requests[0].answer_type, settings.max_tokens) if requests else None
    combined = PreparedRequest(
        source_path=source_path,
        agent=settings.agent_for(source.domain),
        messages=everything,
        prompt_hash=prompt_hash(everything, fmt),
        replaced=previous_drafts(source, index, settings.writable_claim_dirs) if replace_previous else set(),
    )
    reply_value = StructuredReply[ExtractionAnswer](
        value=answer_value,
        usage=usage,
        attempts=usage.requests,
        retries=retries,
        reasks=reasks,
        raw_replies=raw,
        calls=calls,
        salvaged=dropped,
    )
    result = judge_answer(source, combined, reply_value, settings, index, llm=None, marked=marked)
    return result.model_copy(update={"parts": 1, "part_notes": notes})


def attribution(source: Source) -> str:
    """Where a claim comes from, as the description of last resort: the source's title, author and year."""
    author = str(source.metadata.get("author") or "").split(",")[0].strip()
    year = (source.date or "")[:4]
    detail = ", ".join(part for part in (author, year) if part and part != "0000")
    return f'Stated in "{source.title}"' + (f" ({detail})." if detail else ".")
