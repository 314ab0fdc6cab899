"""The one path a source takes: load, route, extract, plan and apply under the write lock, record, publish.

``extract`` runs it whole (:meth:`SourceService.process`). A cycle runs
:func:`draft` in a worker process and :meth:`SourceService.conclude` in the
main process; batch collect drafts from the batch's answer and concludes the
same way. Nothing else loads, plans, commits or records a source.

Planning happens while the write lock is held, against the files as they are
at that moment: an edit saved or another extraction committed while this one
waited is built upon, never overwritten. A file that a person has changed and
not committed is never written nor committed: the source fails with a
one-line reason, the KB stays as it was, and a run retries it later (its
answer comes from the response cache).
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from extractor.commit.apply import commit_extraction, refuse_unsafe_write
from extractor.commit.changeset import ChangeSet, WriteError
from extractor.commit.plan import plan_changes, planning_view, report_for
from extractor.core.errors import ExtractorError
from extractor.core.records import OutcomeKind, SourceOutcome, branch_verdict
from extractor.core.settings import Settings
from extractor.core.text import one_line
from extractor.extraction.extract import ExtractionResult
from extractor.extraction.strategy import extract_source
from extractor.kb.gitrepo import read_at
from extractor.kb.index import KBIndex, KBIndexError
from extractor.kb.locks import WRITE_LOCK_WAIT, kb_lock
from extractor.kb.sources import Source, SourceError, check_source_file, content_hash, load_source, parse_source
from extractor.llm.client import LLMError, StructuredClient
from extractor.review.publish import publish
from extractor.review.stage import ReviewStage, StageResult
from extractor.store.state import SourceRow, SourceState, StateCorruptError, StateStore, StoreError

MANUAL_RUNNER = "manual extraction"
CYCLE_RUNNER = "headless extraction cron"
BATCH_RUNNER = "batch extraction"
log = logging.getLogger("extractor")


class NotOnMainError(ExtractorError):
    """Branch mode drafts from the main branch's copy of a source, and it has none."""


class NotRecordedError(StoreError):
    """A source's outcome that the state store could not record (a full disk); the message leads with the
    outcome itself."""


def not_recorded(outcome: SourceOutcome, problem: StoreError) -> str:
    """The one line for an outcome the store could not record: the source's own failure (which names the
    write that failed) first, the store's error after it."""
    if outcome.done:
        what = f"{outcome.kind.value}, committed as {(outcome.commit or '?')[:12]}"
        return f"{outcome.source_path}: {what}, but not recorded ({problem}); the next run finds the commit in git"
    if outcome.error and str(problem) in outcome.error:
        return f"{outcome.source_path}: {outcome.error}"
    return f"{outcome.source_path}: {outcome.error or outcome.kind.value} (not recorded either: {problem})"


class Drafted(BaseModel):
    """A source's drafts, computed from the text with ``content_hash``; nothing is written yet."""

    source_path: str
    worker: int
    content_hash: str
    extraction: ExtractionResult
    seconds: float = 0.0


def relative_source_path(kb_root: Path, path: Path) -> str:
    """The source's path in the KB; a link is not followed, so it is refused as itself, not as its target."""
    return (path.absolute().parent.resolve() / path.name).relative_to(kb_root.resolve()).as_posix()


def load(kb_root: Path, source_path: str, settings: Settings, base: str | None) -> Source:
    """The source the drafts are based on: the work tree's file in main mode, ``base``'s copy in branch mode."""
    path = kb_root / source_path
    try:
        if base is None:
            return load_source(path, settings.max_source_bytes)
        if path.exists() or path.is_symlink():  # a worker's clone may not have checked it out: the commit counts
            check_source_file(path, settings.max_source_bytes)
        text = read_at(kb_root, base, source_path)
        if text is None:
            raise NotOnMainError(f"not on the {settings.main_branch} branch")
        return parse_source(path, text, settings.max_source_bytes)
    except UnicodeDecodeError as exc:
        raise SourceError(source_path, f"not UTF-8 text (byte {exc.start})") from None


