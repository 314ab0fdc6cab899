"""Backlogs through a provider's Batch API: submit, check, collect.

One JSONL request per due source, its ``custom_id`` derived from the
source's content hash, uploaded and started as one batch job (at the batch
price). Collecting matches results by ``custom_id`` (a batch's output is not
in input order), checks each answer like a normal run does (schema, gates,
reconciliation; a batch cannot be re-asked, so what fails is dropped) and
commits it through the same writer. Items that failed, expired or whose source
changed since go back to the normal queue.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import Any, Final

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from extractor.commit.plan import planning_view
from extractor.core.budget import start_of_today
from extractor.core.errors import ExtractorError
from extractor.core.prices import price_for, usage_cost
from extractor.core.records import CallRecord, SourceOutcome, Usage, cached_tokens
from extractor.core.redact import scrub
from extractor.core.settings import Settings
from extractor.extraction.answer import ExtractionAnswer
from extractor.extraction.extract import PreparedRequest, judge_answer, prepare_request
from extractor.kb.index import KBIndex
from extractor.kb.sources import SourceError, content_hash
from extractor.llm.client import StructuredReply, parse_reply, response_format
from extractor.llm.contextsize import fits
from extractor.llm.ratelimit import estimated_tokens
from extractor.run.scheduler import choose_due
from extractor.run.service import Drafted, NotOnMainError, SourceService, load
from extractor.store.state import SourceState, StateStore

log = logging.getLogger(__name__)

BATCH_WORKER = 0  # no worker process made these drafts
BATCH_PRICE_FACTOR = 0.5  # providers bill batch jobs at half the list price
ENDPOINT: Final = "/v1/chat/completions"
FINISHED = {"completed", "failed", "expired", "cancelled"}


class BatchError(ExtractorError):
    """A batch could not be submitted or read; nothing was marked as sent."""


class BatchItem(BaseModel):
    custom_id: str
    source_path: str
    content_hash: str
    agent: str
    prompt_hash: str


class BatchRecord(BaseModel):
    id: str
    created_at: float
    status: str
    input_file_id: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    items: list[BatchItem]
    collected_at: float | None = None
    estimated_cost: float = 0.0  # dollars, held against the daily budget until collected

    def row(self) -> dict[str, Any]:
        return {**self.model_dump(exclude={"items"}), "items": json.dumps([i.model_dump() for i in self.items])}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BatchRecord:
        return cls.model_validate({**row, "items": json.loads(row["items"])})


def custom_id_for(source_hash: str) -> str:
    return f"source-{source_hash[:48]}"


def batch_line(
    custom_id: str,
    messages: list[dict[str, str]],
    settings: Settings,
    answer_type: type[ExtractionAnswer] = ExtractionAnswer,
) -> dict[str, Any]:
    """One request of the job, exactly as a normal run would send it (``answer_type``: the source's domain's)."""
    body = {
        "model": settings.model,
        "messages": messages,
        "response_format": response_format(settings.structured_mode, answer_type, settings.max_tokens),
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}


def batch_allowance(settings: Settings, store: StateStore) -> float | None:
    """Dollars a new batch may be expected to cost under the budgets (None: no budget).

    A batch counts as one cycle; the daily budget also holds what today's calls
    cost and what batches not yet collected are expected to.
    """
    allowances = []
    if settings.budget_per_cycle is not None:
        allowances.append(settings.budget_per_cycle)
    if settings.budget_per_day is not None:
        spent = store.spent_since(start_of_today()) + store.pending_batch_cost()
        allowances.append(settings.budget_per_day - spent)
    return min(allowances) if allowances else None


def item_estimate(settings: Settings, messages: list[dict[str, str]], recent_average: float) -> float:
    """One request's expected cost at the batch price: the recent average per source where there is one,
    never more than the request's prompt plus a full ``max_tokens`` reply would cost."""
    price = price_for(settings.model, settings.prices, embedded=settings.is_embedded)
    prompt = estimated_tokens(messages, 0)
    ceiling = usage_cost(price, prompt, settings.max_tokens, factor=BATCH_PRICE_FACTOR) or 0.0
    return min(ceiling, recent_average * BATCH_PRICE_FACTOR) if recent_average > 0 else ceiling


