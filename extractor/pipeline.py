"""One source through the whole path, by hand (``extractor extract``).

Every per-source problem (a malformed file, an LLM that gives up, a commit
that fails) becomes an :class:`Outcome` with a one-line error.
"""

from __future__ import annotations

import datetime
import time
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from extractor.config import Settings
from extractor.contextsize import ContextTooSmallError
from extractor.extract import extract_source
from extractor.gitrepo import GitError
from extractor.kb import KBIndex
from extractor.llm import LLMError, StructuredClient, Usage
from extractor.localmodel import LocalModelError
from extractor.locks import LockHeldError, kb_lock
from extractor.prompts import PromptError
from extractor.report import ExtractionReport, build_report
from extractor.sources import SourceError, check_source_file, load_source, parse_source
from extractor.state import CallRecord
from extractor.writer import ChangeSet, WriteError, commit_extraction, plan_changes, planning_view

MANUAL_RUNNER = "manual extraction"
WRITE_LOCK_WAIT = 120.0


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
    branch: str | None = None  # the extraction branch, in branch mode
    changes: ChangeSet | None = None
    usage: Usage = Usage()
    agent: str | None = None
    calls: list[CallRecord] = []
    seconds: float = 0.0
    report: ExtractionReport | None = None  # what was committed, for the state store

    @property
    def ok(self) -> bool:
        return self.kind in (OutcomeKind.PROCESSED, OutcomeKind.NULL_RESULT, OutcomeKind.PLANNED)


def relative_source_path(kb_root: Path, path: Path) -> str:
    """The source's path in the KB; a link is not followed, so it is refused as itself, not as its target."""
    return (path.absolute().parent.resolve() / path.name).relative_to(kb_root.resolve()).as_posix()


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
        view, base = planning_view(kb_root, settings)
        if base is None:
            source = load_source(path, settings.max_source_bytes)
        else:  # branch mode: the source as it is on the main branch, read once
            check_source_file(path, settings.max_source_bytes)
            text = view.read(source_path)
            if text is None:
                return done(OutcomeKind.FAILED, error=f"not on the {settings.main_branch} branch")
            source = parse_source(path, text, settings.max_source_bytes)
    except SourceError as exc:
        return done(OutcomeKind.FAILED, error=exc.problem)
    except UnicodeDecodeError as exc:
        return done(OutcomeKind.FAILED, error=f"not UTF-8 text (byte {exc.start})")
    except WriteError as exc:
        return done(OutcomeKind.FAILED, error=str(exc))
    if source.is_done and not force:
        return done(OutcomeKind.REFUSED, error=f"already {source.status.value}; use --force to re-extract")

    usage, calls, agent = Usage(), [], settings.agent_for(source.domain)
    try:
        index = KBIndex.load(kb_root, exclude=[settings.inbox_dir])
        result = extract_source(source, source_path, settings, llm, index, replace_previous=force)
        usage, calls = result.usage, result.calls
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
            view=view,
        )
        if dry_run:
            return done(OutcomeKind.PLANNED, changes=changes, usage=usage, agent=agent, calls=calls)
        with kb_lock(kb_root, "write", wait=WRITE_LOCK_WAIT):
            commit, branch = commit_extraction(kb_root, changes, settings, source_path, source.slug, base, force)
    except LLMError as exc:
        return done(OutcomeKind.FAILED, error=f"LLM failed: {exc}", usage=exc.usage, agent=agent, calls=exc.calls)
    except (WriteError, GitError, PromptError, LocalModelError, LockHeldError, OSError, ContextTooSmallError) as exc:
        return done(OutcomeKind.FAILED, error=" ".join(str(exc).split()), usage=usage, agent=agent, calls=calls)
    kind = OutcomeKind.PROCESSED if changes.status == "processed" else OutcomeKind.NULL_RESULT
    report = build_report(result, changes, commit, branch, worker)
    return done(kind, commit=commit, branch=branch, changes=changes, usage=usage, agent=agent, calls=calls,
                report=report)  # fmt: skip
