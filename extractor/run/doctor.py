"""``extractor doctor``: check the state database, and rebuild a damaged one from git.

Git holds every outcome that matters: each source's status in its
frontmatter, the extraction commits with their trailers on the main branch,
and the extraction branches awaiting review. From them a new store gets what
correctness needs: no processed source is extracted again, every pending
branch is known (and published again where it may not have been), and each
source names the commit, model and prompt that processed it. The rest of the
store is history and caches (LLM calls and their costs, cycles, the reviewer's
reviews, the gates' reports, open Batch API jobs): a table of the damaged file
that still reads whole is copied over, and the report names what is lost.
The damaged file is kept beside the new one, named with the time it was set
aside.

A state store in Postgres (``state_url``) is no file of the KB: doctor checks that
it opens (reached, logged in, migrated) and leaves its repair to Postgres's tools.
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from pydantic import BaseModel, Field

from extractor.commit.message import FIX_TRAILER, CommitInfo, extraction_branch, parse_message, trailers
from extractor.core.errors import ConfigurationError
from extractor.core.settings import Settings
from extractor.kb.gitrepo import GitError, git, read_at, rev_parse
from extractor.kb.locks import WRITE_LOCK_WAIT, kb_lock
from extractor.kb.sources import content_hash
from extractor.kb.statedir import STATE_DIR, ensure_state_dir
from extractor.llm.ratelimit import LIMITS_FILE
from extractor.review.branches import extraction_commit
from extractor.run.scheduler import scan_inbox
from extractor.store.state import SourceState, StateCorruptError, StateStore, StoreError, open_store, state_path

# The store's tables that git cannot give back, and what losing each one means.
HISTORY = {
    "llm_calls": "the LLM call log: costs, and today's spending counted against budget_per_day",
    "cycles": "the cycle history (status's last cycle)",
    "extractions": "the gates' reports of each extraction: flags in review show and the review page, "
    "evidence anchoring in status",
    "reviews": "the reviewer model's reviews: pending branches are reviewed again, at a cost",
    "review_failures": "counts of failed reviews",
    "review_fixes": "which branch commits were checked for mechanical fixes (rebuilt from the fix commits)",
    "batches": "Batch API jobs: an open job's answers can no longer be collected; its sources are due again",
    "response_cache": "the response cache: a repeated request is paid again",
    "feed_entries": "which feed entries were ingested: a feed's old entries are fetched again, and refused as "
    "duplicates of the inbox's sources",
}
# What the old sources table adds to git's view of a source that is still due: its failures so far.
FAILURE_COLUMNS = ("state", "attempts", "last_error", "next_retry_at", "finished_at", "duration", "worker")


class DoctorReport(BaseModel):
    """What ``doctor`` found and did."""

    path: str
    healthy: bool
    problem: str | None = None  # why the store was rebuilt
    moved_to: str | None = None  # where the damaged file was kept
    sources: dict[str, int] = Field(default_factory=dict)  # sources by state in the new store
    from_commits: int = 0  # sources whose extraction commit was found in git
    pending_branches: int = 0
    kept: dict[str, int] = Field(default_factory=dict)  # table -> rows copied from the damaged file
    lost: list[str] = Field(default_factory=list)  # what no longer exists, in words
    notes: list[str] = Field(default_factory=list)
    postgres: bool = False  # the store is the Postgres database of state_url (path: its URL, redacted)

    def lines(self) -> list[str]:
        """The report as ``doctor`` prints it."""
        if self.postgres:
            return [
                f"{self.path}: the state store is a Postgres database (state_url), not a file doctor rebuilds: it "
                "opens and its schema is up to date; back it up and repair it with Postgres's own tools"
            ]
        if self.healthy:
            return [f"{self.path}: the state store is fine (integrity check: ok)", *self.notes]
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.sources.items())) or "no sources"
        lines = [f"{self.path}: rebuilt from git ({self.problem})"]
        if self.moved_to:
            lines.append(f"the damaged file is kept as {self.moved_to}")
        lines.append(f"sources: {counts}; {self.from_commits} with their extraction commit, "
                     f"{self.pending_branches} branch(es) awaiting review")  # fmt: skip
        kept = ", ".join(f"{table} ({rows} row(s))" for table, rows in sorted(self.kept.items()) if rows)
        lines += [f"kept from the damaged file: {kept}"] if kept else []
        lines += [f"lost: {what}" for what in self.lost]
        return lines + self.notes


def check_state(path: Path) -> str | None:
    """How the state database at ``path`` is damaged (None: it opens and its integrity check passes).

    Any other problem (a full disk, a lock another process holds, a file that cannot be opened) is raised as
    its :class:`StoreError`: a rebuild would not cure it.
    """
    try:
        store = StateStore(path)
    except StateCorruptError as exc:
        return _problem(exc)
    try:
        found = [row[0] for row in store.db.execute("PRAGMA integrity_check").fetchall()]
    except StateCorruptError as exc:
        return _problem(exc)
    finally:
        store.close()
    return None if found == ["ok"] else "integrity check: " + "; ".join(found[:3])


def _problem(exc: StoreError) -> str:
    cause = exc.__cause__
    return str(cause) if isinstance(cause, sqlite3.Error) else str(exc)


def rebuild_state(kb_root: Path, settings: Settings, force: bool = False) -> DoctorReport:
    """Check the KB's state store; rebuild it from git when it is damaged, missing, or ``force``.

    Holds the run lock (a running cycle or daemon is refused with :class:`LockHeldError`) and the write lock,
    so no extraction records into the file being replaced. A store in Postgres (``state_url``) is only opened.
    """
    if settings.state_url:
        return check_postgres(kb_root, settings, force)
    path = state_path(kb_root)
    ensure_state_dir(kb_root)
    with kb_lock(kb_root, "run"), kb_lock(kb_root, "write", wait=WRITE_LOCK_WAIT):
        notes = _check_limits(kb_root)
        problem = check_state(path) if path.exists() else "there was no state store"
        if problem is None and not force:
            return DoctorReport(path=str(path), healthy=True, notes=notes)
        report = DoctorReport(path=str(path), healthy=False, problem=problem or "asked to rebuild", notes=notes)
        moved = set_aside(path) if path.exists() else None
        report.moved_to = str(moved) if moved else None
        store = StateStore(path)
        try:
            old = _readable_tables(moved) if moved else {}
            _rebuild_sources(kb_root, settings, store, old.get("sources"), "batches" in old, report)
            _copy_history(store, old, report)
            if "review_fixes" not in old:
                _rebuild_fixes(kb_root, settings, store)
            report.sources = store.counts()
        finally:
            store.close()
    return report


def check_postgres(kb_root: Path, settings: Settings, force: bool) -> DoctorReport:
    """The Postgres state store opens (reached, logged in, migrated); it is not rebuilt, even when asked."""
    store = open_store(kb_root, settings)
    where = store.where
    store.close()
    if force:
        raise ConfigurationError(
            f"{where}: doctor --rebuild rebuilds the SQLite file under {STATE_DIR}/; the state store is a Postgres "
            "database (state_url): repair it with Postgres's own tools"
        )
    return DoctorReport(path=where, healthy=True, postgres=True)


def set_aside(path: Path) -> Path:
    """Move the database and its WAL and shared-memory files aside, under a name with the time; returns the
    database's new path. SQLite finds the moved WAL beside it, so the kept copy opens as it was."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 2
    while target.exists():
        target, number = path.with_name(f"{path.name}.damaged-{stamp}-{number}"), number + 1
    for suffix in ("-wal", "-shm", ""):  # the database last: a crash midway leaves no new file beside an old WAL
        companion = path.with_name(path.name + suffix)
        try:
            if companion.exists():
                companion.rename(target.with_name(target.name + suffix))
        except OSError as exc:
            raise StoreError(f"{companion}: cannot set the damaged file aside: {exc}") from exc
    return target


