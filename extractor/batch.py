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
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from extractor.answer import ExtractionAnswer
from extractor.config import Settings
from extractor.contextsize import fits
from extractor.costs import price_for, usage_cost
from extractor.extract import PreparedRequest, judge_answer, prepare_request
from extractor.kb import KBIndex
from extractor.llm import StructuredReply, Usage, cached_tokens, parse_reply, response_format
from extractor.scheduler import Runner, SourceOutcome, choose_due
from extractor.sources import SourceError, parse_source
from extractor.state import CallRecord, SourceState, StateStore
from extractor.workers import TaskResult, content_hash
from extractor.writer import planning_view

log = logging.getLogger(__name__)

BATCH_RUNNER = "batch extraction"
BATCH_WORKER = 0  # no worker process made these drafts
BATCH_PRICE_FACTOR = 0.5  # providers bill batch jobs at half the list price
ENDPOINT = "/v1/chat/completions"
FINISHED = {"completed", "failed", "expired", "cancelled"}


class BatchError(RuntimeError):
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

    def row(self) -> dict[str, Any]:
        return {**self.model_dump(exclude={"items"}), "items": json.dumps([i.model_dump() for i in self.items])}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BatchRecord:
        return cls.model_validate({**row, "items": json.loads(row["items"])})


def custom_id_for(source_hash: str) -> str:
    return f"source-{source_hash[:48]}"


def batch_line(custom_id: str, messages: list[dict[str, str]], settings: Settings) -> dict[str, Any]:
    """One request of the job, exactly as a normal run would send it."""
    body = {
        "model": settings.model,
        "messages": messages,
        "response_format": response_format(settings.structured_mode, ExtractionAnswer),
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}


def submit(kb_root: Path, settings: Settings, store: StateStore, client: openai.OpenAI, limit: int) -> BatchRecord:
    """Send up to ``limit`` due sources as one batch job and mark them batched."""
    view, _ = planning_view(kb_root, settings)
    index = KBIndex.load(kb_root, exclude=[settings.inbox_dir])
    items: list[BatchItem] = []
    lines: list[str] = []
    for path in choose_due(store, limit):
        text = view.read(path)
        if text is None:
            continue
        try:
            source = parse_source(kb_root / path, text, settings.max_source_bytes)
        except SourceError:
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
        items.append(item)
        lines.append(json.dumps(batch_line(item.custom_id, request.messages, settings), ensure_ascii=False))
    if not items:
        raise BatchError("no due source to send")
    try:
        upload = client.files.create(file=("extractor-batch.jsonl", io.BytesIO("\n".join(lines).encode())),
                                     purpose="batch")  # fmt: skip
        job = client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h",
                                    metadata={"tool": "extractor", "sources": str(len(items))})  # fmt: skip
    except openai.OpenAIError as exc:
        raise BatchError(f"submitting the batch failed: {exc}") from exc
    record = BatchRecord(id=job.id, created_at=time.time(), status=job.status, input_file_id=upload.id, items=items)
    store.save_batch(record.row())
    for item in items:
        store.update(item.source_path, state=SourceState.BATCHED, last_error=None)
    return record


def refresh(store: StateStore, client: openai.OpenAI) -> list[BatchRecord]:
    """Every batch not yet collected, with its status as the provider reports it now."""
    records = []
    for row in store.batches(open_only=True):
        record = BatchRecord.from_row(row)
        try:
            job = client.batches.retrieve(record.id)
        except openai.OpenAIError as exc:
            raise BatchError(f"reading batch {record.id} failed: {exc}") from exc
        record = record.model_copy(update={"status": job.status, "output_file_id": job.output_file_id,
                                           "error_file_id": job.error_file_id})  # fmt: skip
        store.save_batch(record.row())
        records.append(record)
    return records