def draft(
    kb_root: Path,
    source_path: str,
    settings: Settings,
    llm: StructuredClient,
    index: Callable[[], KBIndex],
    *,
    worker: int,
    base: str | None,
    force: bool = False,
    refuse_done: bool = False,
) -> Drafted | SourceOutcome:
    """Load and extract one source: the part of the path that calls the model and writes nothing.

    Every per-source problem comes back as an outcome (invalid, refused or
    failed), never as an exception. ``index`` is called only once the source
    has loaded, since loading the KB's index is the costly part on a large KB.
    """
    started = time.monotonic()

    def failed(kind: OutcomeKind, error: str, **values: object) -> SourceOutcome:
        return SourceOutcome(source_path=source_path, kind=kind, worker=worker, error=error,
                             seconds=time.monotonic() - started, **values)  # fmt: skip

    try:
        source = load(kb_root, source_path, settings, base)
    except SourceError as exc:
        return failed(OutcomeKind.INVALID, exc.problem)
    except NotOnMainError as exc:
        return failed(OutcomeKind.FAILED, str(exc))
    if refuse_done and source.is_done and not force:
        return failed(OutcomeKind.REFUSED, f"already {source.status.value}; use --force to re-extract")
    agent = settings.agent_for(source.domain)
    try:
        extraction = extract_source(source, source_path, settings, llm, index(), replace_previous=force)
    except LLMError as exc:
        return failed(OutcomeKind.FAILED, f"LLM failed: {exc}", usage=exc.usage, calls=exc.calls, agent=agent)
    except (ExtractorError, OSError) as exc:
        return failed(OutcomeKind.FAILED, one_line(str(exc)), agent=agent)
    return Drafted(source_path=source_path, worker=worker, content_hash=content_hash(source.text),
                   extraction=extraction, seconds=time.monotonic() - started)  # fmt: skip


def retry_delay(attempts: int, settings: Settings) -> float:
    """Exponential backoff: base, 2×base, 4×base … capped."""
    return min(settings.retry_base_seconds * 2 ** max(0, attempts - 1), settings.retry_cap_seconds)