def _check_limits(kb_root: Path) -> list[str]:
    """The rate limiter's file holds only pauses and rate windows: a damaged one is set aside, nothing lost."""
    path = kb_root / STATE_DIR / LIMITS_FILE
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(path)
        try:
            found = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        found = [str(exc)]
    if found == ["ok"]:
        return []
    moved = set_aside(path)
    return [f"{path}: damaged ({found[0]}); set aside as {moved.name}, a new one starts empty (nothing is lost)"]


def _readable_tables(path: Path) -> dict[str, list[dict[str, object]]]:
    """Each table of the damaged file that still reads whole, by name; a table that fails anywhere is left
    out, since half a table (a call log without some calls) would be trusted as whole."""
    tables: dict[str, list[dict[str, object]]] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return tables
    db.row_factory = sqlite3.Row
    try:
        for table in ["sources", *HISTORY]:
            try:
                tables[table] = [dict(row) for row in db.execute(f"SELECT * FROM {table}").fetchall()]
            except sqlite3.Error:
                continue
    finally:
        db.close()
    return tables


def _copy_history(store: StateStore, old: dict[str, list[dict[str, object]]], report: DoctorReport) -> None:
    for table, meaning in HISTORY.items():
        rows = old.get(table)
        if rows is None:
            report.lost.append(meaning)
            continue
        columns = {row[1] for row in store.db.execute(f"PRAGMA table_info({table})").fetchall()}
        if rows:
            names = [name for name in rows[0] if name in columns]
            sql = f"INSERT OR IGNORE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
            with store.transaction() as db:
                db.executemany(sql, [[row[name] for name in names] for row in rows])
        report.kept[table] = len(rows)