def submit(
    kb_root: Path, settings: Settings, store: StateStore, client: openai.OpenAI, limit: int
) -> tuple[BatchRecord, str | None]:
    """Send up to ``limit`` due sources as one batch job and mark them batched; also says why fewer went, when
    a budget held some back."""
    if settings.selects:
        raise BatchError('a batch sends one drafting request per source: strategy "select" reads sentence '
                         'windows one after another; set strategy = "draft" (or "auto") for batch mode')  # fmt: skip
    _, base = planning_view(kb_root, settings)
    index = KBIndex.load(kb_root, exclude=[settings.inbox_dir], at=settings.main_branch)
    allowance = batch_allowance(settings, store)
    recent_average = store.cost_per_source()
    estimate = 0.0
    held_back = 0
    items: list[BatchItem] = []
    lines: list[str] = []
    for path in choose_due(store, limit):
        try:
            source = load(kb_root, path, settings, base)
        except (SourceError, NotOnMainError):
            continue  # the next scan marks it invalid, with its reason
        request = prepare_request(source, path, settings, index)
        if not fits(request.messages, settings):
            # One request per source: a source read in parts stays due, for a normal run.
            log.warning("%s does not fit the model's context in one request; left to a normal run", path)
            continue
        digest = content_hash(source.text)
        item = BatchItem(custom_id=custom_id_for(digest), source_path=path, content_hash=digest,
                         agent=request.agent, prompt_hash=request.prompt_hash)  # fmt: skip
        if any(i.custom_id == item.custom_id for i in items):
            continue  # two files with one text: one request
        cost = item_estimate(settings, request.messages, recent_average)
        if allowance is not None and estimate + cost > allowance:
            held_back += 1  # stays due, for a later batch or run
            continue
        estimate += cost
        items.append(item)
        lines.append(
            json.dumps(batch_line(item.custom_id, request.messages, settings, request.answer_type), ensure_ascii=False)
        )
    budget_note = (
        f"{held_back} due source(s) held back by the budget (${max(allowance or 0.0, 0.0):.4f} left, "
        f"about ${estimate:.4f} sent)"
        if held_back
        else None
    )
    if not items:
        raise BatchError(budget_note or "no due source to send")
    try:
        upload = client.files.create(file=("extractor-batch.jsonl", io.BytesIO("\n".join(lines).encode())),
                                     purpose="batch")  # fmt: skip
        job = client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h",
                                    metadata={"tool": "extractor", "sources": str(len(items))})  # fmt: skip
    except openai.OpenAIError as exc:
        raise BatchError(f"submitting the batch failed: {exc}") from exc
    record = BatchRecord(id=job.id, created_at=time.time(), status=job.status, input_file_id=upload.id, items=items,
                         estimated_cost=estimate)  # fmt: skip
    store.save_batch(record.row())
    for item in items:
        store.update(item.source_path, state=SourceState.BATCHED, last_error=None)
    return record, budget_note


def refresh(store: StateStore, client: openai.OpenAI) -> list[BatchRecord]:
    """Every batch not yet collected, with its status as the provider reports it now."""
    records = []
    for row in store.batches(open_only=True):
        record = BatchRecord.from_row(row)
        try:
            job = client.batches.retrieve(record.id)
        except openai.OpenAIError as exc:
            # One batch the provider cannot tell about now must not hide the others: it keeps its last status.
            log.warning("reading batch %s failed: %s", record.id, scrub(str(exc)))
            records.append(record)
            continue
        record = record.model_copy(update={"status": job.status, "output_file_id": job.output_file_id,
                                           "error_file_id": job.error_file_id})  # fmt: skip
        store.save_batch(record.row())
        records.append(record)
    return records


def read_results(client: openai.OpenAI, batch_id: str, file_id: str | None) -> dict[str, dict[str, Any]]:
    """A result file's lines by ``custom_id``; a line that is not a result is left out (its item comes back
    without a result, so it goes back to the queue)."""
    if not file_id:
        return {}
    try:
        text = client.files.content(file_id).text
    except openai.OpenAIError as exc:
        raise BatchError(f"batch {batch_id}: downloading result file {file_id} failed: {exc}") from exc
    results: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            log.warning("batch %s, file %s, line %d is not JSON: %s", batch_id, file_id, number, exc)
            continue
        if isinstance(value, dict) and isinstance(value.get("custom_id"), str):
            results[value["custom_id"]] = value
    return results


def batch_reply(completion: ChatCompletion, settings: Settings, item: BatchItem) -> StructuredReply[ExtractionAnswer]:
    """A result line as the client's reply would be; raises ValueError when the answer is unusable."""
    if not completion.choices:
        raise ValueError("the result had no choices")
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        raise ValueError("reply cut off at max_tokens (finish_reason=length)")
    content = choice.message.content or ""
    value = parse_reply(content, ExtractionAnswer)  # an entity of a type the domain lacks: the gates drop it alone
    record = batch_call(completion, settings, item, "ok")
    record.raw_reply = content
    total = Usage(prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens,
                  cached_tokens=record.cached_tokens, requests=1, cost=record.cost)  # fmt: skip
    return StructuredReply[ExtractionAnswer](value=value, usage=total, attempts=1, retries=0, reasks=0,
                                             raw_replies=[content], calls=[record])  # fmt: skip


