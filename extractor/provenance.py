"""Provenance on demand: which commit, agent, worker, model and prompt made a claim file, at what cost."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from extractor.gitrepo import GitError, git
from extractor.state import StateStore


class ProvenanceError(RuntimeError):
    """No extraction commit created this file."""


class Provenance(BaseModel):
    path: str
    commit: str
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


def claim_provenance(kb: Path, path: str) -> Provenance:
    """From the commit that added the file (on any branch) and the state store's record of its source."""
    try:
        commits = git(kb, "log", "--all", "--diff-filter=A", "--format=%H", "--", path).split()
    except GitError as exc:
        raise ProvenanceError(f"{path}: {exc}") from exc
    if not commits:
        raise ProvenanceError(f"{path}: no commit added this file")
    commit = commits[-1]
    message = git(kb, "log", "-1", "--format=%B", commit)
    source = re.search(r"^- Source: (.+)$", message, re.M)
    if source is None:
        raise ProvenanceError(f"{path}: added by {commit[:12]}, which is not an extraction commit")
    worker = re.search(r"\(worker (\d+)\)", message)

    def trailer(key: str) -> str:
        return git(kb, "log", "-1", f"--format=%(trailers:key={key},valueonly,unfold)", commit).strip()

    record = Provenance(
        path=path,
        commit=commit,
        branches=git(kb, "branch", "--format=%(refname:short)", "--contains", commit).split(),
        date=git(kb, "log", "-1", "--format=%cI", commit).strip(),
        agent=trailer("Pentagon-Agent") or message.split(":", 1)[0],
        worker=int(worker.group(1)) if worker else None,
        model=trailer("Extraction-Model"),
        prompt_hash=trailer("Extraction-Prompt"),
        source=source.group(1).strip(),
    )
    store_file = kb / ".extractor" / "state.db"
    if store_file.exists():
        store = StateStore.open(kb)
        try:
            row = store.get(record.source)
        finally:
            store.close()
        if row is not None and row.commit_sha == commit:
            record = record.model_copy(update={
                "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
                "cost": row.cost, "duration_seconds": row.duration,
            })  # fmt: skip
    return record