def read_results(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    """A result file's lines by ``custom_id``."""
    if not file_id:
        return {}
    text = client.files.content(file_id).text
    lines = (json.loads(line) for line in text.splitlines() if line.strip())
    return {line["custom_id"]: line for line in lines if isinstance(line, dict) and "custom_id" in line}


def batch_reply(completion: ChatCompletion, settings: Settings, item: BatchItem) -> StructuredReply[ExtractionAnswer]:
    """A result line as the client's reply would be; raises ValueError when the answer is unusable."""
    if not completion.choices:
        raise ValueError("the result had no choices")
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        raise ValueError("reply cut off at max_tokens (finish_reason=length)")
    content = choice.message.content or ""
    value = parse_reply(content, ExtractionAnswer)
    price = price_for(settings.model, settings.prices, embedded=settings.is_embedded)
    usage = completion.usage
    prompt, completion_tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    cost = usage_cost(price, prompt, completion_tokens, cached_tokens(usage), factor=BATCH_PRICE_FACTOR)
    record = CallRecord(at=time.time(), model=settings.model, request_hash=item.custom_id[:16], prompt_tokens=prompt,
                        completion_tokens=completion_tokens, cached_tokens=cached_tokens(usage), cost=cost,
                        latency=0.0, outcome="ok", raw_reply=content)  # fmt: skip
    total = Usage(prompt_tokens=prompt, completion_tokens=completion_tokens, cached_tokens=cached_tokens(usage),
                  requests=1, cost=cost)  # fmt: skip
    return StructuredReply[ExtractionAnswer](value=value, usage=total, attempts=1, retries=0, reasks=0,
                                             raw_replies=[content], calls=[record])  # fmt: skip


class CollectReport(BaseModel):
    batches: int = 0
    outcomes: list[SourceOutcome] = []
    requeued: dict[str, str] = {}  # source path: why it went back to the normal queue
    waiting: list[str] = []  # batch ids still running


def collect(
    kb_root: Path, settings: Settings, store: StateStore, client: openai.OpenAI, runner: Runner
) -> CollectReport:
    """Write the results of every finished batch; what did not come back is due again."""
    report = CollectReport()
    runner.index = KBIndex.load(kb_root, exclude=[settings.inbox_dir])
    for record in refresh(store, client):
        if record.status not in FINISHED:
            report.waiting.append(record.id)
            continue
        report.batches += 1
        results = read_results(client, record.output_file_id) | read_results(client, record.error_file_id)
        for item in record.items:
            why = _collect_item(kb_root, settings, runner, item, results.get(item.custom_id), report)
            if why is not None:
                store.update(item.source_path, state=SourceState.DUE, last_error=f"batch {record.id}: {why}")
                report.requeued[item.source_path] = why
        store.save_batch(record.model_copy(update={"collected_at": time.time()}).row())
    return report


def _collect_item(kb_root: Path, settings: Settings, runner: Runner, item: BatchItem,
                  line: dict[str, Any] | None, report: CollectReport) -> str | None:  # fmt: skip
    """Write one item's result; returns why it goes back to the queue instead, if it does."""
    if line is None:
        return "no result (failed or expired)"
    response = line.get("response") or {}
    if line.get("error") or response.get("status_code") != 200:
        return f"the request failed: {json.dumps(line.get('error') or response.get('body'))[:200]}"
    view, _ = planning_view(kb_root, settings)
    text = view.read(item.source_path)
    try:
        source = parse_source(kb_root / item.source_path, text or "", settings.max_source_bytes)
    except SourceError as exc:
        return f"the source no longer loads: {exc.problem}"
    if content_hash(source.text) != item.content_hash:
        return "the source changed after it was sent"
    try:
        reply = batch_reply(ChatCompletion.model_validate(response.get("body")), settings, item)
    except (ValueError, ValidationError) as exc:
        return f"the answer is unusable: {' '.join(str(exc).split())[:200]}"
    request = PreparedRequest(source_path=item.source_path, agent=item.agent, messages=[], prompt_hash=item.prompt_hash)
    assert runner.index is not None
    result = judge_answer(source, request, reply, settings, runner.index, llm=None)
    task = TaskResult(source_path=item.source_path, worker=BATCH_WORKER, result=result, content_hash=item.content_hash,
                      usage=result.usage, calls=result.calls, agent=item.agent)  # fmt: skip
    report.outcomes.append(runner.finish(task, runner=BATCH_RUNNER))
    return None
