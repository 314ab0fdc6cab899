"""Applying a planned change set: atomic file writes and one commit, journalled so a crash can be settled.

In main mode the files are written in the work tree and committed onto HEAD;
in branch mode the commit is made from the main branch's tip without touching
the work tree. A file a person has changed and not committed is never
overwritten or committed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pydantic import BaseModel
from pygit2.enums import FileStatus

from extractor.commit.changeset import ChangeSet, WriteError
from extractor.commit.message import extraction_branch
from extractor.core.settings import Settings
from extractor.kb.files import atomic_write, remove_temp_files
from extractor.kb.gitrepo import (
    GitError,
    Identity,
    build_commit,
    checkout_problem,
    commit_tree_on,
    head,
    is_ancestor,
    move_ref,
    rev_parse,
    sync_index,
    uncommitted,
)
from extractor.kb.statedir import STATE_DIR, ensure_state_dir

JOURNAL = "journal.json"


class Journal(BaseModel):
    """What a write in progress changes, so a crash at any point can be settled.

    ``commit`` is recorded once the commit object exists and before HEAD
    moves: with it, recovery finishes the write (every file is in place);
    without it, HEAD cannot have moved and recovery puts the files back.
    """

    source_path: str
    head: str | None
    originals: dict[str, str | None]
    commit: str | None = None


def apply_changes(kb_root: Path, changeset: ChangeSet, author: Identity, source_path: str | None = None) -> str:
    """Write the files and commit them; on any failure restore what was there.

    A journal of the original contents is written first and removed after the
    commit, so :func:`recover_interrupted_write` can finish or undo a write
    that a crash cut short. A file with changes a person has not committed is
    never overwritten nor committed: the write is refused before anything is
    touched (the source itself may be new to git: extracting it adds it).
    """
    refuse_unsafe_write(kb_root, [c.path for c in changeset.changes], new_allowed=source_path)
    originals: dict[str, str | None] = {}
    new_dirs: list[Path] = []
    for change in changeset.changes:
        file = kb_root / change.path
        originals[change.path] = file.read_text(encoding="utf-8") if file.is_file() else None
        missing = [d for d in [file.parent, *file.parent.parents] if not d.exists()]
        new_dirs.extend(d for d in missing if d not in new_dirs)
    journal = ensure_state_dir(kb_root) / JOURNAL
    paths = [c.path for c in changeset.changes]
    record = Journal(source_path=source_path or paths[-1], head=head(kb_root), originals=originals)
    atomic_write(journal, record.model_dump_json())
    commit: str | None = None
    try:
        for change in changeset.changes:
            file = kb_root / change.path
            if change.text is None:
                file.unlink(missing_ok=True)
            else:
                atomic_write(file, change.text)
        commit, parent = build_commit(kb_root, paths, changeset.message, author)
        atomic_write(journal, record.model_copy(update={"commit": commit}).model_dump_json())
        move_ref(kb_root, "HEAD", commit, parent)
    except BaseException:
        if commit is not None and head(kb_root) == commit:
            journal.unlink(missing_ok=True)  # interrupted after HEAD moved: the commit stands
            raise
        _restore(kb_root, originals, new_dirs)
        journal.unlink(missing_ok=True)
        raise
    sync_index(kb_root, commit, paths)
    journal.unlink(missing_ok=True)
    return commit


_NEW = FileStatus.WT_NEW | FileStatus.INDEX_NEW


def refuse_unsafe_write(kb_root: Path, paths: list[str], new_allowed: str | None = None) -> None:
    """Raise :class:`WriteError` when writing ``paths`` in the work tree and committing them onto HEAD now would
    take someone's uncommitted work with it (or land on a detached HEAD, or in the middle of a merge)."""
    if (problem := checkout_problem(kb_root)) is not None:
        raise WriteError(f"{problem} (nothing was written)")
    for path, status in uncommitted(kb_root, paths).items():
        if path == new_allowed and not status & ~_NEW:
            continue
        raise WriteError(f"{path} has uncommitted changes; commit or stash them and try again (nothing was written)")


def recover_interrupted_write(kb_root: Path) -> str | None:
    """Finish or undo a write that a crash interrupted; says which, or None if there was none.

    Call it holding the write lock. It also clears what a killed write leaves
    behind: temp files next to the files it wrote and private git indexes.
    """
    journal = kb_root / STATE_DIR / JOURNAL
    remove_temp_files(journal)
    if not journal.is_file():
        return None
    try:
        record = Journal.model_validate_json(journal.read_text(encoding="utf-8"))
    except ValueError:
        journal.unlink(missing_ok=True)
        return "discarded an unreadable write journal"
    paths = list(record.originals)
    for path in paths:
        remove_temp_files(kb_root / path)
    if record.commit is not None and _settle_commit(kb_root, record.commit, record.head):
        sync_index(kb_root, record.commit, paths)
        outcome = f"completed the interrupted commit of {record.source_path}"
    else:
        _restore(kb_root, record.originals, [])
        outcome = f"undid the interrupted write of {record.source_path}"
    journal.unlink(missing_ok=True)
    return outcome


def _settle_commit(kb_root: Path, commit: str, old_head: str | None) -> bool:
    """Whether ``commit`` is (now) on HEAD: moves HEAD to it if a crash stopped just before that."""
    current = head(kb_root)
    if current == old_head:
        with contextlib.suppress(GitError):
            move_ref(kb_root, "HEAD", commit, old_head)
        current = head(kb_root)
    return current is not None and is_ancestor(kb_root, commit, current)


def _restore(kb_root: Path, originals: dict[str, str | None], new_dirs: list[Path]) -> None:
    for path, text in originals.items():
        file = kb_root / path
        if text is None:
            file.unlink(missing_ok=True)
        else:
            atomic_write(file, text)
    for folder in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def commit_to_branch(
    kb_root: Path, changeset: ChangeSet, author: Identity, base: str, branch: str, replace: bool
) -> str:
    """Commit the drafts on ``branch``, made from ``base``; the work tree is not touched.

    A branch that already exists is an extraction awaiting review: it is only
    replaced (a new tip from ``base``) when ``replace`` is set.
    """
    old = rev_parse(kb_root, f"refs/heads/{branch}")
    if old is not None and not replace:
        raise WriteError(f"{branch} already awaits review; use --force to replace it")
    files = {change.path: change.text for change in changeset.changes}
    commit = commit_tree_on(kb_root, base, files, changeset.message, author)
    move_ref(kb_root, f"refs/heads/{branch}", commit, old)
    return commit


def commit_extraction(
    kb_root: Path,
    changeset: ChangeSet,
    settings: Settings,
    source_path: str,
    source_slug: str,
    base: str | None,
    replace: bool,
) -> tuple[str, str | None]:
    """Commit planned drafts the configured way; returns the commit and the branch (None on main)."""
    author = Identity(name=settings.author_name, email=settings.author_email)
    if base is None:
        recover_interrupted_write(kb_root)
        return apply_changes(kb_root, changeset, author, source_path=source_path), None
    branch = extraction_branch(source_slug)
    return commit_to_branch(kb_root, changeset, author, base, branch, replace), branch