def _rebuild_sources(
    kb_root: Path, settings: Settings, store: StateStore, old_rows: list[dict[str, object]] | None,
    batches_kept: bool, report: DoctorReport,
) -> None:  # fmt: skip
    """Sources from the inbox's frontmatter and the review branches (as a scan finds them), then what git says
    of each one processed: its extraction commit, model and prompt, and the text it was processed as. A source
    git calls unprocessed keeps its failures from the old table when it reads (and waits for its Batch API job
    when that job was kept)."""
    scan_inbox(kb_root, settings, store)
    latest = _extraction_commits(kb_root, settings.main_branch, settings.agent_trailer_key)
    old = {str(row["path"]): row for row in old_rows or []}
    for row in store.all_sources().values():
        if row.state is SourceState.DONE and row.path in latest:
            sha, at, info = latest[row.path]
            text = _text_at(kb_root, sha, row.path)
            processed = content_hash(text) if text is not None else None
            store.update(row.path, commit_sha=sha, model=info.model or None, prompt_hash=info.prompt_hash or None,
                         worker=info.worker, finished_at=at, processed_hash=processed,
                         changed_after_processing=processed is not None and processed != row.content_hash)  # fmt: skip
            report.from_commits += 1
        elif row.state is SourceState.AWAITING_REVIEW:
            branch = extraction_branch(Path(row.path).stem)
            found = _branch_extraction(kb_root, settings, branch)
            # Not known to be published: the next cycle pushes again and finds an open pull request again.
            store.update(row.path, branch=branch, published=False, **found)
            report.pending_branches += 1
            report.from_commits += "commit_sha" in found
        elif row.state is SourceState.DUE and row.path in old:
            before = old[row.path]
            carried = {SourceState.FAILED.value, SourceState.PARKED.value} | (
                {SourceState.BATCHED.value} if batches_kept else set()
            )
            if before.get("state") in carried:
                store.update(row.path, **{column: before.get(column) for column in FAILURE_COLUMNS})
    if old_rows is None:
        report.lost.append("failure counts and retry times: failed and parked sources are due again")


def _text_at(kb_root: Path, rev: str, path: str) -> str | None:
    try:
        return read_at(kb_root, rev, path)
    except UnicodeDecodeError:
        return None


def _extraction_commits(kb_root: Path, main_branch: str, trailer_key: str) -> dict[str, tuple[str, float, CommitInfo]]:
    """The latest extraction commit (not a rejection) of each source in the main branch's history."""
    if rev_parse(kb_root, f"refs/heads/{main_branch}") is None:
        return {}
    log = git(kb_root, "log", f"refs/heads/{main_branch}", "--format=%H%x00%ct%x00%B%x01", "--grep=^- Source: ")
    latest: dict[str, tuple[str, float, CommitInfo]] = {}
    for entry in log.split("\x01"):
        sha, _, rest = entry.strip("\n").partition("\x00")
        when, _, message = rest.partition("\x00")
        info = parse_message(message, trailer_key) if sha else None
        if info is not None and info.rejected is None and info.source not in latest:
            latest[info.source] = (sha, float(when), info)
    return latest


def _branch_extraction(kb_root: Path, settings: Settings, branch: str) -> dict[str, object]:
    """The store's columns for a pending branch's extraction commit (empty when the branch has none)."""
    tip = rev_parse(kb_root, f"refs/heads/{branch}")
    if tip is None:
        return {}
    try:
        base = git(kb_root, "merge-base", f"refs/heads/{settings.main_branch}", tip).strip()
        sha, info = extraction_commit(kb_root, base, tip, settings)
        when = float(git(kb_root, "log", "-1", "--format=%ct", sha).strip())
    except (GitError, ValueError):
        return {}
    if info is None:
        return {}
    return {"commit_sha": sha, "model": info.model or None, "prompt_hash": info.prompt_hash or None,
            "worker": info.worker, "finished_at": when}  # fmt: skip


def _rebuild_fixes(kb_root: Path, settings: Settings, store: StateStore) -> None:
    """The mechanical-fix commits on pending branches, from their trailer: no branch is fixed twice."""
    for row in store.all_sources().values():
        if row.state is not SourceState.AWAITING_REVIEW or row.branch is None:
            continue
        try:
            log = git(kb_root, "log", f"refs/heads/{settings.main_branch}..refs/heads/{row.branch}",
                      "--format=%H%x00%B%x01")  # fmt: skip
        except GitError:
            continue
        for entry in log.split("\x01"):
            sha, _, message = entry.strip("\n").partition("\x00")
            for_commit = trailers(message).get(FIX_TRAILER) if sha else None
            if for_commit:
                store.record_fix(row.branch, for_commit, sha)
