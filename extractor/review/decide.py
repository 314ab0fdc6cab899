"""A person's (or the accept policy's) decision on an extraction branch: the one path from a decision to git
and the state store, shared by ``review accept|reject``, the review page and ``auto_accept``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from extractor.core.settings import Settings
from extractor.kb.locks import WRITE_LOCK_WAIT, kb_lock
from extractor.review.branches import accept, branch_for, describe_branch, record_decision, reject
from extractor.store.state import SourceState


class Decision(BaseModel):
    """What a decision did: the branch, its source, and the commit it made on the main branch (if any)."""

    branch: str
    source: str
    action: str  # accepted | rejected | retry
    commit: str | None


def accept_branch(kb: Path, slug: str, settings: Settings, expected_tip: str | None = None) -> Decision:
    """Merge the branch into main under the write lock, and mark its source done; ``expected_tip``: only if
    the branch is still at that commit (the accept policy merges what was reviewed, nothing newer)."""
    item = describe_branch(kb, branch_for(slug), settings)
    with kb_lock(kb, "write", wait=WRITE_LOCK_WAIT):
        commit = accept(kb, slug, settings, expected_tip)
    record_decision(kb, item.source, SourceState.DONE, settings)
    return Decision(branch=item.branch, source=item.source, action="accepted", commit=commit)


def reject_branch(kb: Path, slug: str, settings: Settings, reason: str | None, retry: bool) -> Decision:
    """Delete the branch; record the reason on the source in main, or (``retry``) make the source due again."""
    item = describe_branch(kb, branch_for(slug), settings)
    with kb_lock(kb, "write", wait=WRITE_LOCK_WAIT):
        commit = reject(kb, slug, settings, reason, retry)
    record_decision(kb, item.source, SourceState.DUE if retry else SourceState.DONE, settings)
    return Decision(branch=item.branch, source=item.source, action="retry" if retry else "rejected", commit=commit)
