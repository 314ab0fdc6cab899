"""Applying a planned change set: atomic file writes and one commit, journalled so a crash can be settled.

In main mode the files are written in the work tree and committed onto HEAD;
in branch mode the commit is made from the main branch's tip without touching
the work tree. A file a person has changed and not committed is never
overwritten or committed. Branch mode writes main itself for what needs no
review (a null result, when ``null_results = "commit"``; a rejection) through
:func:`commit_to_main`, which takes the main-mode path when main is checked out.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel
from pygit2.enums import FileStatus
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random

from extractor.commit.changeset import ChangeSet, WriteError
from extractor.commit.message import extraction_branch
from extractor.core.settings import Settings
from extractor.kb.files import atomic_write, remove_temp_files
from extractor.kb.gitrepo import (
    GitError,
    Identity,
    build_commit,
    checked_out_branches,
    checkout_problem,
    commit_tree_on,
    git,
    head,
    is_ancestor,
    move_ref,
    read_at,
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


def apply_changes(
    kb_root: Path, changeset: ChangeSet, author: Identity, source_path: str | None = None, onto: str | None = None
) -> str:
    """Write the files and commit them; on any failure restore what was there. ``onto``: only onto that commit
    (:class:`GitError` if HEAD is elsewhere by then), the one the change set was checked against.

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
    staged = False
    try:
        for change in changeset.changes:
            file = kb_root / change.path
            if change.text is None:
                file.unlink(missing_ok=True)
            else:
                atomic_write(file, change.text)
        commit, parent = build_commit(kb_root, paths, changeset.message, author)
        if onto is not None and parent != onto:
            raise GitError(f"HEAD moved while committing {record.source_path}")
        atomic_write(journal, record.model_copy(update={"commit": commit}).model_dump_json())
        # The index first, HEAD after: a person's ``git commit`` in between takes these changes with theirs
        # (and this commit is refused), where the other order would let it commit the old text back.
        staged = sync_index(kb_root, commit, paths)
        move_ref(kb_root, "HEAD", commit, parent)
    except BaseException:
        if commit is not None and head(kb_root) == commit:
            journal.unlink(missing_ok=True)  # interrupted after HEAD moved: the commit stands
            raise
        restored = _restore(kb_root, originals, new_dirs)
        if staged and restored:
            sync_index(kb_root, "HEAD", restored)
        journal.unlink(missing_ok=True)
        raise
    if not staged:  # git's index was busy a moment ago: try once more, now the commit stands
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
        restored = _restore(kb_root, record.originals, [])
        if record.commit is not None:  # the index may have taken the commit's files before the crash
            _unstage(kb_root, record.commit, restored)
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


def _restore(kb_root: Path, originals: dict[str, str | None], new_dirs: list[Path]) -> list[str]:
    """Put back the files a write changed, and say which. A file that now reads as HEAD holds it is left: a
    person's commit (``git commit -a``) took the write in flight, and the old text would undo theirs."""
    restored = []
    for path, text in originals.items():
        file = kb_root / path
        if _as_in_head(kb_root, path):
            continue
        if text is None:
            file.unlink(missing_ok=True)
        else:
            atomic_write(file, text)
        restored.append(path)
    for folder in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    return restored


def _as_in_head(kb_root: Path, path: str) -> bool:
    """Whether the work tree's ``path`` reads as HEAD holds it (both absent counts)."""
    file = kb_root / path
    try:
        return (file.read_text(encoding="utf-8") if file.is_file() else None) == read_at(kb_root, "HEAD", path)
    except (OSError, UnicodeDecodeError, GitError):
        return False


def _unstage(kb_root: Path, commit: str, paths: list[str]) -> None:
    """Give ``paths`` back HEAD's entries in the index where they still hold ``commit``'s (staged by a write
    that did not finish); what a person staged since is left."""
    if not paths:
        return
    try:
        staged = {
            line.split("\t", 1)[1]: line.split()[1]
            for line in git(kb_root, "ls-files", "-s", "--", *paths).splitlines()
        }
        committed = {
            line.split("\t", 1)[1]: line.split()[2]
            for line in git(kb_root, "ls-tree", commit, "--", *paths).splitlines()
        }
    except GitError:
        return
    ours = [path for path in paths if staged.get(path) == committed.get(path)]
    if ours:
        sync_index(kb_root, "HEAD", ours)


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


MOVE_WAIT = 10.0  # seconds to keep trying while others move main between our reading its tip and moving it


class _MainMovedError(Exception):
    """Someone moved main between reading its tip and moving it: read it again."""


def commit_to_main(
    kb_root: Path, changeset: ChangeSet, author: Identity, main_branch: str, base: str, source_path: str
) -> str:
    """Commit a change set planned against ``base`` onto ``main_branch`` as it is now, whatever is checked out.

    The one way branch mode writes main. Main checked out here: the main-mode
    path (:func:`apply_changes`), so a person's uncommitted change to a file it
    writes refuses the write and what they staged is not committed. Otherwise
    the commit is made in the object store and main moved by compare-and-swap,
    the work tree untouched. Main may have moved since ``base`` (a person's
    commit): the change set still applies when none of its files changed
    there. Refused (:class:`WriteError`, nothing written) when a file did, or
    when main is checked out in another work tree or being rebased: moving it
    there would leave that tree's index behind, to undo the commit with the
    next ``git commit``.
    """
    retrying = Retrying(
        retry=retry_if_exception_type(_MainMovedError), stop=stop_after_delay(MOVE_WAIT), wait=wait_random(0.01, 0.1),
        reraise=True,
    )  # fmt: skip
    try:
        return retrying(_commit_to_main_once, kb_root, changeset, author, main_branch, base, source_path)
    except _MainMovedError:
        raise WriteError(f"{main_branch} kept moving while committing {source_path} (nothing was written)") from None


