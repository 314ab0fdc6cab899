"""One source through the whole path, and one cycle over an inbox.

Every per-source problem (a malformed file, an LLM that gives up, a commit
that fails) becomes an :class:`Outcome` with a one-line error, so a cycle
goes on with the rest.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from extractor.config import Settings
from extractor.extract import extract_source
from extractor.gitrepo import GitError, Identity
from extractor.kb import KBIndex
from extractor.llm import LLMError, StructuredClient, Usage
from extractor.localmodel import LocalModelError
from extractor.prompts import PromptError
from extractor.sources import Source, SourceError, SourceStatus, load_source
from extractor.writer import ChangeSet, WriteError, apply_changes, plan_changes

MANUAL_RUNNER = "manual extraction"
CYCLE_RUNNER = "headless extraction cron"


class OutcomeKind(StrEnum):
    PROCESSED = "processed"
    NULL_RESULT = "null-result"
    PLANNED = "planned"  # dry run: drafts computed, nothing written
    REFUSED = "refused"  # not extracted: already done, not a source, outside the KB
    FAILED = "failed"


class Outcome(BaseModel):
    source_path: str
    kind: OutcomeKind
    error: str | None = None
    commit: str | None = None
    changes: ChangeSet | None = None
    usage: Usage = Usage()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind in (OutcomeKind.PROCESSED, OutcomeKind.NULL_RESULT, OutcomeKind.PLANNED)


def relative_source_path(kb_root: Path, path: Path) -> str:
    return path.resolve().relative_to(kb_root.resolve()).as_posix()


def process_source(
    kb_root: Path,
    path: Path,
    settings: Settings,
    llm: StructuredClient,
    *,
    worker: int,
    runner: str,
    force: bool = False,
    dry_run: bool = False,
    today: str | None = None,
) -> Outcome:
    """Extract one source and commit its drafts; never raises for a per-source problem."""
    started = time.monotonic()
    try:
        source_path = relative_source_path(kb_root, path)
    except ValueError:
        return Outcome(source_path=str(path), kind=OutcomeKind.REFUSED, error="not inside the knowledge base")

    def done(kind: OutcomeKind, **values: object) -> Outcome:
        return Outcome(source_path=source_path, kind=kind, seconds=time.monotonic() - started, **values)

    try:
        source = load_source(path)
    except SourceError as exc:
        return done(OutcomeKind.FAILED, error=exc.problem)
    if source.is_done and not force:
        return done(OutcomeKind.REFUSED, error=f"already {source.status.value}; use --force to re-extract")

    usage = Usage()
    try:
        index = KBIndex.load(kb_root, exclude=[settings.inbox_dir])
        result = extract_source(source, source_path, settings, llm, index, replace_previous=force)
        usage = result.usage
        changes = plan_changes(
            kb_root,
            source,
            result,
            settings,
            index,
            today=today or datetime.date.today().isoformat(),
            worker=worker,
            runner=runner,
            replace_previous=force,
        )
        if dry_run:
            return done(OutcomeKind.PLANNED, changes=changes, usage=usage)
        commit = apply_changes(kb_root, changes, Identity(name=settings.author_name, email=settings.author_email))
    except LLMError as exc:
        return done(OutcomeKind.FAILED, error=f"LLM failed: {exc}", usage=exc.usage)
    except (WriteError, GitError, PromptError, LocalModelError, OSError) as exc:
        return done(OutcomeKind.FAILED, error=" ".join(str(exc).split()), usage=usage)
    kind = OutcomeKind.PROCESSED if changes.status == "processed" else OutcomeKind.NULL_RESULT
    return done(kind, commit=commit, changes=changes, usage=usage)


class InboxEntry(BaseModel):
    path: Path
    source: Source | None = None
    error: str | None = None


def scan_inbox(kb_root: Path, settings: Settings) -> list[InboxEntry]:
    """Every markdown file in the inbox, parsed (never grepped) for its status."""
    inbox = kb_root / settings.inbox_dir
    entries = []
    for path in sorted(inbox.glob("*.md")) if inbox.is_dir() else []:
        try:
            entries.append(InboxEntry(path=path, source=load_source(path)))
        except SourceError as exc:
            entries.append(InboxEntry(path=path, error=exc.problem))
    return entries


def due_sources(entries: list[InboxEntry], limit: int) -> list[Path]:
    due = [e.path for e in entries if e.source is not None and e.source.status is SourceStatus.UNPROCESSED]
    return due[:limit]


def run_cycle(
    kb_root: Path,
    settings: Settings,
    llm: StructuredClient,
    *,
    worker: int = 1,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Extract up to ``max_per_cycle`` unprocessed sources, one after another."""
    outcomes = []
    for path in due_sources(scan_inbox(kb_root, settings), settings.max_per_cycle):
        outcome = process_source(kb_root, path, settings, llm, worker=worker, runner=CYCLE_RUNNER)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