class SourceService:
    """Takes sources of one KB to recorded outcomes, one at a time, as ``runner`` (named in the provenance).

    ``count_failures``: a run counts each failure towards backoff and parking;
    ``extract`` by hand leaves the store as it was when its source fails.
    """

    def __init__(
        self,
        kb_root: Path,
        settings: Settings,
        store: StateStore,
        *,
        runner: str,
        count_failures: bool = True,
        on_outcome: Callable[[SourceOutcome], None] | None = None,
    ) -> None:
        self.kb_root = kb_root
        self.settings = settings
        self.store = store
        self.runner = runner
        self.count_failures = count_failures
        self.on_outcome = on_outcome
        self.index: KBIndex | None = None  # the planning index, kept between sources and refreshed after commits
        self._reviewer: ReviewStage | None = None

    def load_index(self) -> KBIndex:
        """The index of main as it is now; a reload reads only what the commits since changed."""
        self.index = KBIndex.load(
            self.kb_root, exclude=[self.settings.inbox_dir], previous=self.index, at=self.settings.main_branch
        )
        return self.index

    def process(
        self, path: Path, llm: StructuredClient, *, worker: int, force: bool = False, dry_run: bool = False
    ) -> SourceOutcome:
        """``extract``: one source from its file to a recorded outcome."""
        try:
            source_path = relative_source_path(self.kb_root, path)
        except ValueError:
            return SourceOutcome(source_path=str(path), kind=OutcomeKind.REFUSED, worker=worker,
                                 error=f"not inside the knowledge base {self.kb_root}")  # fmt: skip
        previous = self.store.get(source_path)
        if not dry_run and not self.store.claim(source_path, os.getpid(), worker):
            holder = previous.owner_pid if previous else "?"
            return SourceOutcome(source_path=source_path, kind=OutcomeKind.REFUSED, worker=worker,
                                 error=f"being extracted by another process (pid {holder})")  # fmt: skip
        try:
            return self._process(source_path, llm, worker, force, dry_run, previous)
        except BaseException as exc:
            if not dry_run:
                try:
                    self.store.restore(source_path, previous)
                except StoreError as cleanup:  # secondary: the error that stopped the source is the one to report
                    log.info(f"{source_path}: its state was not restored after {type(exc).__name__}: {cleanup}",
                             extra={"source": source_path, "error": str(cleanup)})  # fmt: skip
            raise

    def _process(
        self, source_path: str, llm: StructuredClient, worker: int, force: bool, dry_run: bool,
        previous: SourceRow | None,
    ) -> SourceOutcome:  # fmt: skip
        try:
            _, base = planning_view(self.kb_root, self.settings)
        except WriteError as exc:
            failed = SourceOutcome(source_path=source_path, kind=OutcomeKind.FAILED, worker=worker, error=str(exc))
            return self.record(failed, previous=previous, claimed=not dry_run)
        drafted = draft(self.kb_root, source_path, self.settings, llm, self.load_index, worker=worker, base=base,
                        force=force, refuse_done=True)  # fmt: skip
        if isinstance(drafted, SourceOutcome):
            return self.record(drafted, previous=previous, claimed=not dry_run)
        return self.conclude(drafted, force=force, dry_run=dry_run, previous=previous)

    def conclude(
        self, drafted: Drafted, *, force: bool = False, dry_run: bool = False, previous: SourceRow | None = None
    ) -> SourceOutcome:
        """Plan against the KB as it is now, under the write lock, commit, record and publish.

        A failure here (the source changed meanwhile, someone's uncommitted
        change in a file to write, git refusing) is recorded like any other.
        """
        extraction = drafted.extraction
        values: dict[str, object] = dict(
            source_path=drafted.source_path, worker=drafted.worker, agent=extraction.agent, model=extraction.model,
            prompt_hash=extraction.prompt_hash, usage=extraction.usage, calls=extraction.calls,
            seconds=drafted.seconds,
        )  # fmt: skip
        try:
            if dry_run:
                changes, base, _ = self._plan(drafted, force)
                if base is None:  # what the real run would refuse, the dry run refuses too
                    refuse_unsafe_write(self.kb_root, [c.path for c in changes.changes], drafted.source_path)
                return self.record(SourceOutcome(kind=OutcomeKind.PLANNED, **values, **_written(changes)))
            with kb_lock(self.kb_root, "write", wait=WRITE_LOCK_WAIT):
                changes, base, source = self._plan(drafted, force)
                commit, branch, note = commit_extraction(
                    self.kb_root, changes, self.settings, drafted.source_path, source.slug, base, replace=force
                )
        except (ExtractorError, OSError) as exc:
            return self.record(SourceOutcome(kind=OutcomeKind.FAILED, error=one_line(str(exc)), **values),
                               previous=previous)  # fmt: skip
        if note is not None:
            log.info("null result sent to review", extra={"source": drafted.source_path, "why": note})
            changes = changes.model_copy(update={"notes": [*changes.notes, note]})
        if branch is None and base is None and self.index is not None:
            try:
                self.index.refresh([change.path for change in changes.changes])
            except KBIndexError as exc:  # a cache: the next source loads it again; the outcome is what to record
                log.info(f"the KB index did not follow the commit: {exc}", extra={"source": drafted.source_path})
                self.index = None
        kind = OutcomeKind.PROCESSED if changes.status == "processed" else OutcomeKind.NULL_RESULT
        report = report_for(extraction, changes, commit, branch, drafted.worker)
        outcome = SourceOutcome(kind=kind, commit=commit, branch=branch, report=report, **values, **_written(changes))
        return self.record(outcome, previous=previous)

    def _plan(self, drafted: Drafted, force: bool) -> tuple[ChangeSet, str | None, Source]:
        """The change set against the files as they are now; refused if the source changed since it was read."""
        view, base = planning_view(self.kb_root, self.settings)
        source = load(self.kb_root, drafted.source_path, self.settings, base)
        if content_hash(source.text) != drafted.content_hash:
            raise WriteError("the source changed while it was being extracted")
        index = self.load_index() if self.index is None or force else self.index
        changes = plan_changes(
            self.kb_root, source, drafted.extraction, self.settings, index,
            today=datetime.date.today().isoformat(), worker=drafted.worker, runner=self.runner,
            replace_previous=force, view=view,
        )  # fmt: skip
        return changes, base, source

    def record(self, outcome: SourceOutcome, previous: SourceRow | None = None, claimed: bool = True) -> SourceOutcome:
        """Tell the state store (and, for a new extraction branch, the remote and forge) what happened.

        When the store cannot take it (a full disk), the error says first what happened to the source (the
        write that failed, or the commit made), then that it was not recorded: git keeps every commit, and a
        source left running by a process that is gone counts as due again.
        """
        try:
            return self._record(outcome, previous, claimed)
        except StateCorruptError:
            raise  # the store itself is the problem: its line says to run `extractor doctor`, which reads git
        except StoreError as exc:
            raise NotRecordedError(not_recorded(outcome, exc)) from exc

    def _record(self, outcome: SourceOutcome, previous: SourceRow | None, claimed: bool) -> SourceOutcome:
        path = outcome.source_path
        self.store.log_calls(path, outcome.worker, outcome.calls, agent=outcome.agent)
        if outcome.kind is OutcomeKind.PLANNED:
            return outcome
        if outcome.done:
            outcome = self._record_done(outcome)
        elif not self.count_failures:
            if claimed:
                self.store.restore(path, previous)
            return outcome
        else:
            outcome = self._record_failure(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def _record_failure(self, outcome: SourceOutcome) -> SourceOutcome:
        path = outcome.source_path
        row = self.store.get(path)
        invalid = outcome.kind is OutcomeKind.INVALID
        attempts = (row.attempts if row else 0) + (0 if invalid else 1)
        if invalid:
            state, kind, retry_at = SourceState.INVALID, OutcomeKind.INVALID, None
        elif attempts >= self.settings.max_source_attempts:
            state, kind, retry_at = SourceState.PARKED, OutcomeKind.PARKED, None
        else:
            state, kind = SourceState.FAILED, OutcomeKind.FAILED
            retry_at = time.time() + retry_delay(attempts, self.settings)
        self.store.update(
            path, state=state, attempts=attempts, last_error=outcome.error, next_retry_at=retry_at, owner_pid=None,
            worker=outcome.worker, finished_at=time.time(), duration=outcome.seconds, **_usage_columns(outcome),
        )  # fmt: skip
        return outcome.model_copy(update={"kind": kind})

    def _record_done(self, outcome: SourceOutcome) -> SourceOutcome:
        path = outcome.source_path
        assert outcome.report is not None
        self.store.record_extraction(outcome.report)
        common = dict(
            attempts=0, last_error=None, next_retry_at=None, owner_pid=None, worker=outcome.worker,
            finished_at=time.time(), duration=outcome.seconds, commit_sha=outcome.commit, model=outcome.model,
            prompt_hash=outcome.prompt_hash, changed_after_processing=False, file_status=outcome.kind.value,
            **_usage_columns(outcome),
        )  # fmt: skip
        if outcome.branch is not None:
            self.store.update_or_insert(path, state=SourceState.AWAITING_REVIEW, branch=outcome.branch,
                                        published=False, **common)  # fmt: skip
            return self.review_and_publish(outcome, path, outcome.branch)
        file = self.kb_root / path
        if self.settings.commit_mode == "branch":
            # A null result committed onto main, checked out or not: the commit holds what was written, and the
            # work tree's file (another branch's copy, or none) is recorded as seen, so a scan does not re-read it.
            digest = content_hash(read_at(self.kb_root, outcome.commit or "", path) or "")
            seen = file.stat() if file.is_file() else None
            self.store.update_or_insert(
                path, state=SourceState.DONE, content_hash=digest, processed_hash=digest,
                mtime_ns=seen.st_mtime_ns if seen else None, size=seen.st_size if seen else None, **common,
            )  # fmt: skip
            return outcome
        digest = content_hash(file.read_text(encoding="utf-8"))
        stat = file.stat()
        self.store.update_or_insert(
            path, state=SourceState.DONE, content_hash=digest, processed_hash=digest,
            mtime_ns=stat.st_mtime_ns, size=stat.st_size, **common,
        )  # fmt: skip
        return outcome

    @property
    def reviewer(self) -> ReviewStage | None:
        """The review stage, when a reviewer model is configured (made on first use: it opens a client)."""
        if not self.settings.reviews:
            return None
        if self._reviewer is None:
            self._reviewer = ReviewStage(self.kb_root, self.settings, self.store, self._current_index)
        return self._reviewer

    def _current_index(self) -> KBIndex:
        return self.index if self.index is not None else self.load_index()

    def review_and_publish(self, outcome: SourceOutcome, source_path: str, branch: str) -> SourceOutcome:
        """The review stage (fixes, reviews, the accept policy), then publishing unless the policy accepted."""
        staged = self.review(branch)
        update: dict[str, object] = {}
        if staged is not None:
            notes = [*staged.fixes, *staged.skipped, *(f"not accepted: {r}" for r in staged.refused)]
            update = {"review_verdict": branch_verdict(staged.reviews, list(self.settings.review_agents)),
                      "review_notes": notes}  # fmt: skip
            if staged.accepted is not None:
                return outcome.model_copy(update={**update, "accepted": staged.accepted.commit or ""})
        url, error = self.publish(source_path, branch, staged.comment(self.settings.review_agents) if staged else None)
        return outcome.model_copy(update={**update, "published": url, "publish_error": error})

    def review(self, branch: str) -> StageResult | None:
        """Run the review stage on ``branch``; None when reviews are off. A failure leaves the branch as it is."""
        stage = self.reviewer
        if stage is None:
            return None
        try:
            return stage.run(branch)
        except (ExtractorError, OSError) as exc:
            log.info("review stage failed", extra={"branch": branch, "error": str(exc)})
            return StageResult(branch=branch, skipped=[f"review stage failed: {one_line(str(exc))}"])

    def publish(self, source_path: str, branch: str, comment: str | None = None) -> tuple[str | None, str | None]:
        """Push the extraction branch, open its pull request and post the review comment, as configured: the
        pull request's URL ("" when only pushed) or the error. A failure is kept for the next cycle's retry;
        the local commit stays."""
        if not (self.settings.remote or self.settings.forge):
            return None, None
        try:
            opened = publish(self.kb_root, branch, self.settings, comment)
        except ExtractorError as exc:
            self.store.update(source_path, branch=branch, published=False, publish_error=str(exc))
            log.info("publish failed", extra={"source": source_path, "error": str(exc)})
            return None, str(exc)
        url = opened.url if opened else None
        self.store.update(source_path, branch=branch, published=True, publish_error=None, pull_request=url,
                          pull_number=opened.number if opened else None)  # fmt: skip
        return url or "", None


def _written(changes: ChangeSet) -> dict[str, object]:
    return {
        "message": changes.message,
        "changes": changes.changes,
        "claims": changes.claim_titles,
        "enrichments": changes.enriched_titles,
        "entities_created": changes.entities_created,
        "entities_updated": changes.entities_updated,
        "notes": changes.notes,
    }


def _usage_columns(outcome: SourceOutcome) -> dict[str, object]:
    usage = outcome.usage
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens, "cost": usage.cost}