def _commit_to_main_once(
    kb_root: Path, changeset: ChangeSet, author: Identity, main_branch: str, base: str, source_path: str
) -> str:
    ref = f"refs/heads/{main_branch}"
    here = _checked_out_here(kb_root, main_branch)  # first: from reading the tip to moving it, no time is lost
    tip = rev_parse(kb_root, ref)
    if tip is None:
        raise WriteError(f"the main branch {main_branch!r} does not exist (nothing was written)")
    if tip != base:
        at_tip = {change.path: read_at(kb_root, tip, change.path) for change in changeset.changes}
        if all(at_tip[change.path] == change.text for change in changeset.changes):
            # A person's commit took these very changes while they were being written (and the failed write
            # put the old text back): the work tree catches up with main where it still reads as before.
            if here:
                _catch_up(kb_root, changeset, base)
            return tip
        if moved := [path for path, text in at_tip.items() if text != read_at(kb_root, base, path)]:
            raise WriteError(f"{moved[0]} changed on {main_branch} since it was read (nothing was written)")
    try:
        if here:
            recover_interrupted_write(kb_root)
            return apply_changes(kb_root, changeset, author, source_path=source_path, onto=tip)
        files = {change.path: change.text for change in changeset.changes}
        commit = commit_tree_on(kb_root, tip, files, changeset.message, author)
        move_ref(kb_root, ref, commit, tip)
        return commit
    except GitError:
        if rev_parse(kb_root, ref) == tip:
            raise  # not a race with another commit: git's own error
        raise _MainMovedError from None


def _catch_up(kb_root: Path, changeset: ChangeSet, base: str) -> None:
    """Write the change set's files that still read exactly as at ``base``: no one's work is in them."""
    for change in changeset.changes:
        file = kb_root / change.path
        try:
            if (file.read_text(encoding="utf-8") if file.is_file() else None) != read_at(kb_root, base, change.path):
                continue
        except (OSError, UnicodeDecodeError):
            continue
        if change.text is None:
            file.unlink(missing_ok=True)
        else:
            atomic_write(file, change.text)


def _checked_out_here(kb_root: Path, branch: str) -> bool:
    """Whether ``branch`` is checked out in this work tree; :class:`WriteError` when another work tree has it
    checked out or a rebase of it is in progress anywhere (git itself refuses to move it then)."""
    try:
        here = git(kb_root, "symbolic-ref", "-q", "HEAD").strip() == f"refs/heads/{branch}"
    except GitError:
        here = False  # detached
    if here:
        return True
    if branch in checked_out_branches(kb_root):
        raise WriteError(f"{branch} is checked out in another work tree (nothing was written)")
    common = Path(git(kb_root, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    for gitdir in [common, *sorted(common.glob("worktrees/*"))]:
        for state in ("rebase-merge", "rebase-apply"):
            with contextlib.suppress(OSError):
                if (gitdir / state / "head-name").read_text(encoding="utf-8").strip() == f"refs/heads/{branch}":
                    raise WriteError(f"{branch} is being rebased; finish or abort the rebase (nothing was written)")
    return False


class Committed(NamedTuple):
    """Where an extraction was committed: the commit, its branch (None: onto main) and, when a null result meant
    for main went to review instead, why."""

    commit: str
    branch: str | None
    note: str | None = None


def goes_to_main(changeset: ChangeSet, source_path: str, settings: Settings) -> bool:
    """A null result that branch mode commits straight onto main: nothing but the source's status changes (a
    forced re-extraction taking back earlier drafts is reviewed like any other change)."""
    return (
        settings.null_results == "commit"
        and changeset.status == "null-result"
        and [change.path for change in changeset.changes] == [source_path]
    )


def commit_extraction(
    kb_root: Path,
    changeset: ChangeSet,
    settings: Settings,
    source_path: str,
    source_slug: str,
    base: str | None,
    replace: bool,
) -> Committed:
    """Commit planned drafts the configured way.

    A null result with ``null_results = "commit"`` goes onto main unless its
    source already has a branch awaiting review; when main cannot take it now
    without touching a person's work (:func:`commit_to_main`), it goes to
    review like any other, and the note says why.
    """
    author = Identity(name=settings.author_name, email=settings.author_email)
    if base is None:
        recover_interrupted_write(kb_root)
        return Committed(apply_changes(kb_root, changeset, author, source_path=source_path), None)
    branch = extraction_branch(source_slug)
    note = None
    if goes_to_main(changeset, source_path, settings) and rev_parse(kb_root, f"refs/heads/{branch}") is None:
        try:
            return Committed(commit_to_main(kb_root, changeset, author, settings.main_branch, base, source_path), None)
        except WriteError as exc:
            note = f"null result sent to review, not committed to {settings.main_branch}: {exc}"
    return Committed(commit_to_branch(kb_root, changeset, author, base, branch, replace), branch, note)