def batch_call(
    completion: ChatCompletion, settings: Settings, item: BatchItem, outcome: str, error: str | None = None
) -> CallRecord:
    """The call log's record of one batch result, priced at the batch price from the usage it reports."""
    price = price_for(settings.model, settings.prices, embedded=settings.is_embedded)
    usage = completion.usage
    prompt, completion_tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    cost = usage_cost(price, prompt, completion_tokens, cached_tokens(usage), factor=BATCH_PRICE_FACTOR)
    return CallRecord(at=time.time(), model=settings.model, request_hash=item.custom_id[:16], prompt_tokens=prompt,
                      completion_tokens=completion_tokens, cached_tokens=cached_tokens(usage), cost=cost,
                      latency=0.0, outcome=outcome, error=error)  # fmt: skip


class CollectReport(BaseModel):
    batches: int = 0
    outcomes: list[SourceOutcome] = []
    requeued: dict[str, str] = {}  # source path: why it went back to the normal queue
    skipped: dict[str, str] = {}  # source path: why its result was not used (it no longer awaited it)
    waiting: list[str] = []  # batch ids still running


def collect(
    kb_root: Path, settings: Settings, store: StateStore, client: openai.OpenAI, service: SourceService
) -> CollectReport:
    """Write the results of every finished batch through the per-source service; what did not come back is due
    again."""
    report = CollectReport()
    service.load_index()
    for record in refresh(store, client):
        if record.status not in FINISHED:
            report.waiting.append(record.id)
            continue
        report.batches += 1
        results = read_results(client, record.id, record.output_file_id) | read_results(
            client, record.id, record.error_file_id
        )
        for item in record.items:
            row = store.get(item.source_path)
            if row is None or row.state != SourceState.BATCHED:
                # Extracted by hand meanwhile, or collected by an earlier collect that stopped half-way.
                report.skipped[item.source_path] = f"no longer waiting for this batch ({row.state if row else 'gone'})"
                continue
            why = _collect_item(kb_root, settings, service, item, results.get(item.custom_id), report)
            if why is not None:
                store.update(item.source_path, state=SourceState.DUE, last_error=f"batch {record.id}: {why}")
                report.requeued[item.source_path] = why
        store.save_batch(record.model_copy(update={"collected_at": time.time()}).row())
    return report


def _collect_item(kb_root: Path, settings: Settings, service: SourceService, item: BatchItem,
                  line: dict[str, Any] | None, report: CollectReport) -> str | None:  # fmt: skip
    """Write one item's result; returns why it goes back to the queue instead, if it does."""
    if line is None:
        return "no result (failed or expired)"
    response = line.get("response") or {}
    if line.get("error") or response.get("status_code") != 200:
        return f"the request failed: {json.dumps(line.get('error') or response.get('body'))[:200]}"
    try:
        source = load(kb_root, item.source_path, settings, planning_view(kb_root, settings)[1])
    except SourceError as exc:
        return f"the source no longer loads: {exc.problem}"
    except NotOnMainError as exc:
        return f"the source no longer loads: {exc}"
    if content_hash(source.text) != item.content_hash:
        return "the source changed after it was sent"
    try:
        completion = ChatCompletion.model_validate(response.get("body"))
    except ValidationError as exc:
        return f"the result is not a chat completion: {' '.join(str(exc).split())[:200]}"
    try:
        reply = batch_reply(completion, settings, item)
    except (ValueError, ValidationError) as exc:
        why = f"the answer is unusable: {' '.join(str(exc).split())[:200]}"
        # Billed all the same: the call is logged with its cost, so costs and budgets count it.
        call = batch_call(completion, settings, item, "invalid", why)
        service.store.log_calls(item.source_path, BATCH_WORKER, [call], agent=item.agent)
        return why
    request = PreparedRequest(source_path=item.source_path, agent=item.agent, messages=[], prompt_hash=item.prompt_hash)
    index = service.index or service.load_index()
    result = judge_answer(source, request, reply, settings, index, llm=None)
    drafted = Drafted(
        source_path=item.source_path, worker=BATCH_WORKER, content_hash=item.content_hash, extraction=result
    )
    report.outcomes.append(service.conclude(drafted).summary())
    return None
