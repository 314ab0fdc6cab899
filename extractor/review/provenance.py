"""Provenance on demand: which commit, agent, worker, model and prompt made a claim or entity file, at what
cost, and which extractions edited it since (the timeline bullets each added to an entity note).

The commit is the one on the main branch that added the file; only a file
not (yet) on main is traced to the extraction branch that awaits review.
Stale copies elsewhere (a remote's old extraction branches) are never used.
An entity note a person created is traced all the same when extractions edited it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from extractor.commit.message import BRANCH_PREFIX, parse_message
from extractor.core.errors import ExtractorError
from extractor.core.settings import Settings
from extractor.kb.gitrepo import GitError, git, is_ancestor, lines_added_to, read_at, rev_parse
from extractor.kb.statedir import STATE_DIR
from extractor.store.state import STATE_FILE, open_store


class ProvenanceError(ExtractorError):
    """No extraction commit created this file."""


class Edit(BaseModel):
    """An extraction's change to a file it did not create: what an entity note's timeline owes to each source."""

    commit: str
    date: str
    agent: str
    worker: int | None
    model: str
    source: str
    added: list[str]  # the lines it added (an entity note's timeline bullets)


class Provenance(BaseModel):
    path: str
    commit: str
    found_on: str  # "main" (the main branch's name) or "pending review on extract/<slug>"
    branches: list[str]
    date: str
    agent: str
    worker: int | None
    model: str
    prompt_hash: str
    source: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    duration_seconds: float | None = None
    created_by_extraction: bool = True  # False: a person's file that extractions edited
    edits: list[Edit] = []
    reviewed_by: list[str] = []  # "lead (leo): <reviewer model>: approve", for each review of the extraction


def commit_that_added(kb: Path, path: str, main_branch: str) -> tuple[str, str] | None:
    """The commit that added ``path`` and where it was found: on the main branch, else on a local extraction
    branch awaiting review."""
    if rev_parse(kb, f"refs/heads/{main_branch}") is not None:
        found = git(kb, "log", "-1", "--diff-filter=A", "--format=%H", f"refs/heads/{main_branch}", "--", path).strip()
        if found:
            return found, main_branch
    pattern = f"refs/heads/{BRANCH_PREFIX}"
    for branch in git(kb, "for-each-ref", "--sort=-committerdate", "--format=%(refname)", pattern).split():
        found = git(kb, "log", "-1", "--diff-filter=A", "--format=%H", branch, "--", path).strip()
        if found:
            return found, f"pending review on {branch.removeprefix('refs/heads/')}"
    return None


def claim_provenance(kb: Path, path: str, settings: Settings) -> Provenance:
    """From the commit that added the file and the state store's record of its source."""
    try:
        found = commit_that_added(kb, path, settings.main_branch)
    except GitError as exc:
        raise ProvenanceError(f"{path}: {exc}") from exc
    if found is None:
        raise ProvenanceError(
            f"{path}: no commit on {settings.main_branch} or on an extraction branch awaiting review added this file"
        )
    commit, found_on = found
    try:
        is_file = read_at(kb, commit, path) is not None
    except UnicodeDecodeError:
        is_file = True  # a file all the same, if not a text one
    if not is_file:
        raise ProvenanceError(f"{path}: not a file (name one claim file)")
    info = parse_message(git(kb, "log", "-1", "--format=%B", commit), settings.agent_trailer_key)
    edits = extraction_edits(kb, path, commit, found_on, settings.agent_trailer_key)
    if info is None and not edits:
        raise ProvenanceError(f"{path}: added by {commit[:12]}, which is not an extraction commit")
    record = Provenance(
        path=path,
        commit=commit,
        found_on=found_on,
        branches=git(kb, "branch", "--format=%(refname:short)", "--contains", commit).split(),
        date=git(kb, "log", "-1", "--format=%cI", commit).strip(),
        agent=(info.identity or info.agent) if info else git(kb, "log", "-1", "--format=%an <%ae>", commit).strip(),
        worker=info.worker if info else None,
        model=info.model if info else "",
        prompt_hash=info.prompt_hash if info else "",
        source=info.source if info else "",
        created_by_extraction=info is not None,
        edits=edits,
    )
    if info is None:
        return record
    if settings.state_url or (kb / STATE_DIR / STATE_FILE).exists():
        store = open_store(kb, settings)
        try:
            row = store.get(record.source)
            reviews = store.latest_reviews(record.source)
        finally:
            store.close()
        if row is not None and row.commit_sha == commit:
            record = record.model_copy(update={
                "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
                "cost": row.cost, "duration_seconds": row.duration,
            })  # fmt: skip
        ours = [review for review in reviews if is_ancestor(kb, commit, review.commit)]
        record.reviewed_by = [f"{r.reviewer} ({r.agent}): {r.model}: {r.verdict}" for r in ours]
    return record


def extraction_edits(kb: Path, path: str, created: str, found_on: str, trailer_key: str) -> list[Edit]:
    """The extraction commits after ``created`` that changed ``path`` (on the main branch, or on the extraction
    branch it was found on), oldest first."""
    branch = found_on.removeprefix("pending review on ")
    edits = []
    for edit in reversed(lines_added_to(kb, f"{created}..refs/heads/{branch}", path)):
        info = parse_message(edit.message, trailer_key)
        if info is not None:
            edits.append(Edit(commit=edit.commit, date=edit.date, agent=info.identity or info.agent,
                              worker=info.worker, model=info.model, source=info.source, added=edit.added))  # fmt: skip
    return edits
